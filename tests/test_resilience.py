"""Killed workers, a second worker taking over, and PostgreSQL going away mid-stream,
all on the real broker and database; the results must still equal the evaluator's."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from monitor.domain.policy import Policy
from monitor.evaluate import evaluate_lines
from schemas import topics
from streams.publish import BROADCAST_TYPES, EventPublisher

from . import streamgen
from .streamkit import (
    ROOT, Worker, collect, delete_topics, expected_split, input_end_offsets, make_settings,
    snapshot_view,
)

pytestmark = pytest.mark.integration


def expected(events: list[dict[str, Any]]) -> tuple[dict, dict, dict]:
    lines = [orjson.dumps(e) + b"\n" for e in events]
    return expected_split(list(evaluate_lines(lines, Policy.default_policy(), snapshots=True)))


def assert_same_as_evaluator(got: Any, exp: tuple[dict, dict, dict]) -> None:
    exp_d, exp_r, exp_s = exp
    assert not got.conflicting, (
        "a repeated decision must carry the same id and content:\n"
        + "\n".join(_conflict_report(first, later, where, exp_d.get(first["id"]))
                    for first, later, where in got.conflicts[:3]))
    missing = set(exp_d) - set(got.decisions)
    extra = set(got.decisions) - set(exp_d)
    assert not missing and not extra, (len(missing), len(extra))
    assert got.decisions == exp_d
    assert {i: r["data"]["error"] for i, r in got.rejected.items()} == {
        i: r["data"]["error"] for i, r in exp_r.items()}
    got_s = {a: snapshot_view(s) for a, s in got.snapshots.items()}
    want_s = {a: snapshot_view(s) for a, s in exp_s.items()}
    differing = sorted(a for a in got_s.keys() & want_s.keys() if got_s[a] != want_s[a])
    assert got_s == want_s, (
        f"{len(differing)} snapshots differ, {len(want_s.keys() - got_s.keys())} missing, "
        f"{len(got_s.keys() - want_s.keys())} extra; first: " + "; ".join(
            f"{a}: " + _conflict_report(want_s[a] | {"id": a, "type": "snapshot"},
                                        got_s[a] | {"id": a, "type": "snapshot"},
                                        "snapshots", None)
            for a in differing[:2]))


def _conflict_report(first: dict, later: dict, where: str, want: dict | None) -> str:
    """What differs between two outputs with one id, and which one the evaluator made."""
    def flat(doc: Any, prefix: str = "") -> dict[str, Any]:
        if isinstance(doc, dict):
            out: dict[str, Any] = {}
            for k, v in doc.items():
                out.update(flat(v, f"{prefix}{k}."))
            return out
        return {prefix.rstrip("."): doc}
    a, b = flat(first), flat(later)
    diff = {k: (a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)}
    return (f"id {first['id']} type {first['type']} subject {first.get('subject')} "
            f"cause {first.get('causationid')}; later copy at {where}; "
            f"evaluator's equals first: {want == first}, later: {want == later}; "
            f"differs (first, later): {diff}")


def test_worker_killed_five_times_loses_and_doubles_nothing(tmp_path: Path,
                                                           kafka_bootstrap: str) -> None:
    events = streamgen.generate(100_000, 2_000, seed=5)
    exp = expected(events)
    settings = make_settings(tmp_path, partitions=4)
    log = tmp_path / "worker.log"
    rnd = random.Random(2026)
    kills = 0

    async def main() -> Any:
        nonlocal kills
        worker = Worker(settings, log).start()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, worker.wait_ready)
        async with EventPublisher(settings) as pub:
            await pub.publish_all(events)
        try:
            while kills < 5:
                # A random point of the stream: after some seconds of processing.
                await asyncio.sleep(rnd.uniform(2.0, 9.0))
                worker.kill()
                kills += 1
                worker = Worker(settings, log, web_port=worker.settings.web_port).start()
                await loop.run_in_executor(None, worker.wait_ready)
            return await collect(settings, want_decisions=len(exp[0]),
                                 want_rejected=len(exp[1]), timeout=600)
        finally:
            worker.stop()

    try:
        got = asyncio.run(main())
    finally:
        asyncio.run(delete_topics(settings))

    assert kills == 5
    assert log.read_text(errors="replace").count("credit engines ready") >= 6
    assert_same_as_evaluator(got, exp)


def test_second_worker_takes_over_when_the_first_is_killed(tmp_path: Path,
                                                          kafka_bootstrap: str) -> None:
    events = streamgen.generate(20_000, 600, seed=9)
    exp = expected(events)
    settings = make_settings(tmp_path, partitions=4)
    first = Worker(settings, tmp_path / "a.log")
    second = Worker(settings, tmp_path / "b.log")

    async def main() -> Any:
        loop = asyncio.get_running_loop()
        first.start()
        second.start()
        await loop.run_in_executor(None, first.wait_ready)
        await loop.run_in_executor(None, second.wait_ready)
        # Both share the partitions once the group has settled.
        await loop.run_in_executor(None, _wait_shared, [first, second])
        half = len(events) // 2
        async with EventPublisher(settings) as pub:
            await pub.publish_all(events[:half])
        await asyncio.sleep(4)
        first.kill()
        async with EventPublisher(settings) as pub:
            await pub.publish_all(events[half:])
        got = await collect(settings, want_decisions=len(exp[0]), want_rejected=len(exp[1]),
                            timeout=400)
        owned = orjson.loads(second.get("/ready")[1])["partitions"]
        return got, owned

    try:
        got, owned = asyncio.run(main())
    finally:
        first.stop()
        second.stop()
        asyncio.run(delete_topics(settings))

    assert owned == [0, 1, 2, 3]
    assert_same_as_evaluator(got, exp)


def _wait_shared(workers: list[Worker], timeout: float = 60) -> None:
    """Wait until the workers share the four input partitions between them."""
    deadline = time.monotonic() + timeout
    parts: list[list[int]] = []
    while time.monotonic() < deadline:
        parts = [orjson.loads(w.get("/ready")[1]).get("partitions", []) for w in workers]
        if all(parts) and sorted(sum(parts, [])) == [0, 1, 2, 3]:
            return
        time.sleep(0.5)
    raise AssertionError(f"partitions not shared: {parts}")


@pytest.mark.xfail(strict=False, reason=(
    "known defect (zombie worker): after the freeze the worker still writes account "
    "images from before it (its producer buffer, and records in hand) over the new "
    "owner's in the changelog; when it gets the partitions back it restores them and "
    "decides from that old state. Needs fencing (Kafka transactions, or keeping the "
    "image of the highest input offset at restore); see README, Known shortcomings"))
def test_a_worker_frozen_past_its_session_writes_nothing_stale(
        tmp_path: Path, kafka_bootstrap: str) -> None:
    """A zombie: one of two workers is frozen (SIGSTOP) with records in hand for longer
    than its Kafka session, so the other takes its partitions over; then it runs again,
    rejoins and gets partitions back. The results must still equal the evaluator's
    (found by trying to break the service; it fails today, see the mark)."""
    events = streamgen.generate(20_000, 600, seed=9)
    exp = expected(events)
    settings = make_settings(tmp_path, partitions=4)
    zombie = Worker(settings, tmp_path / "a.log")
    other = Worker(settings, tmp_path / "b.log")
    half, three_quarters = len(events) // 2, 3 * len(events) // 4

    async def publish(batch: list[dict[str, Any]]) -> None:
        async with EventPublisher(settings) as pub:
            await pub.publish_all(batch)

    try:
        zombie.start()
        other.start()
        zombie.wait_ready()
        other.wait_ready()
        _wait_shared([zombie, other])
        asyncio.run(publish(events[:half]))
        time.sleep(1.5)  # the zombie is busy with its share
        assert zombie.proc is not None
        os.killpg(zombie.proc.pid, signal.SIGSTOP)
        asyncio.run(publish(events[half:three_quarters]))
        time.sleep(3 * settings.kafka_session_timeout_seconds)
        os.killpg(zombie.proc.pid, signal.SIGCONT)
        time.sleep(2 * settings.kafka_session_timeout_seconds)  # it rejoins
        asyncio.run(publish(events[three_quarters:]))
        got = asyncio.run(collect(settings, want_decisions=len(exp[0]),
                                  want_rejected=len(exp[1]), timeout=90))
    finally:
        if zombie.proc is not None and zombie.proc.poll() is None:
            os.killpg(zombie.proc.pid, signal.SIGCONT)
        zombie.stop()
        other.stop()
        asyncio.run(delete_topics(settings))

    assert_same_as_evaluator(got, exp)


def _wait_applied(worker: Worker, settings: Any, timeout: float = 120) -> dict[str, Any]:
    """Wait until the worker has applied its input partition to the end."""
    deadline = time.monotonic() + timeout
    row: dict[str, Any] = {}
    while time.monotonic() < deadline:
        (end,) = asyncio.run(input_end_offsets(settings)).values()
        status, body = worker.get("/health")
        if status == 200:
            row = orjson.loads(body).get("partitions", {}).get("0", {})
            if row.get("next") == end and row.get("committed") == end:
                return row
        time.sleep(0.5)
    raise AssertionError(f"input not applied to its end: {row}\n{worker.tail()}")


def test_records_deleted_by_retention_before_they_were_applied_are_reported(
        tmp_path: Path, kafka_bootstrap: str) -> None:
    """A worker stopped for longer than the input's retention comes back to a log whose
    start lies beyond its committed offset. It must neither wait for the deleted
    records nor stop: it starts at the log's start, says what was lost, and decides
    the rest exactly as if the lost events had never been sent."""
    from aiokafka import TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

    events = [e for e in streamgen.generate(3_000, 60, seed=11, bad_every=10**9)
              if e["type"] not in BROADCAST_TYPES]
    first, lost, last = events[:1_000], events[1_000:2_000], events[2_000:]
    settings = make_settings(tmp_path, partitions=1)
    log = tmp_path / "worker.log"

    async def publish(batch: list[dict[str, Any]]) -> None:
        async with EventPublisher(settings) as pub:
            await pub.publish_all(batch)

    async def delete_up_to_the_end() -> int:
        (end,) = (await input_end_offsets(settings)).values()
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        try:
            await admin.delete_records(
                {TopicPartition(settings.topic(topics.INPUT), 0): RecordsToDelete(end)})
        finally:
            await admin.close()
        return end

    worker = Worker(settings, log)
    try:
        worker.start().wait_ready()
        asyncio.run(publish(first))
        before = _wait_applied(worker, settings)["next"]
        worker.stop()
        asyncio.run(publish(lost))
        deleted_to = asyncio.run(delete_up_to_the_end())
        asyncio.run(publish(last))
        worker.start().wait_ready()
        _wait_applied(worker, settings)
        metrics = worker.get("/metrics")[1].decode()
        exp = expected(first + last)
        got = asyncio.run(collect(settings, want_decisions=len(exp[0]),
                                  want_rejected=len(exp[1]), timeout=120))
    finally:
        worker.stop()
        asyncio.run(delete_topics(settings))

    text = log.read_text(errors="replace")
    assert (f"partition 0: records {before} to {deleted_to - 1} were deleted by the input "
            "topic's retention") in text
    assert f"credit_monitor_input_records_lost_total {float(deleted_to - before)}" in metrics
    assert_same_as_evaluator(got, exp)


def _postgres(action: str) -> None:
    subprocess.run(["bash", str(ROOT / "deploy" / "postgres.sh"), action], check=True,
                   capture_output=True, timeout=120)


def test_postgres_away_for_30_seconds_loses_and_duplicates_no_audit_row(
        tmp_path: Path, kafka_bootstrap: str, pg_dsn: str) -> None:
    schema = f"cm_resilience_{uuid.uuid4().hex[:8]}"
    events = streamgen.generate(6_000, 200, seed=3)
    exp_d, exp_r, exp_s = expected(events)
    dsn = f"{pg_dsn}?search_path={schema}"
    settings = make_settings(tmp_path, partitions=3, pg_dsn=dsn)
    worker = Worker(settings, tmp_path / "worker.log")

    async def count(query: str) -> int:
        conn = await asyncpg.connect(pg_dsn, server_settings={"search_path": schema})
        try:
            return int(await conn.fetchval(query))
        finally:
            await conn.close()

    async def main() -> tuple[list[str], int, int]:
        conn = await asyncpg.connect(pg_dsn)
        await conn.execute(f"CREATE SCHEMA {schema}")
        await conn.close()
        loop = asyncio.get_running_loop()
        worker.start()
        await loop.run_in_executor(None, worker.wait_ready)
        half = len(events) // 2
        async with EventPublisher(settings) as pub:
            await pub.publish_all(events[:half])
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if await count("SELECT count(*) FROM audit_log") > 0:
                    break
            except asyncpg.UndefinedTableError:
                pass
            await asyncio.sleep(0.5)
        _postgres("stop")
        try:
            async with EventPublisher(settings) as pub:
                await pub.publish_all(events[half:])
            await asyncio.sleep(30)
        finally:
            _postgres("start")
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if await count("SELECT count(*) FROM audit_log") >= len(exp_d):
                break
            await asyncio.sleep(1)
        await asyncio.sleep(3)  # anything beyond the expected rows would show now
        conn = await asyncpg.connect(pg_dsn, server_settings={"search_path": schema})
        try:
            ids = [r["output_id"] for r in await conn.fetch("SELECT output_id FROM audit_log")]
            rejected = int(await conn.fetchval("SELECT count(*) FROM rejected_events"))
            snapshots = int(await conn.fetchval("SELECT count(*) FROM account_snapshots"))
        finally:
            await conn.close()
        return ids, rejected, snapshots

    try:
        ids, rejected, snapshots = asyncio.run(main())
    finally:
        worker.stop()
        asyncio.run(delete_topics(settings))

    assert len(ids) == len(set(ids))
    assert set(ids) == set(exp_d)
    assert rejected == len(exp_r)
    assert snapshots == len(exp_s)
    assert "not available" in worker.tail(200_000) or "failed" in worker.tail(200_000)
