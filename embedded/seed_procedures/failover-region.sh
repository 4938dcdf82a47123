#!/bin/bash
# failover-region.sh - Failover to secondary region

PRIMARY_REGION="us-east-1"
SECONDARY_REGION="us-west-2"
FUNCTION_NAME="apilados-pipeline-ingest"

echo "Initiating failover from ${PRIMARY_REGION} to ${SECONDARY_REGION}..."

# 1. Update DNS/routing to secondary region (if applicable)
# This would typically involve updating Route 53 records or load balancer configuration

# 2. Activate secondary region Lambda function
aws lambda update-function-configuration \
    --function-name $FUNCTION_NAME \
    --environment Variables='{
        "ACTIVE_REGION":"'$SECONDARY_REGION'",
        "FAILOVER_MODE":"true"
    }' \
    --region $SECONDARY_REGION \
    --profile production

# 3. Update S3 event notifications to trigger secondary function
aws s3api put-bucket-notification-configuration \
    --bucket apilados-production-data-replica \
    --notification-configuration '{
        "LambdaConfigurations": [{
            "Id": "ProcessCSVFiles",
            "LambdaFunctionArn": "arn:aws:lambda:'$SECONDARY_REGION':123456789012:function:'$FUNCTION_NAME'",
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
    --region $SECONDARY_REGION \
    --profile production

# 4. Send notification
aws sns publish \
    --topic-arn arn:aws:sns:$SECONDARY_REGION:123456789012:pipeline-alerts \
    --message "Failover to secondary region ($SECONDARY_REGION) completed" \
    --subject "ALERT: Regional Failover" \
    --region $SECONDARY_REGION \
    --profile production

echo "Failover to ${SECONDARY_REGION} completed"
