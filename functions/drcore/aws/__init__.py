"""aws: adapters over the AWS APIs and the mechanics every capability uses: error codes, retries, the S3
copy, Lambda update waits, aliases, alarms, metrics, alerts. Imports only drcore.core."""
