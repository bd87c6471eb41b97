"""What the operator API shows and does, checked against the offline evaluator, with the
real Kafka, PostgreSQL, a worker and `credit-monitor api serve`.

- `GET /v1/accounts/on-hold` lists exactly the accounts the evaluator leaves on HOLD, the
  longest held first (the latest move into HOLD counts; a change of reasons while on
  HOLD does not), and refuses callers without a (known) token;
- a release by HTTP answers 202 with the command's id and Kafka position, and the record
  at that position is the command, signed with the token's name; refused releases (a
  viewer's, one of an order that is not blocked) write nothing to Kafka or the audit log;
- the account view and `credit-monitor account show --json` carry the evaluator's
  credit score of the account.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from monitor.api.auth import new_token
from monitor.domain.policy import Policy
from monitor.evaluate import evaluate_lines
from monitor.settings import Settings
from schemas import topics

from .streamkit import expected_split, partition_of
from .test_api import cli, running

pytestmark = pytest.mark.integration


# ---- helpers -----------------------------------------------------------------------


def _events(prefix: str, rows: list[tuple[str, str, str | None, dict[str, Any]]]
            ) -> list[dict[str, Any]]:
    """Contract events from (time, type, customer_id or None, data) rows."""
    out = []
    for n, (time_, type_, customer, data) in enumerate(rows, start=1):
        body = {"company": "main", "customer_id": customer, **data} if customer else data
        out.append({"specversion": "1.0", "id": f"{prefix}-{n}", "source": "erp/test",
                    "type": type_, "time": time_, "data": body})
    return out


def _profile(time_: str, customer: str, **extra: Any) -> tuple[str, str, str, dict[str, Any]]:
    return (time_, "erp.credit_profile.set", customer,
            {"currency": "EUR", "credit_limit": "1000.00", "risk_class": "B", **extra})


def evaluate(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    lines = [orjson.dumps(e) + b"\n" for e in events]
    return list(evaluate_lines(lines, Policy.default_policy(), snapshots=True))


def _when(text: str | None) -> dt.datetime | None:
    return None if text is None else dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


async def _stored(dsn: str) -> tuple[set[str], dict[str, Any]]:
    conn = await asyncpg.connect(dsn)
    try:
        ids = {r["output_id"] for r in await conn.fetch("SELECT output_id FROM audit_log")}
        snaps = {r["account"]: orjson.loads(r["data"]) for r in await conn.fetch(
            "SELECT account, data FROM account_snapshots")}
        return ids, snaps
    finally:
        await conn.close()


def wait_stored(dsn: str, expected: list[dict[str, Any]], timeout: float = 90) -> dict[str, Any]:
    """Wait until the audit log has every decision the evaluator made and every account's
    stored snapshot is as of the evaluator's final one (each account's last event comes
    after the last tick, so `as_of` is that event's time on both sides); returns the
    stored snapshots' data by account."""
    decisions, _, snapshots = expected_split(expected)
    want_as_of = {a: s["data"]["as_of"] for a, s in snapshots.items()}
    deadline = time.monotonic() + timeout
    while True:
        ids, snaps = asyncio.run(_stored(dsn))
        missing = set(decisions) - ids
        behind = {a: (snaps.get(a) or {}).get("as_of") for a, t in want_as_of.items()
                  if (snaps.get(a) or {}).get("as_of") != t}
        if not missing and not behind:
            return snaps
        if time.monotonic() > deadline:
            raise AssertionError(f"the store never caught up with the evaluator: "
                                 f"{len(missing)} decisions missing, snapshots behind: {behind}")
        time.sleep(0.5)


# ---- 1. accounts on hold -----------------------------------------------------------

