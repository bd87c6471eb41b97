"""The streaming service on the real broker gives what `credit-monitor evaluate` gives."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from monitor.domain.policy import Policy
from monitor.evaluate import evaluate_lines
from schemas import topics
from streams.publish import BROADCAST_TYPES, EventPublisher, account_key

from . import streamgen
from .casecheck import events_jsonl, load_cases, problems
from .streamkit import (
    Worker, collect, committed_input_offsets, delete_topics, expected_split,
    input_end_offsets, make_settings, partition_of, snapshot_view,
)

pytestmark = pytest.mark.integration


def evaluate(events: list[dict[str, Any]], policy: Policy) -> list[dict[str, Any]]:
    lines = [__import__("orjson").dumps(e) + b"\n" for e in events]
    return list(evaluate_lines(lines, policy, snapshots=True))


def isolate(case: dict[str, Any], partition: int, partitions: int) -> list[dict[str, Any]]:
    """The case's events with customer ids renamed so all its accounts hash to
    `partition`; its ticks and rates then go to that partition alone, which makes the
    partition a world of its own, as the evaluator's run of the case is."""
    renamed: dict[str, str] = {}

    def rename(customer: str, company: str) -> str:
        if customer not in renamed:
            k = 0
            while partition_of(f"{company}/{customer}~{k}".encode(), partitions) != partition:
                k += 1
            renamed[customer] = f"{customer}~{k}"
        return renamed[customer]

    out = []
    for e in case["events"]:
        data = dict(e.get("data") or {})
        if "customer_id" in data:
            data["customer_id"] = rename(data["customer_id"], data.get("company") or "main")
        out.append({**e, "data": data})
    return out


async def publish_isolated(settings: Any, worlds: list[list[dict[str, Any]]]) -> None:
    async with EventPublisher(settings) as pub:
        for partition, events in enumerate(worlds):
            for e in events:
                if e["type"] in BROADCAST_TYPES:
                    await pub.publish_raw(__import__("orjson").dumps(e), partition=partition)
                else:
                    await pub.publish_raw(__import__("orjson").dumps(e), key=account_key(e))


def test_every_case_decides_the_same_through_kafka(tmp_path: Path, kafka_bootstrap: str) -> None:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for case in load_cases():
        groups[case.get("policy", "")].append(case)

    async def run_group(policy_text: str, cases: list[dict[str, Any]], n: int) -> list[str]:
        policy_file = tmp_path / f"policy-{n}.toml"
        policy_file.write_text(policy_text)
        settings = make_settings(tmp_path, partitions=len(cases), policy_path=policy_file)
        worlds = [isolate(c, i, len(cases)) for i, c in enumerate(cases)]
        policy = Policy.from_toml(policy_text)
        expected = [evaluate(w, policy) for w in worlds]
        want_d = sum(len(expected_split(x)[0]) for x in expected)
        want_r = sum(len(expected_split(x)[1]) for x in expected)
        worker = Worker(settings, tmp_path / f"worker-{n}.log").start()
        try:
            await asyncio.get_running_loop().run_in_executor(None, worker.wait_ready)
            await publish_isolated(settings, worlds)
            got = await collect(settings, want_decisions=want_d, want_rejected=want_r)
        finally:
            worker.stop()
            await delete_topics(settings)
        found = []
        for case, world, exp in zip(cases, worlds, expected, strict=True):
            exp_d, exp_r, exp_s = expected_split(exp)
            accounts = {f"{(e['data'].get('company') or 'main')}/{e['data']['customer_id']}"
                        for e in world if "customer_id" in (e.get("data") or {})}
            got_d = {i: d for i, d in got.decisions.items() if d["subject"] in accounts}
            ids = {e["source"] + "/" + e["id"] for e in world}
            got_r = {i: r for i, r in got.rejected.items() if r.get("causationid") in ids
                     or r.get("subject") in accounts}
            if got_d != exp_d:
                found.append(f"{case['name']}: decisions differ")
            if {i: r["data"]["error"] for i, r in got_r.items()} != {
                    i: r["data"]["error"] for i, r in exp_r.items()}:
                found.append(f"{case['name']}: rejections differ")
            got_s = {a: got.snapshots[a] for a in exp_s if a in got.snapshots}
            if {a: snapshot_view(s) for a, s in got_s.items()} != {
                    a: snapshot_view(s) for a, s in exp_s.items()}:
                found.append(f"{case['name']}: snapshots differ")
            # And the case's own expectations, on what the service published.
            back = {v: k for k, v in (
                (e["data"]["customer_id"].split("~")[0], e["data"]["customer_id"])
                for e in world if "customer_id" in (e.get("data") or {}))}
            live = [_unrename(o, back) for o in [*got_d.values(), *got_r.values(),
                                                  *got_s.values()]]
            found += [f"{case['name']}: {p}" for p in problems(case, live)]
        assert not got.conflicting
        return found

    async def main() -> list[str]:
        results = await asyncio.gather(*(run_group(p, cs, n)
                                         for n, (p, cs) in enumerate(groups.items())))
        return [p for r in results for p in r]

    assert asyncio.run(main()) == []


