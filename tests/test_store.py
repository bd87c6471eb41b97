"""The PostgreSQL store: migrations, the audit sink, read helpers.

Integration tests run against the real broker and PostgreSQL of
`bash deploy/services.sh start` (they fail, never skip, when those are down).
Each test gets its own schema (`cm_test_<hex>`, the role cannot create
databases) selected through the DSN's `search_path`, and its own topics under a
random prefix; both are dropped afterwards.

One test stops PostgreSQL for 30 s with `bash deploy/postgres.sh stop` and
always starts it again, even when it fails.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import uuid
from collections.abc import AsyncIterator, Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pydantic import SecretStr

from monitor.kafka_config import kafka_client_kwargs
from monitor.settings import Settings, SettingsError
from monitor.store import queries
from monitor.store.errors import StoreError, StoreUnavailable, translate
from monitor.store.migrations import available_migrations, migrate
from monitor.store.rows import MalformedRecord, SnapshotRow, read_output
from monitor.store.sink import AuditSink
from monitor.store.writer import RowBatch, write_batch
from schemas.topics import DECISIONS, REJECTED, SNAPSHOTS

ROOT = Path(__file__).resolve().parents[1]
PARTITIONS = 3
T0 = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)

integration = pytest.mark.integration


# ---- output events shaped like CONTRACT.md section 8 --------------------------------


def _iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _envelope(
    kind: str,
    out_id: str,
    subject: str | None,
    data: dict[str, Any],
    *,
    time: dt.datetime | None,
    cause: str | None = None,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": out_id,
        "source": "credit-monitor",
        "type": kind,
        "time": None if time is None else _iso(time),
        "subject": subject,
        "datacontenttype": "application/json",
    }
    if cause is not None:
        event["causationid"] = cause
    event["data"] = data
    return event


def _reason(code: str) -> dict[str, Any]:
    return {"code": code, "detail": f"{code} fired", "values": {"limit": "1000.00"}}


def decision(account: str, n: int) -> dict[str, Any]:
    """The n-th decision of an account: orders approved/blocked/released, statuses."""
    company, customer = account.split("/")
    ids = {"account": account, "company": company, "customer_id": customer}
    time = T0 + dt.timedelta(minutes=n)
    cause = f"erp/sales/evt-{account}-{n}"
    kind = ("approved", "blocked", "status", "released", "approved")[n % 5]
    if kind == "status":
        return _envelope(
            "credit.account.status_changed",
            f"out-{account}-{n}",
            account,
            {
                **ids,
                "status": "HOLD",
                "previous_status": "OK",
                "reasons": [_reason("LIMIT_EXCEEDED")],
            },
            time=time,
            cause=cause,
        )
    order = {**ids, "order_id": f"SO-{n}", "amount": f"{100 + n}.50", "currency": "EUR"}
    data: dict[str, Any]
    if kind == "approved":
        data = {**order, "exposure_after": "500.00", "limit": "1000.00", "reasons": []}
    elif kind == "blocked":
        data = {**order, "reasons": [_reason("LIMIT_EXCEEDED"), _reason("OVERDUE")]}
    else:
        data = {**order, "by": "auto", "reason": "exposure back under the limit"}
    return _envelope(
        f"credit.order.{kind}",
        f"out-{account}-{n}",
        account,
        data,
        time=time,
        cause=cause,
    )


def snapshot(account: str, seq: int, *, status: str = "WARNING") -> dict[str, Any]:
    """The seq-th snapshot of an account; exposure grows with seq."""
    company, customer = account.split("/")
    exposure = Decimal(100 * seq)
    as_of = T0 + dt.timedelta(hours=seq)
    blocked = (
        [
            {
                "order_id": f"SO-B{seq}",
                "amount": "250.00",
                "currency": "EUR",
                "reasons": [_reason("LIMIT_EXCEEDED")],
                "blocked_at": _iso(as_of),
            }
        ]
        if status == "HOLD"
        else []
    )
    data = {
        "company": company,
        "customer_id": customer,
        "currency": "EUR",
        "risk_class": "B",
        "credit_limit": "1000.00",
        "effective_limit": "1000.00",
        "status": status,
        "reasons": [_reason("UTILIZATION_HIGH")],
        "exposure": {
            "open_orders": "0.00",
            "uninvoiced_deliveries": "0.00",
            "open_receivables": f"{exposure:.2f}",
            "unapplied_credit": "0.00",
            "total": f"{exposure:.2f}",
        },
        "available_credit": f"{1000 - exposure:.2f}",
        "utilization": f"{exposure / 1000:.4f}",
        "overdue": {
            "amount": "40.00",
            "oldest_days": 12,
            "buckets": {
                "1-30": "40.00",
                "31-60": "0.00",
                "61-90": "0.00",
                "90+": "0.00",
            },
        },
        "blocked_orders": blocked,
        "unconverted": [],
        "rates_used": [],
        "documents": {},
        "pending_events": 0,
        "as_of": _iso(as_of),
    }
    return _envelope(
        "credit.account.snapshot", f"snap-{account}-{seq}", account, data, time=as_of
    )


def rejected(n: int) -> dict[str, Any]:
    """A rejection; some have no time, one carries a NUL character."""
    original: Any = {
        "specversion": "1.0",
        "id": f"bad-{n}",
        "source": "erp/sales",
        "type": "erp.order.placed",
        "time": "yesterday",
        "data": {},
    }
    if n == 0:
        original = "not json \x00 at all"
    return _envelope(
        "credit.event.rejected",
        f"rejected-{n}",
        None,
        {
            "error": f"unknown field {n}",
            "event": original,
            "origin": {"topic": "credit.events", "partition": n % 3, "offset": n},
        },
        time=None if n % 2 else T0,
        cause=f"erp/sales/bad-{n}",
    )


# ---- fixtures: a schema, topics and settings per test -------------------------------


def _with_search_path(dsn: str, schema: str) -> str:
    """The DSN, using `schema` and naming its sessions after it."""
    return f"{dsn}{'&' if '?' in dsn else '?'}search_path={schema}&application_name={schema}"


@pytest.fixture
async def schema_dsn(pg_dsn: str) -> AsyncIterator[str]:
    """The DSN of a fresh, empty schema, dropped after the test."""
    schema = f"cm_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(pg_dsn, timeout=10)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
    finally:
        await conn.close()
    try:
        yield _with_search_path(pg_dsn, schema)
    finally:
        conn = await asyncpg.connect(pg_dsn, timeout=30)
        try:
            await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        finally:
            await conn.close()


@pytest.fixture
async def store_dsn(schema_dsn: str) -> str:
    """A fresh schema with the migrations applied."""
    await migrate(schema_dsn)
    return schema_dsn


@pytest.fixture
async def settings(kafka_bootstrap: str, schema_dsn: str) -> AsyncIterator[Settings]:
    """Settings with their own topics (created here, deleted afterwards)."""
    tag = uuid.uuid4().hex[:10]
    s = Settings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"cmtest-{tag}.",
        app_id=f"cmtest-{tag}",
        pg_dsn=SecretStr(schema_dsn),
        pg_batch_size=20,
        pg_retry_max_seconds=2.0,
    )
    topics = [s.topic(name) for name in (DECISIONS, SNAPSHOTS, REJECTED)]
    admin = AIOKafkaAdminClient(**kafka_client_kwargs(s))
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    name=t,
                    num_partitions=PARTITIONS,
                    replication_factor=1,
                    topic_configs={"cleanup.policy": "compact"}
                    if "snapshots" in t
                    else {},
                )
                for t in topics
            ]
        )
        yield s
    finally:
        try:
            await admin.delete_topics(topics)
        finally:
            await admin.close()


async def produce(
    settings: Settings,
    topic: str,
    events: Iterable[dict[str, Any] | bytes | None],
    key: str | None = None,
) -> None:
    """Write events to `settings.topic(topic)`, keyed by their subject (or `key`)."""
    producer = AIOKafkaProducer(acks="all", **kafka_client_kwargs(settings))
    await producer.start()
    try:
        sent = []
        for event in events:
            if isinstance(event, dict):
                value: bytes | None = orjson.dumps(event)
                k = event["subject"] or key or event["id"]
            else:
                value, k = event, key or "junk"
            sent.append(
                await producer.send(settings.topic(topic), value, key=k.encode())
            )
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def started_sink(settings: Settings, **kwargs: Any) -> AuditSink:
    sink = AuditSink(
        settings, retry_initial_seconds=0.2, poll_timeout_seconds=0.2, **kwargs
    )
    await sink.start()
    return sink


async def table_counts(dsn: str) -> dict[str, tuple[int, int]]:
    """(rows, distinct ids) of each table."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return {
            table: tuple(
                await conn.fetchrow(
                    f"SELECT count(*), count(DISTINCT {key}) FROM {table}"
                )
            )
            for table, key in (
                ("audit_log", "output_id"),
                ("account_snapshots", "account"),
                ("rejected_events", "output_id"),
            )
        }
    finally:
        await conn.close()


