"""rollback: the alias controller (rollback, promotion, release, freeze, reconcile), the watchers' event
handling and the incident texts. Imports core, aws and state, never a backup or restore engine, so a
watcher starts cold quickly."""
