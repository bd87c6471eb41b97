"""Creates the service's topics with explicit partition counts before anything runs.

The broker never creates topics by itself here (`auto.create.topics.enable=false`), and
a topic with the wrong partition count would send an account's events to a partition
whose state lives elsewhere, so a mismatch stops the start with a remedy.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from monitor.settings import Settings
from schemas import topics

from monitor.kafka_config import kafka_client_kwargs as aiokafka_kwargs

log = logging.getLogger(__name__)


CHANGELOG_ACCOUNTS = "accounts"


class TopologyError(RuntimeError):
    """The topics on the broker do not fit this service's settings."""


def wanted(settings: Settings) -> dict[str, tuple[int, dict[str, str]]]:
    """Topic name -> (partitions, configs)."""
    n = settings.partitions
    return {
        settings.topic(topics.INPUT): (n, {}),
        settings.topic(topics.BROADCAST): (1, {}),
        settings.topic(topics.DECISIONS): (n, {}),
        settings.topic(topics.SNAPSHOTS): (n, {"cleanup.policy": "compact"}),
        settings.topic(topics.REJECTED): (n, {}),
        # The table's changelog, named as faust names it; created here so that it
        # exists with the right partitions before the first record is processed.
        f"{settings.app_id}-{CHANGELOG_ACCOUNTS}-changelog": (n, {"cleanup.policy": "compact"}),
    }


async def ensure_topics(settings: Settings) -> list[str]:
    """Create the missing topics; return their names. Raises `TopologyError`."""
    admin = AIOKafkaAdminClient(**aiokafka_kwargs(settings))
    await admin.start()
    try:
        plan = wanted(settings)
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, partitions, settings.replication_factor, topic_configs=configs)
            for name, (partitions, configs) in plan.items() if name not in existing
        ]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass  # another worker created them first
            log.info("created topics %s", [t.name for t in missing])
        if missing:
            await _wait_for_leaders(admin, [t.name for t in missing])
        present = [name for name in plan if name in existing]
        if present:
            for desc in await admin.describe_topics(present):
                name = desc["topic"]
                have = len(desc["partitions"])
                if have != plan[name][0]:
                    raise TopologyError(
                        f"topic {name} has {have} partitions but CREDIT_MONITOR_PARTITIONS "
                        f"is {plan[name][0]}; set it to {have}, or use a new "
                        "CREDIT_MONITOR_TOPIC_PREFIX (account state cannot move between "
                        "partition counts)"
                    )
        return [t.name for t in missing]
    finally:
        await admin.close()


async def _wait_for_leaders(admin: AIOKafkaAdminClient, names: list[str],
                            timeout_seconds: float = 30.0) -> None:
    """Wait until every partition of new topics has a leader.

    A consumer that joins its group before the broker reports a topic gets no
    partitions of it until its next metadata refresh, minutes later.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_seconds
    while True:
        described = await admin.describe_topics(names)
        ready = all(
            d.get("error_code", 0) == 0 and d["partitions"]
            and all(p.get("leader", -1) >= 0 for p in d["partitions"])
            for d in described
        )
        if ready:
            return
        if loop.time() > deadline:
            raise TopologyError(f"topics {names} have no leader after {timeout_seconds}s; "
                                "check the broker log (.var/kafka.log)")
        await asyncio.sleep(0.2)
