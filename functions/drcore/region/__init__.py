"""region: the secondary region. Built: replication of the data bucket to the replica, configured
(`configure_replication`) and watched (`status`). Not yet built: failover, failback and the region record."""