def _unrename(output: dict[str, Any], back: dict[str, str]) -> dict[str, Any]:
    data = dict(output["data"])
    if data.get("customer_id") in back:
        data["customer_id"] = back[data["customer_id"]]
    return {**output, "data": data}


def test_generated_stream_decides_the_same_through_kafka(tmp_path: Path,
                                                         kafka_bootstrap: str) -> None:
    events = streamgen.generate(50_000, 1_000, seed=11)
    policy = Policy.default_policy()
    exp_d, exp_r, exp_s = expected_split(evaluate(events, policy))
    settings = make_settings(tmp_path, partitions=4)
    worker = Worker(settings, tmp_path / "worker.log").start()

    async def main() -> Any:
        await asyncio.get_running_loop().run_in_executor(None, worker.wait_ready)
        async with EventPublisher(settings) as pub:
            await pub.publish_all(events)
        return await collect(settings, want_decisions=len(exp_d), want_rejected=len(exp_r))

    try:
        got = asyncio.run(main())
    finally:
        worker.stop()
        asyncio.run(delete_topics(settings))

    assert len(exp_d) > 10_000 and len(exp_s) == 1_000
    assert not got.conflicting
    assert got.decisions == exp_d
    assert {i: r["data"]["error"] for i, r in got.rejected.items()} == {
        i: r["data"]["error"] for i, r in exp_r.items()}
    assert {a: snapshot_view(s) for a, s in got.snapshots.items()} == {
        a: snapshot_view(s) for a, s in exp_s.items()}


def test_bad_records_go_to_rejected_with_their_bytes_and_position(
        tmp_path: Path, kafka_bootstrap: str) -> None:
    import base64

    import orjson

    settings = make_settings(tmp_path, partitions=2)
    good = {"specversion": "1.0", "id": "ok-1", "source": "erp/t",
            "type": "erp.credit_profile.set", "time": "2026-01-01T00:00:00Z",
            "data": {"customer_id": "C1", "currency": "EUR", "credit_limit": "100",
                     "risk_class": "B"}}
    bad = [b"\xff\xfe not utf-8", b"{not json", b'{"type": "erp.order.teleported"}',
           orjson.dumps({**good, "id": "bad-1", "data": {**good["data"],
                                                        "currency": "XYZ"}})]
    worker = Worker(settings, tmp_path / "worker.log").start()

    async def main() -> Any:
        await asyncio.get_running_loop().run_in_executor(None, worker.wait_ready)
        async with EventPublisher(settings) as pub:
            for raw in bad:
                await pub.publish_raw(raw, partition=1)
            await pub.publish(good)
        got = await collect(settings, want_decisions=0, want_rejected=len(bad), idle=4)
        return got, worker.get("/metrics")[1].decode()

    try:
        got, metrics = asyncio.run(main())
    finally:
        worker.stop()
        asyncio.run(delete_topics(settings))

    # The same story on /metrics, for Prometheus.
    assert ('credit_monitor_events_total{outcome="applied",type="erp.credit_profile.set"}'
            ' 1.0') in metrics
    assert "credit_monitor_rejected_events_total 4.0" in metrics

    rejected = sorted(got.rejected.values(), key=lambda r: r["data"]["origin"]["offset"])
    assert [base64.b64decode(r["data"]["original_base64"]) for r in rejected] == bad
    assert [r["data"]["origin"]["offset"] for r in rejected] == [0, 1, 2, 3]
    assert {r["data"]["origin"]["topic"] for r in rejected} == {
        settings.topic("credit.events")}
    assert {r["data"]["origin"]["partition"] for r in rejected} == {1}
    errors = [r["data"]["error"] for r in rejected]
    assert errors[0].startswith("not UTF-8") and errors[1].startswith("not JSON")
    assert "unknown event type" in errors[2] and "ISO 4217" in errors[3]
    assert "main/C1" in got.snapshots  # and the good record after them was applied


def test_live_mode_wall_clock_makes_an_invoice_overdue_without_new_events(
        tmp_path: Path, kafka_bootstrap: str) -> None:
    import datetime as dt

    settings = make_settings(tmp_path, partitions=2, mode="live",
                             tick_interval_seconds=1.0)
    now = dt.datetime.now(dt.timezone.utc)
    issued = (now - dt.timedelta(days=40)).isoformat().replace("+00:00", "Z")
    due = (now - dt.timedelta(days=3)).date()
    events = [
        {"specversion": "1.0", "id": "live-1", "source": "erp/t",
         "type": "erp.credit_profile.set", "time": issued,
         "data": {"customer_id": "L1", "currency": "EUR", "credit_limit": "1000",
                  "risk_class": "B"}},
        {"specversion": "1.0", "id": "live-2", "source": "erp/t",
         "type": "erp.invoice.issued", "time": issued,
         "data": {"customer_id": "L1", "invoice_id": "INV1", "amount": "100",
                  "currency": "EUR", "due_date": str(due)}},
    ]
    worker = Worker(settings, tmp_path / "worker.log")

    async def main() -> Any:
        from streams.topology import ensure_topics

        # The events go in before the worker starts, so they come before its first tick.
        await ensure_topics(settings)
        async with EventPublisher(settings) as pub:
            await pub.publish_all(events)
        worker.start()
        await asyncio.get_running_loop().run_in_executor(None, worker.wait_ready)
        return await collect(settings, want_decisions=1, idle=3, timeout=60)

    try:
        got = asyncio.run(main())
    finally:
        worker.stop()
        asyncio.run(delete_topics(settings))

    changes = [d["data"] for d in got.decisions.values()
               if d["type"] == "credit.account.status_changed"]
    assert [(c["status"], [r["code"] for r in c["reasons"]]) for c in changes] == [
        ("WARNING", ["OVERDUE"])]
    tick_caused = [d for d in got.decisions.values()
                   if d["causationid"].startswith("credit-monitor/clock/")]
    assert tick_caused, "the status change must come from a wall-clock tick"
    assert got.snapshots["main/L1"]["data"]["overdue"]["oldest_days"] == 3


