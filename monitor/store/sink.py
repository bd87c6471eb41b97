"""The audit sink: the service's output topics, copied into PostgreSQL.

Delivery is at least once and writes are idempotent, so every output record
ends up stored exactly once: a batch's Kafka offsets are committed only after
its transaction has committed, and a batch that is written again (after a
crash, a rebalance or a replay) adds nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaConnectionError, KafkaError

from monitor.kafka_config import KafkaUnavailable, kafka_client_kwargs
from monitor.settings import Settings
from monitor.store.connection import connect
from monitor.store.errors import StoreError
from monitor.store.rows import TABLES, MalformedRecord, TableName, read_output
from monitor.store.writer import RowBatch, WriteResult, write_batch
from schemas.topics import DECISIONS, REJECTED, SNAPSHOTS

__all__ = ["AuditSink", "SinkStats"]

log = logging.getLogger(__name__)

_TABLE_OF_TOPIC: dict[str, TableName] = {
    DECISIONS: "audit_log",
    SNAPSHOTS: "account_snapshots",
    REJECTED: "rejected_events",
}

# While PostgreSQL is away, repeat the warning at most this often.
_REPEAT_WARNING_SECONDS = 60.0
# A statement of one batch that takes longer than this counts as a failed write.
_COMMAND_TIMEOUT_SECONDS = 60.0
# Wait after a fetch error that aiokafka did not retry by itself.
_KAFKA_RETRY_SECONDS = 2.0


def _per_table() -> dict[TableName, int]:
    return dict.fromkeys(TABLES, 0)


@dataclass
class SinkStats:
    """What the sink has done since it started; read it, never write it."""

    rows_written: dict[TableName, int] = field(default_factory=_per_table)
    """Rows added to each table (for snapshots: rows added or moved forward)."""
    rows_unchanged: dict[TableName, int] = field(default_factory=_per_table)
    """Records already stored (replays, redeliveries) or older than the stored snapshot."""
    records_consumed: int = 0
    """Records fetched from Kafka, counting each redelivery."""
    batches: int = 0
    """Batches written and committed."""
    failures: int = 0
    """Failed attempts to write a batch."""
    malformed: int = 0
    """Records skipped because they are not output events (bad JSON, no id...)."""
    tombstones: int = 0
    """Records without a value, skipped."""
    commit_failures: int = 0
    """Offset commits Kafka refused; the records are re-read and change nothing."""
    backlog: int = 0
    """Records fetched but not yet written and committed."""
    last_error: str | None = None
    """The latest write or Kafka error, kept after recovery for the curious."""
    connected: bool = False
    """Whether the latest attempt to use PostgreSQL succeeded."""
    last_write_at: float | None = None
    """Unix time of the latest successful batch."""


class AuditSink:
    """Consumes the decision, snapshot and rejected topics into PostgreSQL.

    Usage::

        sink = AuditSink(load_settings())
        await sink.start()
        ...
        await sink.stop()

    Each batch goes through four steps:

    1. fetch up to `pg_batch_size` records from the three topics;
    2. turn them into rows, skipping records that are not output events;
    3. write all rows in one transaction; while PostgreSQL fails, hold the batch
       and retry with exponential backoff up to `pg_retry_max_seconds`, keeping
       the partitions paused (so the group membership stays alive);
    4. commit the batch's offsets, never before its rows are written.

    The schema must exist: run `python -m monitor.store.migrations` (or
    `monitor.store.migrations.migrate`) first.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        group_id: str | None = None,
        poll_timeout_seconds: float = 1.0,
        retry_initial_seconds: float = 0.5,
    ) -> None:
        """
        Args:
            settings: Kafka, topic and PostgreSQL settings.
            group_id: consumer group; default `f"{settings.app_id}-audit"`.
            poll_timeout_seconds: longest wait for records in one fetch; also how
                quickly `stop()` is noticed while idle.
            retry_initial_seconds: first wait after a failed write; it doubles
                with each failure up to `settings.pg_retry_max_seconds`.
        """
        self.settings = settings
        self.group_id = group_id or f"{settings.app_id}-audit"
        self.topics: dict[str, TableName] = {
            settings.topic(name): table for name, table in _TABLE_OF_TOPIC.items()
        }
        self.stats = SinkStats()
        self._poll_timeout_ms = int(poll_timeout_seconds * 1000)
        self._retry_initial_seconds = retry_initial_seconds
        self._dsn = settings.pg_dsn.get_secret_value()
        self._consumer: AIOKafkaConsumer | None = None
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    # ---- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Join the consumer group and start copying in a background task.

        Raises `KafkaUnavailable` when the brokers cannot be reached. PostgreSQL
        need not be up: the sink waits for it with the first batch.
        """
        if self._task is not None:
            raise RuntimeError("the audit sink is already started")
        consumer = AIOKafkaConsumer(
            *self.topics,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **kafka_client_kwargs(self.settings),
        )
        try:
            await consumer.start()
        except KafkaError as exc:
            await consumer.stop()
            raise KafkaUnavailable(
                f"audit sink cannot reach Kafka at {self.settings.kafka_bootstrap}: {exc}"
            ) from exc
        self._consumer = consumer
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(consumer), name="audit-sink")
        log.info(
            "audit sink started: group %s, topics %s, batches of up to %d records",
            self.group_id,
            ", ".join(self.topics),
            self.settings.pg_batch_size,
        )

    async def stop(self, timeout_seconds: float = 30.0) -> None:
        """Finish the batch in hand, then leave the group and disconnect.

        A batch that cannot be written now (PostgreSQL away) is given up
        uncommitted: the next start reads it again. After `timeout_seconds` the
        background task is cancelled, with the same outcome.
        """
        self._stopping.set()
        task, self._task = self._task, None
        if task is not None:
            done, _ = await asyncio.wait({task}, timeout=timeout_seconds)
            if not done:
                log.warning(
                    "audit sink did not finish its batch within %.0f s; cancelling "
                    "it (its offsets stay uncommitted and it is re-read on restart)",
                    timeout_seconds,
                )
                task.cancel()
                await asyncio.wait({task})
            if not task.cancelled():
                task.exception()  # mark it retrieved: _run has logged it
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        await self._drop_connection()
        log.info("audit sink stopped")

    @property
    def running(self) -> bool:
        """True while the background task is alive."""
        return self._task is not None and not self._task.done()

    # ---- helpers for tests and health checks ---------------------------------------

    async def wait_until(
        self, predicate: Callable[[SinkStats], bool], timeout_seconds: float
    ) -> None:
        """Return once `predicate(self.stats)` holds; `TimeoutError` otherwise."""
        deadline = time.monotonic() + timeout_seconds
        while not predicate(self.stats):
            self._raise_if_dead()
            if time.monotonic() > deadline:
                raise TimeoutError(f"audit sink: condition not met; stats {self.stats}")
            await asyncio.sleep(0.05)

    async def wait_caught_up(self, timeout_seconds: float) -> None:
        """Return once every record now on the topics is written and committed."""
        deadline = time.monotonic() + timeout_seconds
        while not await self.caught_up():
            self._raise_if_dead()
            if time.monotonic() > deadline:
                raise TimeoutError(f"audit sink: not caught up; stats {self.stats}")
            await asyncio.sleep(0.1)

    async def caught_up(self) -> bool:
        """True when all partitions are assigned to this sink and none has a lag."""
        consumer = self._consumer
        if consumer is None or self.stats.backlog:
            return False
        assignment = consumer.assignment()
        for topic in self.topics:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                return False
            if any(TopicPartition(topic, p) not in assignment for p in partitions):
                return False
        ends = await consumer.end_offsets(list(assignment))
        for tp in assignment:
            if await consumer.position(tp) < ends[tp]:
                return False
        return not self.stats.backlog

    def _raise_if_dead(self) -> None:
        if self._task is not None and self._task.done():
            exc = self._task.exception()
            raise RuntimeError(f"audit sink stopped: {exc!r}") from exc

    # ---- the loop -------------------------------------------------------------------

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    fetched = await consumer.getmany(
                        timeout_ms=self._poll_timeout_ms,
                        max_records=self.settings.pg_batch_size,
                    )
                except KafkaError as exc:
                    self._kafka_trouble(exc)
                    await self._sleep(_KAFKA_RETRY_SECONDS)
                    continue
                if not fetched:
                    continue

                self.stats.backlog = sum(len(records) for records in fetched.values())
                self.stats.records_consumed += self.stats.backlog
                batch, next_offsets = self._rows(fetched)

                if batch and not await self._write_until_done(consumer, batch):
                    return  # stopping with the batch unwritten: nothing committed

                await self._commit(consumer, next_offsets)
                self.stats.backlog = 0
                self.stats.batches += 1
        except Exception:
            log.exception(
                "audit sink stopped by an unexpected error; nothing past the last "
                "written batch was committed. Restart the worker"
            )
            raise

    def _rows(
        self, fetched: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> tuple[RowBatch, dict[TopicPartition, int]]:
        """The batch's rows, and the offset to commit for each partition."""
        batch = RowBatch()
        next_offsets: dict[TopicPartition, int] = {}
        for tp, records in fetched.items():
            table = self.topics[tp.topic]
            for record in records:
                next_offsets[tp] = record.offset + 1
                if record.value is None:
                    self.stats.tombstones += 1
                    log.debug(
                        "skipping tombstone on %s[%d] at offset %d",
                        tp.topic,
                        tp.partition,
                        record.offset,
                    )
                    continue
                try:
                    batch.add(
                        read_output(table, record.value, tp.partition, record.offset)
                    )
                except MalformedRecord as exc:
                    self.stats.malformed += 1
                    log.error(
                        "skipping unreadable record on %s[%d] at offset %d: %s. The "
                        "service should only publish output events there; read the "
                        "record with kafka-console-consumer and fix its producer",
                        tp.topic,
                        tp.partition,
                        record.offset,
                        exc,
                    )
        return batch, next_offsets

    async def _write_until_done(
        self, consumer: AIOKafkaConsumer, batch: RowBatch
    ) -> bool:
        """Write `batch`, retrying while PostgreSQL fails; False if stopped first."""
        failures = 0
        first_failure = last_warning = 0.0
        try:
            while True:
                try:
                    result = await self._write(batch)
                except StoreError as exc:
                    failures += 1
                    self.stats.failures += 1
                    self.stats.last_error = str(exc)
                    self.stats.connected = False
                    await self._drop_connection()
                    now = time.monotonic()
                    if failures == 1:
                        first_failure = now
                    if self._stopping.is_set():
                        log.warning(
                            "audit sink stopping with %d records unwritten (%s); their "
                            "offsets stay uncommitted and the next start writes them",
                            len(batch),
                            exc,
                        )
                        return False
                    delay = min(
                        self._retry_initial_seconds * 2 ** (failures - 1),
                        self.settings.pg_retry_max_seconds,
                    )
                    if failures == 1 or now - last_warning >= _REPEAT_WARNING_SECONDS:
                        last_warning = now
                        self._warn_write_failed(exc, len(batch), failures, delay)
                    await self._idle(consumer, delay)
                    continue

                self._count(result)
                if failures:
                    log.info(
                        "PostgreSQL is back after %d failed attempts in %.1f s; the "
                        "held batch of %d records is written, catching up",
                        failures,
                        time.monotonic() - first_failure,
                        len(batch),
                    )
                return True
        finally:
            if paused := consumer.paused():
                consumer.resume(*paused)

    async def _write(self, batch: RowBatch) -> WriteResult:
        if self._conn is None or self._conn.is_closed():
            # The command timeout turns a server that stopped answering (rather
            # than refusing) into a TimeoutError, hence StoreUnavailable.
            self._conn = await connect(
                self._dsn, command_timeout_seconds=_COMMAND_TIMEOUT_SECONDS
            )
            log.info(
                "audit sink connected to PostgreSQL %s", self.settings.pg_dsn_for_logs()
            )
        return await write_batch(self._conn, batch)

    def _count(self, result: WriteResult) -> None:
        for table in TABLES:
            self.stats.rows_written[table] += result.written[table]
            self.stats.rows_unchanged[table] += result.unchanged[table]
        self.stats.connected = True
        self.stats.last_write_at = time.time()

    def _warn_write_failed(
        self, exc: StoreError, records: int, failures: int, delay: float
    ) -> None:
        if exc.retryable:
            log.warning(
                "PostgreSQL %s is unavailable (%s); holding %d records, retry %d in "
                "%.1f s. Nothing is lost: offsets stay uncommitted until the batch "
                "is written. Check the server is up and reachable",
                self.settings.pg_dsn_for_logs(),
                exc,
                records,
                failures,
                delay,
            )
        else:
            log.error(
                "PostgreSQL %s refused the audit batch (%s); this will not pass by "
                "itself. Apply the migrations (python -m monitor.store.migrations) "
                "or fix the role's privileges. Holding %d records, retry %d in %.1f s",
                self.settings.pg_dsn_for_logs(),
                exc,
                records,
                failures,
                delay,
            )

    async def _idle(self, consumer: AIOKafkaConsumer, seconds: float) -> None:
        """Wait `seconds` (or until stop) while keeping the group membership alive.

        aiokafka drops a member that does not fetch within `max_poll_interval_ms`,
        so instead of sleeping the sink keeps fetching from paused partitions.
        Records that arrive anyway (partitions newly assigned by a rebalance) are
        put back by seeking to their first offset; they are read after the batch.
        """
        deadline = time.monotonic() + seconds
        while not self._stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            consumer.pause(*consumer.assignment())
            try:
                got = await consumer.getmany(timeout_ms=int(min(remaining, 1.0) * 1000))
            except KafkaError as exc:
                self._kafka_trouble(exc)
                await self._sleep(min(remaining, 1.0))
                continue
            for tp, records in got.items():
                consumer.seek(tp, records[0].offset)

    async def _commit(
        self, consumer: AIOKafkaConsumer, next_offsets: dict[TopicPartition, int]
    ) -> None:
        # A partition taken away by a rebalance cannot be committed by us; its new
        # owner re-reads those records, and re-writing them changes nothing.
        assignment = consumer.assignment()
        offsets = {tp: o for tp, o in next_offsets.items() if tp in assignment}
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:
            self.stats.commit_failures += 1
            log.warning(
                "could not commit audit offsets (%s); the records are written and "
                "will be read again after the rebalance, changing nothing",
                exc,
            )

    def _kafka_trouble(self, exc: KafkaError) -> None:
        self.stats.last_error = f"Kafka: {exc!r}"
        level = (
            logging.WARNING if isinstance(exc, KafkaConnectionError) else logging.ERROR
        )
        log.log(
            level,
            "audit sink cannot fetch from Kafka at %s (%r); retrying. Check the "
            "brokers and the consumer group %s",
            self.settings.kafka_bootstrap,
            exc,
            self.group_id,
        )

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            pass

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            # terminate, not close: close waits for a server that may be gone.
            conn.terminate()
