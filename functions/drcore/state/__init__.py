"""state: where the controller keeps what it knows: the state table (controller record, journal,
idempotency, plans) and the backup store's write-once layout. Imports drcore.core and drcore.aws."""