def test_topics_health_and_rates_sent_once_to_the_broadcast_topic(
        tmp_path: Path, kafka_bootstrap: str) -> None:
    """The topics exist with the documented partitions and clean-up policies; an FX
    rate written once to `credit.broadcast` reaches the accounts of every partition."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType


    settings = make_settings(tmp_path, partitions=3)
    customers = []
    n = 0
    while {partition_of(f"main/{c}".encode(), 3) for c in customers} != {0, 1, 2}:
        customers.append(f"B{n}")
        n += 1

    def event(i: str, type_: str, time: str, **data: Any) -> dict[str, Any]:
        return {"specversion": "1.0", "id": i, "source": "erp/t", "type": type_,
                "time": time, "data": data}

    accounts = []
    for c in customers:
        accounts += [
            event(f"{c}-p", "erp.credit_profile.set", "2026-01-01T00:00:00Z",
                  customer_id=c, currency="EUR", credit_limit="1000", risk_class="B"),
            event(f"{c}-o", "erp.order.placed", "2026-01-01T01:00:00Z", customer_id=c,
                  order_id="O1", amount="100.00", currency="USD"),
        ]
    rate = event("rate-1", "fx.rate.set", "2026-01-01T02:00:00Z", currency="USD",
                 quote_currency="EUR", rate="0.5")
    worker = Worker(settings, tmp_path / "worker.log").start()

    async def main() -> Any:
        await asyncio.get_running_loop().run_in_executor(None, worker.wait_ready)
        health = worker.get("/health")
        async with EventPublisher(settings) as pub:
            await pub.publish_all(accounts)
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(settings.topic(topics.BROADCAST), orjson.dumps(rate))
        finally:
            await producer.stop()
        got = await collect(settings, want_decisions=0, idle=5)
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        try:
            names = [settings.topic(t) for t in (topics.INPUT, topics.BROADCAST,
                                                 topics.DECISIONS, topics.SNAPSHOTS,
                                                 topics.REJECTED)]
            names.append(f"{settings.app_id}-accounts-changelog")
            described = {t["topic"]: len(t["partitions"])
                         for t in await admin.describe_topics(names)}
            configs = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, name) for name in names])
        finally:
            await admin.close()
        ends = await input_end_offsets(settings)
        policies = {}
        for response in configs:
            for resource in response.resources:
                for entry in resource[4]:
                    if entry[0] == "cleanup.policy":
                        policies[resource[3]] = entry[1]
        return health, got, described, policies, worker.get("/health"), ends

    try:
        health, got, described, policies, health_after, ends = asyncio.run(main())
        worker.stop()
        # The worker commits input offsets itself (faust's acks are off for the
        # input): up to the end of every partition, and no further.
        committed = asyncio.run(committed_input_offsets(settings))
    finally:
        worker.stop()
        asyncio.run(delete_topics(settings))

    assert health[0] == 200 and orjson.loads(health[1])["status"] == "ok"
    after = orjson.loads(health_after[1])
    assert after["processed"] >= len(accounts) + 3
    # Every input partition was applied to its end, and /health says so.
    assert {p: row["next"] for p, row in after["partitions"].items()} == {
        str(p): end for p, end in ends.items()}
    assert all(end > 0 for end in ends.values())
    assert {p: row["committed"] for p, row in after["partitions"].items()} == {
        str(p): end for p, end in ends.items()}
    assert committed == ends
    name = settings.topic
    assert described == {
        name(topics.INPUT): 3, name(topics.BROADCAST): 1, name(topics.DECISIONS): 3,
        name(topics.SNAPSHOTS): 3, name(topics.REJECTED): 3,
        f"{settings.app_id}-accounts-changelog": 3,
    }
    assert policies[name(topics.SNAPSHOTS)] == "compact"
    assert policies[f"{settings.app_id}-accounts-changelog"] == "compact"
    assert policies[name(topics.DECISIONS)] == "delete"
    # Every account, whatever its partition, counts its USD order at the rate.
    for c in customers:
        snap = got.snapshots[f"main/{c}"]["data"]
        assert snap["exposure"]["open_orders"] == "50.00", (c, snap["exposure"])
        assert [r["rate"] for r in snap["rates_used"]] == ["0.5"]
