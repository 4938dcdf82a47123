#!/bin/bash
# failback-region.sh - Failback to primary region

PRIMARY_REGION="us-east-1"
SECONDARY_REGION="us-west-2"
FUNCTION_NAME="apilados-pipeline-ingest"

echo "Initiating failback from ${SECONDARY_REGION} to ${PRIMARY_REGION}..."

# 1. Verify primary region is healthy
aws lambda invoke \
    --function-name $FUNCTION_NAME \
    --payload '{"test": "health-check"}' \
    --region $PRIMARY_REGION \
    --profile production \
    response.json

if [ $? -eq 0 ]; then
    echo "Primary region health check passed"
    
    # 2. Sync any data from secondary to primary
    aws s3 sync s3://apilados-production-data-replica s3://apilados-production-data \
        --region $SECONDARY_REGION \
        --profile production
    
    # 3. Restore primary region configuration
    aws lambda update-function-configuration \
        --function-name $FUNCTION_NAME \
        --environment Variables='{
            "ACTIVE_REGION":"'$PRIMARY_REGION'",
            "FAILOVER_MODE":"false"
        }' \
        --region $PRIMARY_REGION \
        --profile production
    
    # 4. Update S3 event notifications back to primary
    aws s3api put-bucket-notification-configuration \
        --bucket apilados-production-data \
        --notification-configuration '{
            "LambdaConfigurations": [{
                "Id": "ProcessCSVFiles",
                "LambdaFunctionArn": "arn:aws:lambda:'$PRIMARY_REGION':123456789012:function:'$FUNCTION_NAME'",
                "Events": ["s3:ObjectCreated:*"],
                "Filter": {
                    "Key": {
                        "FilterRules": [{
                            "Name": "suffix",
                            "Value": ".csv"
                        }]
                    }
                }
            }]
        }' \
        --region $PRIMARY_REGION \
        --profile production
    
    echo "Failback to ${PRIMARY_REGION} completed"
else
    echo "Primary region health check failed. Failback aborted."
    exit 1
fi
