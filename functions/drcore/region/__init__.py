"""region: failover, failback, replication checks and the region record (not yet built)."""
