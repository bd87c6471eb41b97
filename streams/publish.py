"""Publishing contract events to the input topic the way the service expects them.

Account events are keyed by `company/customer_id`, so every event of an account lands
in one partition, in order. Clock ticks and FX rates concern every account: they are
written to every partition, each partition then sees them in the same order relative
to its own accounts' events as the source had them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from monitor.settings import Settings
from schemas import topics

from monitor.kafka_config import kafka_client_kwargs as aiokafka_kwargs

BROADCAST_TYPES = frozenset({"clock.tick", "fx.rate.set"})


def account_key(event: dict[str, Any]) -> bytes | None:
    data = event.get("data")
    if not isinstance(data, dict) or not data.get("customer_id"):
        return None
    return f"{data.get('company') or 'main'}/{data['customer_id']}".encode()


class EventPublisher:
    """An aiokafka producer that routes contract events to the right partitions."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = settings.topic(topics.INPUT)
        self.partitions = settings.partitions
        self.producer = AIOKafkaProducer(
            **aiokafka_kwargs(settings), acks="all", linger_ms=5,
            max_batch_size=262144, max_request_size=4 * 1024 * 1024,
        )
        self.sent = 0

    async def __aenter__(self) -> EventPublisher:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.flush()
        await self.producer.stop()

    async def publish(self, event: dict[str, Any]) -> None:
        value = orjson.dumps(event)
        if event.get("type") in BROADCAST_TYPES:
            for partition in range(self.partitions):
                await self.producer.send(self.topic, value, partition=partition)
        else:
            await self.producer.send(self.topic, value, key=account_key(event))
        self.sent += 1

    async def publish_and_wait(self, event: dict[str, Any]) -> Any:
        """One account event, acknowledged by the brokers; returns its record metadata."""
        if event.get("type") in BROADCAST_TYPES:
            raise ValueError("publish_and_wait is for account events")
        meta = await self.producer.send_and_wait(
            self.topic, orjson.dumps(event), key=account_key(event))
        self.sent += 1
        return meta

    async def publish_raw(self, value: bytes, *, key: bytes | None = None,
                          partition: int | None = None) -> None:
        """A record as bytes, unchecked (for bad-input tests and replays of raw files)."""
        await self.producer.send(self.topic, value, key=key, partition=partition)
        self.sent += 1

    async def publish_all(self, events: Iterable[dict[str, Any]]) -> int:
        for event in events:
            await self.publish(event)
        await self.producer.flush()
        return self.sent


async def aiter_events(events: Iterable[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    for event in events:
        yield event