_T = "2026-03-01T09:{:02d}:00Z"
HOLD_ROWS: list[tuple[str, str, str | None, dict[str, Any]]] = [
    # held at 09:00 by a manual block; its reasons change at 09:40 (still on HOLD)
    _profile(_T.format(0), "V-REASONS", blocked=True),
    # held at 09:01, back to OK at 09:10: not listed
    _profile(_T.format(1), "V-BACK", blocked=True),
    # no credit profile: on HOLD from its first order, 09:02
    (_T.format(2), "erp.order.placed", "V-NOPROF",
     {"order_id": "SO-1", "amount": "100.00", "currency": "EUR"}),
    # held at 09:03, OK at 09:04, held again at 09:30: held since 09:30
    _profile(_T.format(3), "V-REHOLD", blocked=True),
    _profile(_T.format(4), "V-REHOLD", blocked=False),
    # exposure above the limit at 09:06 (a delivery is never gated)
    _profile(_T.format(5), "V-LIMIT"),
    (_T.format(6), "erp.delivery.posted", "V-LIMIT",
     {"delivery_id": "DL-1", "amount": "1500.00", "currency": "EUR"}),
    # a limit that expired a month ago: on HOLD at 09:07
    _profile(_T.format(7), "V-EXPIRED", valid_until="2026-02-01"),
    # an invoice due today: overdue only when the tick below comes (45 days)
    _profile(_T.format(8), "V-OVERDUE"),
    (_T.format(9), "erp.invoice.issued", "V-OVERDUE",
     {"invoice_id": "IN-1", "amount": "300.00", "currency": "EUR", "due_date": "2026-03-01"}),
    _profile(_T.format(10), "V-BACK", blocked=False),
    # OK and WARNING: not listed
    _profile(_T.format(11), "V-OK"),
    (_T.format(12), "erp.order.placed", "V-OK",
     {"order_id": "SO-1", "amount": "100.00", "currency": "EUR"}),
    _profile(_T.format(13), "V-WARN"),
    (_T.format(14), "erp.order.placed", "V-WARN",
     {"order_id": "SO-1", "amount": "900.00", "currency": "EUR"}),
    _profile(_T.format(30), "V-REHOLD", blocked=True),
    (_T.format(40), "erp.delivery.posted", "V-REASONS",
     {"delivery_id": "DL-1", "amount": "2000.00", "currency": "EUR"}),
    ("2026-04-15T00:00:00Z", "clock.tick", None, {}),
]
HOLD_ACCOUNTS = sorted({r[2] for r in HOLD_ROWS if r[2]})
# Every account's last event comes after the tick (a payment of nothing changes no
# figure), so that its snapshot's as_of says the worker got to the end of it.
HOLD_ROWS += [(f"2026-04-15T08:{i:02d}:00Z", "erp.payment.received", c,
               {"payment_id": "PAY-END", "amount": "0.00", "currency": "EUR"})
              for i, c in enumerate(HOLD_ACCOUNTS)]


def evaluator_holds(outputs: list[dict[str, Any]]) -> list[tuple[str, dt.datetime]]:
    """(account, latest move into HOLD) of the accounts the evaluator leaves on HOLD,
    the longest held first."""
    since: dict[str, dt.datetime] = {}
    for o in outputs:
        d = o["data"]
        if (o["type"] == "credit.account.status_changed" and d["status"] == "HOLD"
                and d["previous_status"] != "HOLD"):
            when = _when(o["time"])
            assert when is not None
            since[o["subject"]] = when
    _, _, snapshots = expected_split(outputs)
    held = [a for a, s in snapshots.items() if s["data"]["status"] == "HOLD"]
    return sorted(((a, since[a]) for a in held), key=lambda x: (x[1], x[0]))


def test_on_hold_lists_the_accounts_the_evaluator_holds_longest_held_first(
    tmp_path: Path, kafka_bootstrap: str, schema_dsn: str
) -> None:
    events = _events("hold", HOLD_ROWS)
    expected = evaluate(events)
    _, _, snapshots = expected_split(expected)
    holds = evaluator_holds(expected)
    # What these events are meant to do (so that a change of the evaluator shows here
    # rather than as a silently different test).
    assert holds == [
        ("main/V-REASONS", _when(_T.format(0))),
        ("main/V-NOPROF", _when(_T.format(2))),
        ("main/V-LIMIT", _when(_T.format(6))),
        ("main/V-EXPIRED", _when(_T.format(7))),
        ("main/V-REHOLD", _when(_T.format(30))),
        ("main/V-OVERDUE", _when("2026-04-15T00:00:00Z")),
    ]
    assert {a: s["data"]["status"] for a, s in snapshots.items()
            if s["data"]["status"] != "HOLD"} == {
        "main/V-BACK": "OK", "main/V-OK": "OK", "main/V-WARN": "WARNING"}

    with running(tmp_path, schema_dsn, events) as stack:
        api = stack.api
        api.wait_until("/v1/accounts/main/V-OK", stack.viewer, lambda v: True)
        wait_stored(stack.dsn, expected)

        # Refused without a token and with an unknown one (well-formed or not).
        for token in (None, "not-a-token", new_token("vera", "viewer")[0]):
            refused = api.request("GET", "/v1/accounts/on-hold", token)
            assert refused.status_code == 401, (token, refused.text)
            assert refused.headers["www-authenticate"] == "Bearer"
            assert "account" not in refused.text

        reply = api.request("GET", "/v1/accounts/on-hold", stack.viewer)
        assert reply.status_code == 200, reply.text
        listed = reply.json()
        assert [(r["account"], _when(r["hold_since"])) for r in listed] == holds

        # Each row carries the figures of the evaluator's snapshot of the account.
        for row in listed:
            snap = snapshots[row["account"]]["data"]
            assert (row["company"], row["customer_id"]) == (snap["company"],
                                                             snap["customer_id"])
            assert row["reason_codes"] == [r["code"] for r in snap["reasons"]], row
            assert row["currency"] == snap["currency"]
            assert Decimal(row["exposure_total"]) == Decimal(snap["exposure"]["total"])
            assert Decimal(row["overdue_amount"]) == Decimal(snap["overdue"]["amount"])
            assert row["oldest_overdue_days"] == snap["overdue"]["oldest_days"]
            assert row["blocked_orders_count"] == len(snap["blocked_orders"])
            assert _when(row["as_of"]) == _when(snap["as_of"])

        # A controller reads the same list; the command line prints it.
        assert api.request("GET", "/v1/accounts/on-hold", stack.controller).json() == listed
        shown = cli(stack.settings, stack.viewer, "accounts", "on-hold", "--json")
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout) == listed
        refused_cli = cli(stack.settings, "not-a-token", "accounts", "on-hold")
        assert refused_cli.returncode == 3 and "401" in refused_cli.stderr


