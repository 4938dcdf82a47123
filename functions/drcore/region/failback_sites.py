"""Where a failback acts: the pipeline's function and bucket in each region, and the region it runs in."""

from __future__ import annotations

from dataclasses import dataclass

from drcore.aws.pipeline_notification import live_alias_arn


@dataclass(frozen=True)
class FailbackSites:
    """Where the pipeline runs in each region, and where this function runs."""

    primary_region: str
    secondary_region: str
    here: str  # the region this recovery function runs in (the claim's writer)
    account: str
    function_name: str
    live_alias: str
    data_bucket: str
    replica_bucket: str
    partition: str = "aws"

    def live_arn(self, region: str) -> str:
        return live_alias_arn(region, self.account, self.function_name, self.live_alias, self.partition)
