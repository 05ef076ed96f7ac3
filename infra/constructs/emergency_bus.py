"""The custom event bus that receives `EmergencyDetected` events (source `alertfusion`)."""

from __future__ import annotations

from aws_cdk import aws_events as events
from constructs import Construct

from alertfusion.notify import DETAIL_TYPE, EVENT_SOURCE


class EmergencyBus(Construct):
    """`bus`: a backend subscribes a rule to it to push alerts instead of polling jobs."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.bus = events.EventBus(
            self,
            "Bus",
            description=f"{DETAIL_TYPE} events (source {EVENT_SOURCE}), once per job and stage",
        )