# ---- 2. a release by HTTP ----------------------------------------------------------

RELEASE_ACCOUNT = "main/REL-1"
RELEASE_ROWS: list[tuple[str, str, str | None, dict[str, Any]]] = [
    _profile("2026-03-01T09:00:00Z", "REL-1"),
    ("2026-03-01T09:01:00Z", "erp.order.placed", "REL-1",
     {"order_id": "SO-1", "amount": "400.00", "currency": "EUR"}),
    ("2026-03-01T09:02:00Z", "erp.order.placed", "REL-1",
     {"order_id": "SO-2", "amount": "900.00", "currency": "EUR"}),
]


async def _end_offsets(settings: Settings) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        name = settings.topic(topics.INPUT)
        ends = await consumer.end_offsets(
            [TopicPartition(name, p) for p in range(settings.partitions)])
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def _record_at(settings: Settings, topic: str, partition: int,
                     offset: int) -> tuple[bytes | None, dict[str, Any]]:
    """(key, decoded value) of the record at that position."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        record = await asyncio.wait_for(consumer.getone(tp), timeout=15)
        assert record.offset == offset
        return record.key, orjson.loads(record.value)
    finally:
        await consumer.stop()


async def _audit(dsn: str, account: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT output_id, type, order_id, kafka_partition, kafka_offset, data "
            "FROM audit_log WHERE account = $1 ORDER BY recorded_at, kafka_offset", account)
        return [{**dict(r), "data": orjson.loads(r["data"])} for r in rows]
    finally:
        await conn.close()


def test_release_by_http_answers_with_the_kafka_position_of_the_command(
    tmp_path: Path, kafka_bootstrap: str, schema_dsn: str
) -> None:
    events = _events("rel", RELEASE_ROWS)
    with running(tmp_path, schema_dsn, events) as stack:
        api, settings = stack.api, stack.settings
        path = "/v1/accounts/main/REL-1"
        view = api.wait_until(path, stack.viewer,
                              lambda v: v["snapshot"]["blocked_orders"])
        assert [o["order_id"] for o in view["snapshot"]["blocked_orders"]] == ["SO-2"]
        as_of = view["snapshot"]["as_of"]

        def nothing_written(before: dict[int, int]) -> None:
            assert asyncio.run(_end_offsets(settings)) == before
            assert [r for r in asyncio.run(_audit(stack.dsn, RELEASE_ACCOUNT))
                    if r["type"] == "credit.command.release_order"] == []

        before = asyncio.run(_end_offsets(settings))
        body = {"reason": "paid by wire, see bank statement 42"}

        # A viewer may not release; neither may nobody.
        refused = api.request("POST", f"{path}/orders/SO-2/release", stack.viewer, json=body)
        assert refused.status_code == 403, refused.text
        assert "vera is a viewer" in refused.json()["detail"]
        assert api.request("POST", f"{path}/orders/SO-2/release",
                           json=body).status_code == 401
        # Orders that are not blocked: approved, unknown.
        for order in ("SO-1", "SO-404"):
            conflict = api.request("POST", f"{path}/orders/{order}/release",
                                   stack.controller, json=body)
            assert conflict.status_code == 409, (order, conflict.text)
            assert "not blocked" in conflict.json()["detail"]
        nothing_written(before)

        # A controller releases the blocked order.
        reply = api.request("POST", f"{path}/orders/SO-2/release", stack.controller,
                            json=body)
        assert reply.status_code == 202, reply.text
        accepted = reply.json()
        position = accepted["kafka"]
        input_topic = settings.topic(topics.INPUT)
        assert accepted["account"] == RELEASE_ACCOUNT
        assert accepted["order_id"] == "SO-2"
        assert accepted["by"] == "carla"
        assert accepted["reason"] == body["reason"]
        assert accepted["command_id"].startswith("release-")
        assert position["topic"] == input_topic
        assert position["partition"] == partition_of(RELEASE_ACCOUNT.encode(),
                                                      settings.partitions)
        # Exactly one record more, at the position given.
        after = asyncio.run(_end_offsets(settings))
        assert after == {**before, position["partition"]: before[position["partition"]] + 1}
        assert position["offset"] == before[position["partition"]]

        key, command = asyncio.run(_record_at(settings, position["topic"],
                                              position["partition"], position["offset"]))
        assert key == RELEASE_ACCOUNT.encode()
        assert command["type"] == "credit.command.release_order"
        assert command["id"] == accepted["command_id"]
        assert command["source"] == "credit-monitor/api"
        assert command["subject"] == RELEASE_ACCOUNT
        assert command["data"] == {"company": "main", "customer_id": "REL-1",
                                   "order_id": "SO-2", "by": "carla",
                                   "reason": body["reason"]}
        # Replay mode: dated at the account's own clock, not the wall clock.
        assert _when(command["time"]) == _when(as_of)

        # The request is in the audit log, at the same position, before the answer.
        requests = [r for r in asyncio.run(_audit(stack.dsn, RELEASE_ACCOUNT))
                    if r["type"] == "credit.command.release_order"]
        assert len(requests) == 1
        assert requests[0]["output_id"] == accepted["command_id"]
        assert (requests[0]["kafka_partition"], requests[0]["kafka_offset"]) == (
            position["partition"], position["offset"])
        assert requests[0]["data"]["by"] == "carla"

        # The worker applies that record: the release names who and why.
        deadline = time.monotonic() + 60
        released: list[dict[str, Any]] = []
        while not released and time.monotonic() < deadline:
            released = [r for r in asyncio.run(_audit(stack.dsn, RELEASE_ACCOUNT))
                        if r["type"] == "credit.order.released"]
            time.sleep(0.5)
        assert len(released) == 1, "the worker never released SO-2"
        assert released[0]["order_id"] == "SO-2"
        assert (released[0]["data"]["by"], released[0]["data"]["reason"]) == (
            "carla", body["reason"])
        api.wait_until(path, stack.viewer, lambda v: not v["snapshot"]["blocked_orders"])

        # Released: a second release is a conflict, and writes nothing.
        before = asyncio.run(_end_offsets(settings))
        again = api.request("POST", f"{path}/orders/SO-2/release", stack.controller,
                            json=body)
        assert again.status_code == 409, again.text
        assert asyncio.run(_end_offsets(settings)) == before


# ---- 3. the credit score in the account view ---------------------------------------

SCORE_ROWS: list[tuple[str, str, str | None, dict[str, Any]]] = [
    ("2025-10-01T08:00:00Z", "erp.credit_profile.set", "S-1",
     {"currency": "EUR", "credit_limit": "5000.00", "risk_class": "B",
      "payment_terms_days": 45}),
    ("2025-10-01T08:00:00Z", "erp.credit_profile.set", "S-2",
     {"currency": "EUR", "credit_limit": "2000.00", "risk_class": "auto"}),
    ("2025-10-02T08:00:00Z", "fx.rate.set", None,
     {"currency": "USD", "quote_currency": "EUR", "rate": "0.90"}),
    ("2025-10-05T08:00:00Z", "erp.invoice.issued", "S-1",
     {"invoice_id": "IN-1", "amount": "1000.00", "currency": "EUR", "due_date": "2025-11-04"}),
    ("2025-10-06T08:00:00Z", "erp.invoice.issued", "S-2",
     {"invoice_id": "IN-1", "amount": "600.00", "currency": "USD", "due_date": "2025-11-05"}),
    ("2025-11-05T08:00:00Z", "erp.invoice.issued", "S-1",
     {"invoice_id": "IN-2", "amount": "1200.00", "currency": "EUR", "due_date": "2025-12-05"}),
    ("2025-11-05T09:00:00Z", "erp.payment.received", "S-2",
     {"payment_id": "PAY-1", "amount": "600.00", "currency": "USD",
      "allocations": [{"invoice_id": "IN-1", "amount": "600.00"}]}),
    ("2025-11-10T08:00:00Z", "erp.payment.received", "S-1",
     {"payment_id": "PAY-1", "amount": "1000.00", "currency": "EUR",
      "allocations": [{"invoice_id": "IN-1", "amount": "1000.00"}]}),
    ("2025-12-01T08:00:00Z", "erp.invoice.issued", "S-1",
     {"invoice_id": "IN-3", "amount": "800.00", "currency": "EUR", "due_date": "2025-12-31"}),
    ("2025-12-02T08:00:00Z", "erp.invoice.issued", "S-2",
     {"invoice_id": "IN-2", "amount": "900.00", "currency": "USD", "due_date": "2026-01-01"}),
    ("2025-12-20T08:00:00Z", "erp.payment.received", "S-1",
     {"payment_id": "PAY-2", "amount": "1200.00", "currency": "EUR",
      "allocations": [{"invoice_id": "IN-2", "amount": "1200.00"}]}),
    ("2026-01-02T08:00:00Z", "erp.credit_note.issued", "S-1",
     {"credit_note_id": "CN-1", "amount": "100.00", "currency": "EUR", "invoice_id": "IN-3"}),
    ("2026-01-10T08:00:00Z", "erp.invoice.issued", "S-1",
     {"invoice_id": "IN-4", "amount": "900.00", "currency": "EUR", "due_date": "2026-02-09"}),
    ("2026-01-15T08:00:00Z", "erp.invoice.disputed", "S-1",
     {"invoice_id": "IN-4", "reason": "damaged goods"}),
    ("2026-01-20T08:00:00Z", "erp.payment.received", "S-1",
     {"payment_id": "PAY-3", "amount": "500.00", "currency": "EUR",
      "allocations": [{"invoice_id": "IN-3", "amount": "500.00"}]}),
    ("2026-01-25T08:00:00Z", "erp.payment.reversed", "S-1", {"payment_id": "PAY-3"}),
    ("2026-01-28T08:00:00Z", "erp.payment.received", "S-2",
     {"payment_id": "PAY-2", "amount": "900.00", "currency": "USD",
      "allocations": [{"invoice_id": "IN-2", "amount": "900.00"}]}),
    ("2026-02-20T00:00:00Z", "clock.tick", None, {}),
    # each account's last event after the tick: its snapshot's as_of is this time
    ("2026-02-21T08:00:00Z", "erp.order.placed", "S-1",
     {"order_id": "SO-9", "amount": "10.00", "currency": "EUR"}),
    ("2026-02-21T09:00:00Z", "erp.order.placed", "S-2",
     {"order_id": "SO-9", "amount": "10.00", "currency": "EUR"}),
]


def test_account_view_shows_the_evaluators_score(
    tmp_path: Path, kafka_bootstrap: str, schema_dsn: str
) -> None:
    events = _events("score", SCORE_ROWS)
    expected = evaluate(events)
    _, _, snapshots = expected_split(expected)
    scores = {a: s["data"]["score"] for a, s in snapshots.items()}
    assert sorted(scores) == ["main/S-1", "main/S-2"]
    # Every factor has something to say in S-1 (late payments, overdue, a dispute, a
    # reversal, a credit note), and S-2's figures come through a rate.
    factors = {f["name"]: f for f in scores["main/S-1"]["factors"]}
    assert all(Decimal(f["points"]) < Decimal(f["weight"]) for f in factors.values())
    assert scores["main/S-1"]["grade"] != scores["main/S-2"]["grade"]

    with running(tmp_path, schema_dsn, events) as stack:
        stack.api.wait_until("/v1/accounts/main/S-2", stack.viewer, lambda v: True)
        wait_stored(stack.dsn, expected)
        for account, score in scores.items():
            company, customer = account.split("/")
            view = stack.api.request("GET", f"/v1/accounts/{company}/{customer}",
                                     stack.viewer)
            assert view.status_code == 200, view.text
            got = view.json()
            assert got["snapshot"]["score"] == score, account
            assert got["status"] == snapshots[account]["data"]["status"]

            shown = cli(stack.settings, stack.viewer, "account", "show", account, "--json")
            assert shown.returncode == 0, shown.stderr
            assert json.loads(shown.stdout)["snapshot"]["score"] == score, account
