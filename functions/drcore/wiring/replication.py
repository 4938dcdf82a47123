"""Replication to the secondary region as the recovery function builds it: the `configure_replication` action and
the health `status` reports, each reading the data bucket in the function's region and the replica in its own."""

from __future__ import annotations

from drcore.aws.clients import ClientFactory, client_factory
from drcore.core.config import RegionSettings
from drcore.region.replication_action import ConfigureReplicationAction
from drcore.region.replication_health import ReplicationHealth
from drcore.region.replication_s3 import ReplicationGateway


def replication_parts(client: ClientFactory, data_bucket: str,
                      region: RegionSettings) -> tuple[ConfigureReplicationAction, ReplicationHealth]:
    source = ReplicationGateway(client("s3"))
    # Built on first use, so no client of the secondary region exists until replication is looked at.
    replica = ReplicationGateway(client_factory(region.secondary_region)("s3"))
    return (ConfigureReplicationAction(source, replica, data_bucket, region),
            ReplicationHealth(source, replica, client("cloudwatch"), data_bucket, region))