async def fetch(dsn: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def postgres(action: str) -> None:
    """`bash deploy/postgres.sh start|stop`, without blocking the event loop."""
    proc = await asyncio.create_subprocess_exec(
        "bash",
        str(ROOT / "deploy" / "postgres.sh"),
        action,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=os.environ.copy(),
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, f"postgres.sh {action} failed:\n{out.decode()}"


ACCOUNTS = [f"main/C-{i:03d}" for i in range(12)] + ["de01/C-900"]


# ---- units: no services needed ------------------------------------------------------


def test_driver_errors_say_whether_a_retry_helps() -> None:
    assert isinstance(
        translate(ConnectionRefusedError(111, "refused"), "x"), StoreUnavailable
    )
    assert isinstance(translate(TimeoutError(), "x"), StoreUnavailable)
    assert isinstance(
        translate(asyncpg.AdminShutdownError("bye"), "x"), StoreUnavailable
    )
    assert isinstance(
        translate(asyncpg.CannotConnectNowError("starting"), "x"), StoreUnavailable
    )
    for permanent in (
        asyncpg.UndefinedTableError("no audit_log"),
        asyncpg.InvalidPasswordError("wrong"),
        asyncpg.InsufficientPrivilegeError("denied"),
    ):
        error = translate(permanent, "writing")
        assert type(error) is StoreError and not error.retryable
        assert "writing" in str(error)


def test_unreadable_columns_become_null_and_the_event_is_kept_whole() -> None:
    event = snapshot("main/C-1", 1)
    event["data"]["exposure"]["total"] = "lots"
    event["data"]["as_of"] = "soon"
    event["time"] = None
    row = read_output("account_snapshots", orjson.dumps(event), 2, 7)
    assert isinstance(row, SnapshotRow)
    assert row.exposure_total is None and row.as_of is None
    assert orjson.loads(row.data)["exposure"]["total"] == "lots"
    assert (row.account, row.kafka_partition, row.kafka_offset) == ("main/C-1", 2, 7)


def test_records_without_json_id_or_account_are_malformed() -> None:
    no_account = decision("main/C-1", 0)
    del no_account["data"]["account"]
    no_account["subject"] = None
    for value in (
        b"{not json",
        b"[1, 2]",
        orjson.dumps({"data": {}}),
        orjson.dumps(no_account),
    ):
        with pytest.raises(MalformedRecord):
            read_output("audit_log", value, 0, 0)


def test_nul_characters_are_replaced_because_postgres_cannot_store_them() -> None:
    row = read_output("rejected_events", orjson.dumps(rejected(0)), 0, 0)
    assert row.values()[2] == '"not json \ufffd at all"'


def test_kafka_client_kwargs_plaintext_sasl_and_tls() -> None:
    plain = kafka_client_kwargs(Settings(kafka_bootstrap="k1:9092,k2:9092"))
    assert plain == {
        "bootstrap_servers": "k1:9092,k2:9092",
        "security_protocol": "PLAINTEXT",
        "client_id": "credit-monitor",
    }

    sasl = kafka_client_kwargs(
        Settings(
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_mechanism="SCRAM-SHA-512",
            kafka_sasl_username="monitor",
            kafka_sasl_password=SecretStr("s3cret"),
        )
    )
    assert sasl["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (sasl["sasl_plain_username"], sasl["sasl_plain_password"]) == (
        "monitor",
        "s3cret",
    )
    assert sasl["ssl_context"].check_hostname

    with pytest.raises(SettingsError, match="KAFKA_SASL_PASSWORD"):
        kafka_client_kwargs(
            Settings(
                kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="monitor"
            )
        )
    with pytest.raises(SettingsError, match="KAFKA_SSL_CAFILE"):
        kafka_client_kwargs(
            Settings(
                kafka_security_protocol="SSL",
                kafka_ssl_cafile=Path("/nonexistent/ca.pem"),
            )
        )


# ---- migrations ---------------------------------------------------------------------


@integration
async def test_migrations_apply_once_and_a_second_run_applies_nothing(
    schema_dsn: str,
) -> None:
    versions = [m.version for m in available_migrations()]
    assert versions[0] == "0001_initial"

    # Two workers starting together: the advisory lock lets one apply.
    first, second = await asyncio.gather(migrate(schema_dsn), migrate(schema_dsn))
    assert sorted([first, second]) == [[], versions]
    assert await migrate(schema_dsn) == []

    rows = await fetch(schema_dsn, "SELECT version FROM schema_migrations ORDER BY 1")
    assert [r["version"] for r in rows] == versions
    relations = await fetch(
        schema_dsn,
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = current_schema()",
    )
    assert {r["table_name"] for r in relations} >= {
        "schema_migrations",
        "audit_log",
        "account_snapshots",
        "rejected_events",
        "accounts_on_hold",
        "blocked_orders",
        "largest_exposures",
        "overdue_aging",
    }


@integration
async def test_audit_log_refuses_update_delete_and_truncate(store_dsn: str) -> None:
    batch = RowBatch()
    batch.add(read_output("audit_log", orjson.dumps(decision("main/C-1", 1)), 0, 0))
    conn = await asyncpg.connect(store_dsn, timeout=10)
    try:
        await write_batch(conn, batch)
        for statement in (
            "UPDATE audit_log SET status = 'OK'",
            "DELETE FROM audit_log",
            "TRUNCATE audit_log",
        ):
            with pytest.raises(asyncpg.RestrictViolationError, match="append-only"):
                await conn.execute(statement)
        assert await conn.fetchval("SELECT count(*) FROM audit_log") == 1
    finally:
        await conn.close()


@integration
async def test_an_older_snapshot_never_replaces_a_newer_one(store_dsn: str) -> None:
    def batch_of(*rows: tuple[int, int, int]) -> RowBatch:
        batch = RowBatch()
        for seq, partition, offset in rows:
            value = orjson.dumps(snapshot("main/C-1", seq))
            batch.add(read_output("account_snapshots", value, partition, offset))
        return batch

    conn = await asyncpg.connect(store_dsn, timeout=10)
    try:
        # Within one batch the latest offset wins, whatever the order.
        result = await write_batch(conn, batch_of((3, 0, 30), (1, 0, 10), (2, 0, 20)))
        assert result.written["account_snapshots"] == 1
        # A replay of older offsets changes nothing ...
        result = await write_batch(conn, batch_of((1, 0, 10), (2, 0, 20)))
        assert result.written["account_snapshots"] == 0
        assert result.unchanged["account_snapshots"] == 2
        row = await conn.fetchrow(
            "SELECT output_id, kafka_offset FROM account_snapshots"
        )
        assert tuple(row) == ("snap-main/C-1-3", 30)
        # ... and a later one moves it on.
        await write_batch(conn, batch_of((4, 0, 40)))
        assert (
            await conn.fetchval("SELECT exposure_total FROM account_snapshots") == 400
        )
    finally:
        await conn.close()


# ---- the sink -----------------------------------------------------------------------


def _stream(
    accounts: list[str], decisions_each: int, snapshots_each: int, rejections: range
) -> dict[str, list[dict[str, Any]]]:
    return {
        DECISIONS: [decision(a, n) for n in range(decisions_each) for a in accounts],
        SNAPSHOTS: [
            snapshot(a, s, status="HOLD" if i % 4 == 0 else "WARNING")
            for s in range(1, snapshots_each + 1)
            for i, a in enumerate(accounts)
        ],
        REJECTED: [rejected(n) for n in rejections],
    }


async def _produce_stream(
    settings: Settings, stream: dict[str, list[dict[str, Any]]]
) -> None:
    await asyncio.gather(
        *(produce(settings, t, events) for t, events in stream.items())
    )


async def _assert_stored_once(
    dsn: str, stream: dict[str, list[dict[str, Any]]]
) -> None:
    decisions, snapshots, rejections = (
        stream[DECISIONS],
        stream[SNAPSHOTS],
        stream[REJECTED],
    )
    accounts = {e["subject"] for e in snapshots}
    assert await table_counts(dsn) == {
        "audit_log": (len(decisions), len(decisions)),
        "account_snapshots": (len(accounts), len(accounts)),
        "rejected_events": (len(rejections), len(rejections)),
    }
    rows = await fetch(dsn, "SELECT output_id FROM audit_log")
    assert {r["output_id"] for r in rows} == {e["id"] for e in decisions}
    rows = await fetch(dsn, "SELECT output_id FROM rejected_events")
    assert {r["output_id"] for r in rows} == {e["id"] for e in rejections}
    # Every account shows its last snapshot.
    last = {e["subject"]: e["id"] for e in snapshots}
    rows = await fetch(dsn, "SELECT account, output_id FROM account_snapshots")
    assert {r["account"]: r["output_id"] for r in rows} == last


@integration
async def test_sink_stores_every_output_once_and_a_replay_adds_nothing(
    settings: Settings, store_dsn: str
) -> None:
    stream = _stream(ACCOUNTS, decisions_each=5, snapshots_each=3, rejections=range(8))
    await _produce_stream(settings, stream)
    await produce(settings, DECISIONS, [b"{this is not json"])
    await produce(settings, SNAPSHOTS, [None], key="main/C-gone")

    sink = await started_sink(settings)
    try:
        await sink.wait_caught_up(60)
    finally:
        await sink.stop()
    await _assert_stored_once(store_dsn, stream)
    stats = sink.stats
    assert stats.malformed == 1 and stats.tombstones == 1
    assert stats.rows_written["audit_log"] == 65
    assert stats.rows_written["rejected_events"] == 8
    # One row per account, moved forward once per batch that held a newer snapshot.
    assert 13 <= stats.rows_written["account_snapshots"] <= 39
    assert stats.batches > 1 and stats.backlog == 0 and stats.failures == 0
    assert stats.connected

    # The columns say what the events say.
    blocked = await fetch(
        store_dsn, "SELECT * FROM audit_log WHERE output_id = $1", "out-main/C-001-1"
    )
    assert blocked[0]["type"] == "credit.order.blocked"
    assert blocked[0]["order_id"] == "SO-1"
    assert blocked[0]["reason_codes"] == ["LIMIT_EXCEEDED", "OVERDUE"]
    assert blocked[0]["cause_id"] == "erp/sales/evt-main/C-001-1"
    assert blocked[0]["event_time"] == T0 + dt.timedelta(minutes=1)
    held = await fetch(
        store_dsn, "SELECT * FROM account_snapshots WHERE account = $1", "de01/C-900"
    )
    assert (held[0]["company"], held[0]["customer_id"]) == ("de01", "C-900")
    assert held[0]["exposure_total"] == Decimal("300.00")

    # Replay 1: a new consumer group re-reads the same records from offset 0.
    everything = "SELECT * FROM account_snapshots ORDER BY account"
    snapshots_before = await fetch(store_dsn, everything)
    replay = await started_sink(settings, group_id=f"{settings.app_id}-replay")
    try:
        await replay.wait_caught_up(60)
    finally:
        await replay.stop()
    assert sum(replay.stats.rows_written.values()) == 0
    assert replay.stats.rows_unchanged["account_snapshots"] == len(stream[SNAPSHOTS])
    assert await fetch(store_dsn, everything) == snapshots_before

    # Replay 2: the same events published again (a producer re-sending them).
    await _produce_stream(settings, stream)
    sink = await started_sink(settings)
    try:
        await sink.wait_caught_up(60)
    finally:
        await sink.stop()
    assert sink.stats.rows_written["audit_log"] == 0
    assert sink.stats.rows_written["rejected_events"] == 0
    await _assert_stored_once(store_dsn, stream)


@integration
async def test_sink_holds_records_while_postgres_is_stopped_for_30s_and_loses_none(
    settings: Settings, store_dsn: str, kafka_bootstrap: str
) -> None:
    before = _stream(
        ACCOUNTS[:6], decisions_each=5, snapshots_each=2, rejections=range(4)
    )
    during = _stream(
        ACCOUNTS[6:], decisions_each=5, snapshots_each=2, rejections=range(4, 8)
    )
    late = _stream(
        ACCOUNTS[:6], decisions_each=0, snapshots_each=0, rejections=range(8, 10)
    )
    late[DECISIONS] = [decision(a, n) for n in range(5, 10) for a in ACCOUNTS]
    late[SNAPSHOTS] = [snapshot(a, 3, status="HOLD") for a in ACCOUNTS]
    everything = {t: before[t] + during[t] + late[t] for t in before}
    committed_before = sum(len(events) for events in before.values())

    sink = await started_sink(settings)
    admin = AIOKafkaAdminClient(**kafka_client_kwargs(settings))
    await admin.start()
    try:
        await _produce_stream(settings, before)
        await sink.wait_caught_up(60)
        assert sink.stats.failures == 0

        try:
            await postgres("stop")
            await _produce_stream(settings, during)
            await asyncio.sleep(15)
            await _produce_stream(settings, late)
            await asyncio.sleep(15)

            # Down for 30 s: the sink tried, failed, holds its batch, and has
            # committed nothing past what was written before the stop.
            assert sink.stats.failures > 0
            assert not sink.stats.connected and sink.stats.backlog > 0
            assert sink.stats.last_error is not None
            offsets = await admin.list_consumer_group_offsets(sink.group_id)
            assert sum(max(o.offset, 0) for o in offsets.values()) == committed_before
        finally:
            await postgres("start")

        await sink.wait_caught_up(60)
        assert sink.stats.connected and sink.stats.backlog == 0
    finally:
        await sink.stop()
        await admin.close()

    await _assert_stored_once(store_dsn, everything)
    offsets_total = sum(len(events) for events in everything.values())
    assert sink.stats.records_consumed >= offsets_total
    assert sink.stats.rows_written["audit_log"] == len(everything[DECISIONS])
    assert sink.stats.rows_written["rejected_events"] == len(everything[REJECTED])


@integration
async def test_sink_retries_a_batch_whose_connection_dies_mid_transaction(
    settings: Settings, store_dsn: str
) -> None:
    schema = store_dsn.rsplit("application_name=", 1)[1]
    conn = await asyncpg.connect(store_dsn, timeout=10)
    try:
        # Hold each insert into rejected_events long enough to be caught in the act.
        await conn.execute("""
            CREATE FUNCTION slow_down() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_sleep(1); RETURN NULL; END $$;
            CREATE TRIGGER slow_down BEFORE INSERT ON rejected_events
                FOR EACH STATEMENT EXECUTE FUNCTION slow_down();
        """)
        stream = _stream(
            ACCOUNTS[:2], decisions_each=3, snapshots_each=1, rejections=range(2)
        )
        await _produce_stream(settings, stream)
        sink = await started_sink(settings)
        try:
            # The sink's transaction has written audit rows and now waits in the
            # trigger: end its session, as a crash or failover would.
            killed = None
            for _ in range(100):
                killed = await conn.fetchval(
                    """SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                        WHERE application_name = $1 AND pid <> pg_backend_pid()
                          AND wait_event = 'PgSleep'""",
                    schema,
                )
                if killed:
                    break
                await asyncio.sleep(0.1)
            assert killed, "the sink never reached the slow insert"
            await sink.wait_caught_up(30)
        finally:
            await sink.stop()
    finally:
        await conn.close()
    assert sink.stats.failures >= 1
    assert "terminat" in (sink.stats.last_error or "").lower()
    await _assert_stored_once(store_dsn, stream)


@integration
async def test_sink_without_schema_keeps_its_records_until_migrations_run(
    settings: Settings, schema_dsn: str
) -> None:
    stream = _stream(
        ACCOUNTS[:3], decisions_each=2, snapshots_each=1, rejections=range(2)
    )
    await _produce_stream(settings, stream)
    admin = AIOKafkaAdminClient(**kafka_client_kwargs(settings))
    await admin.start()
    try:
        # Retrying cannot help here; the sink says so, commits nothing, and a
        # stop gives its batch up uncommitted.
        sink = await started_sink(settings)
        try:
            await sink.wait_until(lambda s: s.failures >= 2, timeout_seconds=30)
        finally:
            await sink.stop()
        assert 'relation "audit_log" does not exist' in (sink.stats.last_error or "")
        assert sink.stats.backlog > 0 and sink.stats.batches == 0
        offsets = await admin.list_consumer_group_offsets(sink.group_id)
        assert all(o.offset <= 0 for o in offsets.values())

        # Once the schema exists, the same group starts over and writes it all.
        await migrate(schema_dsn)
        sink = await started_sink(settings)
        try:
            await sink.wait_caught_up(30)
        finally:
            await sink.stop()
    finally:
        await admin.close()
    assert sink.stats.failures == 0
    await _assert_stored_once(schema_dsn, stream)


# ---- read helpers -------------------------------------------------------------------


@integration
async def test_queries_read_back_holds_blocked_orders_audit_and_summary(
    store_dsn: str,
) -> None:
    batch = RowBatch()
    offset = 0
    for i, account in enumerate(ACCOUNTS[:4]):
        status = "HOLD" if i < 2 else "OK"
        for seq in (1, 2):
            value = orjson.dumps(snapshot(account, seq + i, status=status))
            batch.add(read_output("account_snapshots", value, 0, offset := offset + 1))
        for n in range(5):
            value = orjson.dumps(decision(account, n))
            batch.add(read_output("audit_log", value, 1, offset := offset + 1))
    conn = await asyncpg.connect(store_dsn, timeout=10)
    try:
        await write_batch(conn, batch)
    finally:
        await conn.close()

    pool = await asyncpg.create_pool(store_dsn, min_size=1, max_size=2)
    try:
        snap = await queries.get_snapshot(pool, "main/C-001")
        assert snap is not None and snap.output_id == "snap-main/C-001-3"
        assert snap.data["exposure"]["total"] == "300.00"
        assert await queries.get_snapshot(pool, "main/nobody") is None

        held = await queries.accounts_on_hold(pool)
        assert [h.account for h in held] == ["main/C-000", "main/C-001"]
        # The status change at minute 2 moved them into HOLD.
        assert held[0].hold_since == T0 + dt.timedelta(minutes=2)
        assert held[0].reason_codes == ("UTILIZATION_HIGH",)

        orders = await queries.blocked_orders(pool)
        assert [(o.account, o.order_id) for o in orders] == [
            ("main/C-000", "SO-B2"),
            ("main/C-001", "SO-B3"),
        ]
        assert orders[0].amount == Decimal("250.00")
        assert orders[0].reason_codes == ("LIMIT_EXCEEDED",)
        assert len(await queries.blocked_orders(pool, "main/C-001")) == 1

        audit = await queries.audit_for_account(pool, "main/C-002", limit=3)
        assert [a.output_id for a in audit] == [
            f"out-main/C-002-{n}" for n in (4, 3, 2)
        ]
        assert audit[2].status == "HOLD" and audit[2].data["previous_status"] == "OK"

        summary = await queries.summary(pool)
        assert summary.accounts == 4
        assert summary.accounts_by_status == {"HOLD": 2, "OK": 2}
        assert (summary.on_hold, summary.blocked_orders) == (2, 2)
        assert [e.account for e in summary.top_exposures] == [
            "main/C-003",
            "main/C-002",
            "main/C-001",
            "main/C-000",
        ]
        assert summary.top_exposures[0].exposure_total == Decimal("500.00")
        assert summary.overdue_by_bucket == {
            "EUR": {
                "1-30": Decimal("160.00"),
                "31-60": Decimal(0),
                "61-90": Decimal(0),
                "90+": Decimal(0),
            }
        }
    finally:
        await pool.close()
