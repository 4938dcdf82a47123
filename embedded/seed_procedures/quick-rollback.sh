#!/bin/bash
# quick-rollback.sh - the runbook's quick manual rollback, as written there, for the benchmark only.
# Two changes so it can run against the embedded endpoint: no `--profile production` (the endpoint
# comes from AWS_ENDPOINT_URL), and no closing `npm run health:check` (the runbook's lambda/ingest
# project is not part of this repository).

FUNCTION_NAME="apilados-pipeline-ingest"

echo "Performing quick rollback..."

# Get current stable version
STABLE_VERSION=$(aws lambda get-alias \
    --function-name $FUNCTION_NAME \
    --name STABLE \
    --query 'FunctionVersion' \
    --output text)

echo "Rolling back to stable version: ${STABLE_VERSION}"

# Update LIVE alias to stable version
aws lambda update-alias \
    --function-name $FUNCTION_NAME \
    --name LIVE \
    --function-version $STABLE_VERSION > /dev/null

# Verify rollback
CURRENT_VERSION=$(aws lambda get-alias \
    --function-name $FUNCTION_NAME \
    --name LIVE \
    --query 'FunctionVersion' \
    --output text)

echo "Rollback completed. Current version: ${CURRENT_VERSION}"
