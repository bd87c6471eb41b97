"""Running real workers against the real broker in tests: settings, processes, I/O."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import murmur2

from monitor.settings import Settings
from schemas import topics
from streams.publish import EventPublisher

from .conftest_services import kafka_bootstrap_from_env, pg_dsn_from_env

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_settings(tmp: Path, partitions: int = 4, **extra: Any) -> Settings:
    tag = uuid.uuid4().hex[:10]
    values: dict[str, Any] = {
        "kafka_bootstrap": kafka_bootstrap_from_env(),
        "pg_dsn": pg_dsn_from_env(),
        "topic_prefix": f"t{tag}.",
        "app_id": f"cm-{tag}",
        "partitions": partitions,
        "mode": "replay",
        "web_port": free_port(),
        "state_dir": tmp / f"worker-{tag}",
    }
    return Settings(**{**values, **extra})


def env_of(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CREDIT_MONITOR_")}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[f"CREDIT_MONITOR_{name.upper()}"] = str(value)
    return env


def partition_of(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class Worker:
    """One `credit-monitor worker` process."""

    def __init__(self, settings: Settings, log: Path, web_port: int | None = None) -> None:
        self.settings = settings.model_copy(update={"web_port": web_port or free_port()})
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        out = open(self.log, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "worker"], cwd=ROOT, env=env_of(self.settings),
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
        return self

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.settings.web_port}{path}"

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url(path), timeout=2) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited {self.proc.returncode}:\n{self.tail()}")
            try:
                if self.get("/ready")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"worker not ready in {timeout}s:\n{self.tail()}")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, n: int = 4000) -> str:
        return self.log.read_bytes()[-n:].decode(errors="replace") if self.log.exists() else ""


async def publish(settings: Settings, events: Iterable[dict[str, Any]]) -> int:
    async with EventPublisher(settings) as pub:
        return await pub.publish_all(events)


@dataclass
class Outputs:
    decisions: dict[str, dict[str, Any]] = field(default_factory=dict)
    rejected: dict[str, dict[str, Any]] = field(default_factory=dict)
    snapshots: dict[str, dict[str, Any]] = field(default_factory=dict)
    records: int = 0
    conflicting: list[str] = field(default_factory=list)
    """ids seen twice with different content: must never happen"""
    conflicts: list[tuple[dict[str, Any], dict[str, Any], str]] = field(default_factory=list)
    """(first, later, where the later one came from) for each conflicting id"""


async def collect(settings: Settings, *, want_decisions: int, want_rejected: int = 0,
                  idle: float = 6.0, timeout: float = 300.0) -> Outputs:
    """Read the output topics from the start until the wanted counts are reached and
    nothing new has come for `idle` seconds."""
    names = {settings.topic(t): t for t in (topics.DECISIONS, topics.REJECTED,
                                            topics.SNAPSHOTS)}
    consumer = AIOKafkaConsumer(*names, bootstrap_servers=settings.kafka_bootstrap,
                                auto_offset_reset="earliest", group_id=None,
                                enable_auto_commit=False, max_partition_fetch_bytes=4 << 20)
    out = Outputs()
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        last_new = time.monotonic()
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for tp, records in batch.items():
                kind = names[tp.topic]
                for r in records:
                    out.records += 1
                    doc = orjson.loads(r.value)
                    if kind == topics.SNAPSHOTS:
                        out.snapshots[r.key.decode()] = doc
                        continue
                    store = out.decisions if kind == topics.DECISIONS else out.rejected
                    known = store.get(doc["id"])
                    if known is not None and _comparable(known) != _comparable(doc):
                        out.conflicting.append(doc["id"])
                        out.conflicts.append((known, doc, f"{tp.topic}[{tp.partition}]@{r.offset}"))
                    store[doc["id"]] = doc
                last_new = time.monotonic()
            done = (len(out.decisions) >= want_decisions
                    and len(out.rejected) >= want_rejected)
            if done and time.monotonic() - last_new > idle:
                break
    finally:
        await consumer.stop()
    return out


def _comparable(doc: dict[str, Any]) -> Any:
    if doc["type"] == "credit.event.rejected":
        return (doc["id"], doc["data"]["error"])
    return doc


def expected_split(outputs: list[dict[str, Any]]) -> tuple[dict, dict, dict]:
    decisions, rejected, snapshots = {}, {}, {}
    for o in outputs:
        if o["type"] == "credit.event.rejected":
            rejected[o["id"]] = o
        elif o["type"] == "credit.account.snapshot":
            snapshots[f"{o['data']['company']}/{o['data']['customer_id']}"] = o
        else:
            decisions[o["id"]] = o
    return decisions, rejected, snapshots


def snapshot_view(snapshot: dict[str, Any]) -> dict[str, Any]:
    """A snapshot without the clock reading, which moves with ticks that change nothing."""
    return {k: v for k, v in snapshot["data"].items() if k != "as_of"}


async def _input_partitions(settings: Settings) -> list[TopicPartition]:
    name = settings.topic(topics.INPUT)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([name])
    finally:
        await admin.close()
    return [TopicPartition(name, p["partition"])
            for p in sorted(described["partitions"], key=lambda p: p["partition"])]


async def input_end_offsets(settings: Settings) -> dict[int, int]:
    """The broker's end offset of every partition of the input topic."""
    tps = await _input_partitions(settings)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    return {tp.partition: end for tp, end in ends.items()}


async def committed_input_offsets(settings: Settings) -> dict[int, int | None]:
    """The offsets the workers' group has committed on the input topic, from the broker."""
    tps = await _input_partitions(settings)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                group_id=settings.app_id, enable_auto_commit=False)
    await consumer.start()
    try:
        return {tp.partition: await consumer.committed(tp) for tp in tps}
    finally:
        await consumer.stop()


async def delete_topics(settings: Settings) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics()
                if t.startswith(settings.topic_prefix) or t.startswith(settings.app_id)]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


def run(coro: Any) -> Any:
    return asyncio.run(coro)
