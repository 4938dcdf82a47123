"""restore: function, bucket and stack restores, the two-step destructive actions over them, and the
recovery function's manual actions. Imports core, aws, state, rollback and backup."""
