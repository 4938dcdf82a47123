"""backup: function, bucket, stack and logs backups, their manifests, retention and the catalog of what
exists. Imports core, aws and state."""
