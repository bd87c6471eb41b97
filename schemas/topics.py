"""Kafka topics of the contract, shared by the service, the replay tool and AsyncAPI."""

from __future__ import annotations

INPUT = "credit.events"
"""ERP account events and release commands, keyed by `company/customer_id`. FX rates and
clock ticks are written to every partition of it, so each partition sees them in order."""

BROADCAST = "credit.broadcast"
"""FX rates and clock ticks from producers that cannot write to every partition; the
service copies each record into every partition of `INPUT`."""

DECISIONS = "credit.decisions"
"""Order decisions and status changes, keyed by account."""

SNAPSHOTS = "credit.snapshots"
"""The latest `credit.account.snapshot` of every account; compacted."""

REJECTED = "credit.rejected"
"""Records that could not be applied, with the reason and where they came from."""

ALL = (INPUT, BROADCAST, DECISIONS, SNAPSHOTS, REJECTED)
