"""The faust-streaming service: the credit domain over Kafka, state in changelog tables.

Topology (names in `schemas.topics`, all created at start-up with explicit partition
counts, none by the broker):

    credit.events ──(one agent, one record in flight per partition)──> CreditEngine
        │  per partition: accounts table (changelog) + partition table (FX, clock)
        ├──> credit.decisions   approved / blocked / released / status changes
        ├──> credit.snapshots   compacted, latest snapshot per account
        └──> credit.rejected    bad records with reason, bytes, topic/partition/offset
    credit.broadcast ──> copied into every partition of credit.events (FX rates, ticks)

Why it cannot lose or double-count an event (STREAMING-NOTES):
- input records are keyed by account, so no repartition topic exists;
- one agent with concurrency 1 and no `take()` applies each partition's records strictly
  in offset order: a record that arrives out of order (the Kafka client or faust skipped
  some) is not applied, and the partition is read again from the record expected
  (`streams.sequence`);
- the worker commits input offsets itself, faust's acks being off for the input: the
  offset committed is the record after the last one applied, and the producer (outputs
  and changelog records) is flushed before it;
- replaying a record onto restored state is harmless: every account keeps the ids of
  the events it applied and the offset of the last record that changed it, so a tick
  or rate read again leaves alone the accounts that went through it already (a crash
  can cut the changelog between an account and the partition's clock);
- a record whose state reached the changelog but whose outputs may not have reached
  Kafka re-sends them from the account's outbox, with the same deterministic ids.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
import os
import time
from typing import Any

import faust
import orjson
from aiokafka.structs import OffsetAndMetadata, TopicPartition
from faust.types import TP

from monitor.domain.engine import CreditEngine, output_id
from monitor.domain.policy import Policy
from monitor.domain.state import account_from_state, account_to_state, kept_json
from monitor.domain.account import Account
from monitor.metrics import CreditMetrics
from streams import observe
from streams.audit import AuditService
from streams.credentials import faust_credentials
from streams.sequence import InputSequence, Verdict
from streams.topology import CHANGELOG_ACCOUNTS
from monitor.settings import Settings
from schemas import topics

log = logging.getLogger(__name__)

SNAPSHOT_FLUSH_SECONDS = 1.0
FIGURES_SECONDS = 15.0
SNAPSHOT_FLUSH_AT = 5000
STALL_CHECK_SECONDS = 3.0
# Time for faust's fetcher to finish handing out the record it holds before a rewind.
SEEK_SETTLE_SECONDS = 0.05
# How often applied input offsets are committed, and how long a rebalance or a stop
# waits for the record in the agent's hands before committing.
COMMIT_SECONDS = 1.0
REVOKE_WAIT_SECONDS = 10.0
DECISION_TYPES = frozenset({
    "credit.order.approved", "credit.order.blocked", "credit.order.released",
    "credit.account.status_changed", "credit.account.grade_changed",
    "credit.limit.review_suggested",
})


class PartitionEngine:
    """The credit engine of one input partition, mirrored into the changelog tables."""

    def __init__(self, partition: int, engine: CreditEngine) -> None:
        self.partition = partition
        self.engine = engine
        # account -> [[cause, offset, [[topic, json], ...]], ...]: outputs that may not
        # have reached Kafka yet; trimmed once the source offset is committed.
        self.outbox: dict[str, list[list[Any]]] = {}
        self.by_cause: dict[str, set[str]] = {}
        # Accounts whose snapshot is to be published; a snapshot is a view, so it is
        # sent once per flush rather than once per event.
        self.dirty: dict[str, None] = {}
        # (account, cause, offset) of outbox entries restored from the changelog: a
        # previous life sent their outputs, maybe not to the end. Entries made in this
        # life went to this producer, so a redelivery needs no second copy of them.
        self.inherited: set[tuple[str, str, int]] = set()

    def remember(self, account: str, cause: str, offset: int, sent: list[list[Any]]) -> None:
        self.outbox.setdefault(account, []).append([cause, offset, sent])
        self.by_cause.setdefault(cause, set()).add(account)

    def trim(self, account: str, committed: int | None) -> list[list[Any]]:
        entries = self.outbox.get(account, [])
        if committed is not None:
            kept = [e for e in entries if e[1] >= committed]
            for e in entries:
                if e[1] < committed:
                    self.by_cause.get(e[0], set()).discard(account)
                    self.inherited.discard((account, e[0], e[1]))
            entries = kept
            self.outbox[account] = kept
        return entries


class CreditStreams:
    """Builds the faust app around the credit engine; one per worker process."""

    def __init__(self, settings: Settings, policy: Policy) -> None:
        self.settings = settings
        self.policy = policy
        self.retention = dt.timedelta(days=settings.retention_days)
        self.app = faust.App(
            settings.app_id,
            broker=[f"kafka://{h.strip()}" for h in settings.kafka_bootstrap.split(",")],
            broker_credentials=faust_credentials(settings),
            store="memory://",
            topic_partitions=settings.partitions,
            topic_replication_factor=settings.replication_factor,
            topic_allow_declare=True,
            topic_disable_leader=True,
            datadir=str(settings.state_dir),
            web_enabled=True,
            web_host=settings.web_host,
            web_bind=settings.web_host,
            web_port=settings.web_port,
            web_in_thread=False,
            key_serializer="raw",
            value_serializer="raw",
            processing_guarantee="at_least_once",
            broker_commit_every=1000,
            broker_commit_interval=1.0,
            stream_buffer_maxsize=2048,
            producer_max_batch_size=262144,
            producer_linger_ms=5,
            consumer_auto_offset_reset="earliest",
            table_standby_replicas=0,
            broker_session_timeout=settings.kafka_session_timeout_seconds,
            broker_heartbeat_interval=max(1.0, settings.kafka_session_timeout_seconds / 4),
            # A topic created while the group formed is noticed in seconds, not minutes.
            consumer_metadata_max_age_ms=15000,
        )
        name = settings.topic
        part = settings.partitions
        # No faust acks on the input: the worker commits its offsets itself, only ever
        # up to the last record it applied in order (see `commit_applied`).
        self.input = self.app.topic(name(topics.INPUT), partitions=part,
                                    key_type=bytes, value_type=bytes, acks=False)
        self.broadcast = self.app.topic(name(topics.BROADCAST), partitions=1,
                                        key_type=bytes, value_type=bytes)
        self.decisions = self.app.topic(name(topics.DECISIONS), partitions=part)
        self.snapshots = self.app.topic(name(topics.SNAPSHOTS), partitions=part)
        self.rejected = self.app.topic(name(topics.REJECTED), partitions=part)
        self.accounts = self.app.Table(
            CHANGELOG_ACCOUNTS, partitions=part, key_type=bytes, value_type=bytes,
        )
        self.engines: dict[int, PartitionEngine] = {}
        self.stale = True
        self.processed = 0
        # Which record of each input partition may be applied next (see
        # `streams.sequence`), and what the stall check saw last (see `unstall`).
        self.sequence = InputSequence()
        self.busy = False
        self._seen_processed = -1
        self._quiet_checks = 0
        self.audit = AuditService(settings)
        self.app.service(self.audit)
        self.metrics = CreditMetrics()
        self.metrics.watch_audit(lambda: self.audit.sink.stats if self.audit.sink else None)
        self._wire()

    # ---- wiring ----------------------------------------------------------------

    def _wire(self) -> None:
        app = self.app

        @app.agent(self.input, name="credit-events", concurrency=1)
        async def credit_events(stream: Any) -> None:
            async for event in stream.events():
                message = event.message
                if not await self.in_sequence(message):
                    continue
                try:
                    await self.on_record(message)
                except Exception:
                    # Bad input, and an account event the domain code fails on, become
                    # rejections; what gets here is a failure elsewhere (a tick or rate
                    # across accounts, the producer). Stop at once, committing nothing:
                    # after a restart the record is processed again, not lost.
                    msg = event.message
                    log.exception(
                        "failed on %s[%d]@%d; the worker stops without committing so "
                        "the record is retried on restart; report this with the record",
                        msg.topic, msg.partition, msg.offset,
                    )
                    logging.shutdown()
                    os._exit(70)
                self.sequence.applied(message.partition, message.offset)

        @app.agent(self.broadcast, name="broadcast-fan-out", concurrency=1)
        async def broadcast(stream: Any) -> None:
            async for event in stream.events():
                # The same record into every partition: each partition's clock and rates
                # then move in the same order relative to its own accounts' events.
                for partition in range(self.settings.partitions):
                    await self._send(self.input, None, event.message.value, partition)

        async def revoked(sender: Any, *args: Any, **kwargs: Any) -> None:
            # faust has stopped the flow and flushed the producer; the record in the
            # agent's hands, if any, is finished first, then what was applied is
            # committed while the partitions are still this worker's.
            await self._wait_idle(REVOKE_WAIT_SECONDS)
            await self.commit_applied()
            self.stale = True
            self.sequence.reset()

        async def assigned(sender: Any, *args: Any, **kwargs: Any) -> None:
            self.stale = True
            self.sequence.reset()

        async def stopping(sender: Any, *args: Any, **kwargs: Any) -> None:
            await self._wait_idle(REVOKE_WAIT_SECONDS)
            await self.commit_applied()

        app.on_partitions_revoked.connect(revoked)
        app.on_partitions_assigned.connect(assigned)
        app.on_before_shutdown.connect(stopping)

        @app.page("/health")
        async def health(web: Any, request: Any) -> Any:
            progress = observe.partition_progress(
                app, self.input.get_topic_name(), self.sequence.expected,
                self.sequence.committed)
            return web.json({"status": "ok", "processed": self.processed, **progress})

        @app.page("/ready")
        async def ready(web: Any, request: Any) -> Any:
            recovered = app.tables.recovery.completed.is_set()
            ok = recovered and not app.rebalancing
            owned = sorted(tp.partition for tp in app.consumer.assignment()
                           if tp.topic == self.input.get_topic_name())
            body = {"ready": ok, "recovered": recovered, "rebalancing": app.rebalancing,
                    "partitions": owned}
            return web.json(body, status=200 if ok else 503)

        @app.page("/metrics")
        async def metrics(web: Any, request: Any) -> Any:
            body, ctype = self.metrics.render(request.headers.get("Accept"))
            return web.bytes(body, headers={"Content-Type": ctype})

        @app.timer(interval=FIGURES_SECONDS)
        async def figures() -> None:
            await observe.account_figures(self.metrics,
                                          [pe.engine for pe in self.engines.values()])
            await observe.consumer_lag(self.metrics, app)

        @app.timer(interval=SNAPSHOT_FLUSH_SECONDS)
        async def snapshots_timer() -> None:
            await self.flush_snapshots()

        @app.timer(interval=COMMIT_SECONDS)
        async def commit_timer() -> None:
            if not app.rebalancing:
                await self.commit_applied()

        @app.timer(interval=STALL_CHECK_SECONDS)
        async def stall_check() -> None:
            await self.unstall()

        if self.settings.mode == "live":
            @app.timer(interval=self.settings.tick_interval_seconds)
            async def wall_clock() -> None:
                await self.send_wall_tick(dt.datetime.now(dt.timezone.utc))

    async def send_wall_tick(self, now: dt.datetime) -> None:
        """A `clock.tick` into every partition; every worker may send it, the id is the
        same for the same period, and a tick is idempotent anyway."""
        period = int(now.timestamp() // self.settings.tick_interval_seconds)
        tick = orjson.dumps({
            "specversion": "1.0", "id": f"wall-clock-{period}",
            "source": "credit-monitor/clock", "type": "clock.tick",
            "time": now.isoformat().replace("+00:00", "Z"), "data": {},
        })
        for partition in range(self.settings.partitions):
            await self._send(self.input, None, tick, partition)

    # ---- state -----------------------------------------------------------------

    def _load(self) -> None:
        """Rebuild the per-partition engines from the tables after a (re)assignment."""
        assigned = {tp.partition for tp in self.app.consumer.assignment()
                    if tp.topic == self.input.get_topic_name()}
        engines: dict[int, PartitionEngine] = {}
        for p in assigned:
            engine = CreditEngine(self.policy, retention=self.retention,
                                  saved_state=self._saved_state)
            raw = self.accounts.get(_partition_key(p))
            if raw is not None:
                engine.restore_shared_state(orjson.loads(raw))
            engines[p] = PartitionEngine(p, engine)
        restored: dict[int, list[Account]] = {p: [] for p in engines}
        for key, raw in list(self.accounts.items()):
            if key.startswith(PARTITION_KEY_PREFIX):
                continue
            value = orjson.loads(raw)
            p = value["p"]
            if p not in engines:
                continue
            restored[p].append(account_from_state(value["a"]))
            pe = engines[p]
            account_key = value["a"]["company"] + "/" + value["a"]["customer_id"]
            for cause, offset, sent in value["o"]:
                pe.remember(account_key, cause, offset, sent)
                pe.inherited.add((account_key, cause, offset))
        for p, accounts in restored.items():
            engines[p].engine.adopt(accounts)
            # A snapshot left unsent by a crash is sent now.
            engines[p].dirty.update(dict.fromkeys(a.key for a in accounts))
        self.engines = engines
        self.stale = False
        log.info("credit engines ready for partitions %s (%d accounts)",
                 sorted(engines), sum(len(a) for a in restored.values()))

    def _saved_state(self, account: str) -> dict[str, Any] | None:
        """The account's state as the changelog table holds it: after the last record
        that changed it (the engine undoes a failed event with it)."""
        raw = self.accounts.data.get(account.encode())
        return None if raw is None else orjson.loads(raw)["a"]  # type: ignore[no-any-return]

    async def commit_applied(self, *, again: bool = False) -> int:
        """Commit, for every input partition, the offset after the last record applied.

        faust's own commits are off for the input topic: it acknowledges records it
        dropped around a rebalance, and it may commit past a gap it noticed, so an
        offset could be committed for records never applied. Here the offset is exactly
        `InputSequence.expected`, and the producer is flushed first, so the outputs and
        changelog records of everything committed are in Kafka before the offset is.
        With `again`, offsets already committed are committed once more (a rewind
        needs the broker to hold exactly them). Returns the number of partitions
        committed.
        """
        topic = self.input.get_topic_name()
        seq = self.sequence
        owned = self.app.consumer.assignment()
        offsets = {TP(topic, p): nxt for p, nxt in seq.expected.items()
                   if (again or nxt > seq.committed.get(p, -1)) and TP(topic, p) in owned}
        if not offsets:
            return 0
        try:
            await self.app.producer.flush()
            await self._commit_offsets(offsets)
        except Exception as exc:  # noqa: BLE001 - a rebalance under way, the broker
            log.info("could not commit input offsets now (%r); retried", exc)
            return 0
        for tp, nxt in offsets.items():
            seq.committed[tp.partition] = nxt
        return len(offsets)

    async def _in_client_thread(self, method: str, *args: Any) -> Any:
        """Call a method of the worker's aiokafka consumer in the consumer's own thread.

        TODO: faust exposes neither its consumer thread nor an explicit-offset commit
        or committed-offset lookup; tests/test_streams.py checks on the pinned version
        that the commits reach the broker.
        """
        thread = self.app.consumer._thread
        client = thread._ensure_consumer()
        return await thread.call_thread(getattr(client, method), *args)

    async def _broker_committed(self, partition: int) -> int | None:
        """The offset the group has committed for an input partition, asked of the
        broker (faust's own note of it after an assignment was found missing)."""
        committed = await self._in_client_thread(
            "committed", TopicPartition(self.input.get_topic_name(), partition))
        return None if committed is None else int(committed)

    async def _commit_offsets(self, offsets: dict[TP, int]) -> None:
        """Commit explicit offsets with the worker's Kafka consumer, in its own thread.

        faust's transport-level commit (`Consumer._commit`) would do the same, but it
        crashes the worker when the group is rebalancing at that moment; here that
        failure is an exception the caller logs, and the next commit makes up for it.
        """
        await self._in_client_thread("commit", {
            TopicPartition(tp.topic, tp.partition): OffsetAndMetadata(offset, "")
            for tp, offset in offsets.items()
        })

    async def _wait_idle(self, timeout: float) -> None:
        """Wait until the agent has finished the record it holds, if any."""
        deadline = time.monotonic() + timeout
        while self.busy and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    async def in_sequence(self, message: Any) -> bool:
        """Whether the record is the next one of its partition to apply.

        When it lies beyond that, the records in between never reached the agent (see
        `streams.sequence`): the input is sought back to the records expected.
        """
        p, offset = message.partition, message.offset
        seq = self.sequence
        await self._ensure_started(p)
        verdict = seq.check(p, offset)
        if verdict is Verdict.APPLY:
            return True
        if verdict is Verdict.GAP and seq.should_seek(p, time.monotonic()):
            earliest = await self._earliest(p)
            if seq.expected[p] < earliest:
                # Deleted before they were applied: no seek can bring them back.
                self._lost_to_retention(p, seq.expected[p], earliest)
                seq.skip_to(p, earliest)
                if seq.check(p, offset) is Verdict.APPLY:
                    return True
            want = seq.expected[p]
            log.warning("partition %d: record %d reached the agent while %d was "
                        "expected; the records in between were skipped by the Kafka "
                        "client, so they are read again",
                        p, offset, want)
            self.metrics.input_gap()
            await self._rewind()
        return False

    async def _ensure_started(self, partition: int) -> None:
        if not self.sequence.knows(partition):
            self.sequence.start(partition, await self._start_offset(partition))

    async def _start_offset(self, partition: int) -> int:
        """Where a partition starts after an assignment: its committed offset, or the
        start of the log when the group never committed one or the topic's retention
        has deleted records from there on."""
        committed = await self._broker_committed(partition)
        earliest = await self._earliest(partition)
        if committed is not None and committed < earliest:
            self._lost_to_retention(partition, committed, earliest)
        return max(committed or 0, earliest)

    async def _earliest(self, partition: int) -> int:
        tp = TP(self.input.get_topic_name(), partition)
        earliest = await self.app.consumer.earliest_offsets(tp)
        return int(earliest.get(tp) or 0)

    def _lost_to_retention(self, partition: int, first: int, end: int) -> None:
        log.error("partition %d: records %d to %d were deleted by the input topic's "
                  "retention before this worker applied them; their events are lost "
                  "and the accounts they touched may be wrong until the ERP sends them "
                  "again", partition, first, end - 1)
        self.metrics.input_lost(end - first)

    async def _rewind(self) -> None:
        """Move every input partition back to the record it expects.

        What was applied is committed first, so the broker's committed offsets are
        exactly the records expected: faust's fetcher, when it finds the flow stopped,
        seeks to the committed offsets on its own, and the two moves then agree. The
        seek is made in the Kafka client's own thread with the flow stopped, since a
        batch the fetcher is still handing out would make faust drop the records read
        again as old. A rewind that still does not take is noticed by `in_sequence` or
        `unstall` and made again.
        """
        await self.commit_applied(again=True)
        topic = self.input.get_topic_name()
        owned = self.app.consumer.assignment()
        targets = {TP(topic, p): nxt for p, nxt in self.sequence.expected.items()
                   if TP(topic, p) in owned}
        if not targets:
            return
        consumer = self.app.consumer
        consumer.stop_flow()
        try:
            await consumer.wait_for_stopped_flow()
            await asyncio.sleep(SEEK_SETTLE_SECONDS)
            await consumer.seek_wait(targets)
        except Exception as exc:  # noqa: BLE001 - a rebalance under way, the broker
            log.warning("could not seek the input back to the records expected (%r); "
                        "trying again later", exc)
        finally:
            if not self.app.rebalancing:
                consumer.resume_flow()

    async def unstall(self) -> int:
        """Read again the records at the end of a partition that never reached the agent.

        A skipped record followed by others is caught by `in_sequence`; one at the end
        of a partition is not, until more records come. When the agent has been idle
        for two checks and the broker's end offset of a partition lies beyond the
        record expected, the input is sought back to the records expected. Returns the
        number of partitions found behind.
        """
        app = self.app
        # Not gated on `self.stale`: a worker none of whose records arrived since the
        # assignment is stale, and exactly the one that needs this.
        if (self.busy or app.rebalancing
                or not app.tables.recovery.completed.is_set()):
            self._quiet_checks = 0
            return 0
        if self.processed != self._seen_processed:
            self._seen_processed = self.processed
            self._quiet_checks = 0
            return 0
        self._quiet_checks += 1
        if self._quiet_checks < 2:
            return 0
        self._quiet_checks = 0
        topic = self.input.get_topic_name()
        tps = [tp for tp in app.consumer.assignment() if tp.topic == topic]
        if not tps:
            return 0
        ends = await app.consumer.highwaters(*tps)
        sought = 0
        now = time.monotonic()
        for tp in tps:
            p = tp.partition
            await self._ensure_started(p)
            end = ends.get(tp)
            if (end is not None and self.sequence.behind(p, end)
                    and self.sequence.should_seek(p, now)):
                log.warning("partition %d: records %d to %d are in Kafka but never "
                            "reached the agent; reading them again", p,
                            self.sequence.expected[p], end - 1)
                self.metrics.input_gap()
                sought += 1
        if sought:
            await self._rewind()
        return sought

    # ---- one record ------------------------------------------------------------

    async def on_record(self, message: Any) -> None:
        """Apply one input record and publish what it decides.

        Steps:
        1. apply it with the engine of its partition (a bad record becomes a rejection);
        2. a record seen before re-sends the outputs it left in the outbox;
        3. publish the outputs, then write every changed account (with its outbox
           entry) and the partition's clock and rates to the changelog tables;
        4. publish the snapshot of every account it changed or refreshed.
        """
        self.busy = True
        try:
            await self._on_record(message)
        finally:
            self.busy = False

    async def _on_record(self, message: Any) -> None:
        if self.stale:
            self._load()
        p = message.partition
        pe = self.engines.get(p)
        if pe is None:  # assigned while loading; load again
            self._load()
            pe = self.engines[p]
        engine = pe.engine
        origin = {"topic": message.topic, "partition": p, "offset": message.offset}
        raw = message.value if message.value is not None else b""

        outcome = engine.process_outcome(raw, origin, message.offset)
        self.processed += 1
        if outcome.failure is not None:
            log.error("a defect while applying %s[%d]@%d: the event was rejected and its "
                      "account left as before it; report this with the record\n%s",
                      message.topic, p, message.offset, outcome.failure)
        observe.record(self.metrics, outcome, message.timestamp)

        if outcome.duplicate is not None:
            # Seen before: it changes nothing. What it caused in a previous life of this
            # partition is sent again (same ids), in case that sending died in a crash.
            account, cause = outcome.duplicate
            accounts = [account] if account is not None else list(pe.by_cause.get(cause, ()))
            for name in accounts:
                for entry in pe.outbox.get(name, []):
                    if entry[0] == cause and (name, cause, entry[1]) in pe.inherited:
                        await self._resend(entry[2])
            if account is not None:
                pe.dirty[account] = None
            return

        by_account: dict[str, list[list[Any]]] = {}
        cause = outcome.cause
        for out in outcome.outputs:
            if out["type"] == "credit.event.rejected":
                out["data"]["original_base64"] = base64.b64encode(raw).decode()
                topic = self.rejected
            else:
                topic = self.decisions
            body = orjson.dumps(out)
            await self._send(topic, _key(out["subject"]), body)
            if out["subject"] is not None:
                # Kept with the account until the record's offset is committed.
                by_account.setdefault(out["subject"], []).append(
                    [topic.get_topic_name(), body.decode()]
                )

        is_global = outcome.broadcast
        if is_global and cause:
            # A tick read again after a restart: re-send what accounts kept for it.
            for account in list(pe.by_cause.get(cause, ())):
                if account not in by_account:
                    for entry in pe.outbox.get(account, []):
                        if entry[0] == cause and (account, cause, entry[1]) in pe.inherited:
                            await self._resend(entry[2])

        committed = self.sequence.committed.get(p)
        for account in outcome.changed:
            if cause and account in by_account:
                pe.remember(account, cause, message.offset, by_account[account])
            entries = pe.trim(account, committed)
            state = engine.accounts[account]
            await self._write(self.accounts, account.encode(), p, kept_json(
                {"p": p, "a": account_to_state(state), "o": entries}
            ))
        if is_global:
            await self._write(self.accounts, _partition_key(p), p,
                              kept_json(engine.shared_state()))

        pe.dirty.update(outcome.changed)
        pe.dirty.update(outcome.refreshed)
        if len(pe.dirty) >= SNAPSHOT_FLUSH_AT:
            await self.flush_snapshots()

    async def _send(self, topic: Any, key: bytes | None, value: bytes,
                    partition: int | None = None) -> None:
        # Straight to the Kafka producer, which faust flushes before it commits
        # offsets: whatever was sent for a record is in Kafka before its offset is.
        await self.app.producer.send(topic.get_topic_name(), key, value, partition,
                                     None, None)

    async def _write(self, table: Any, key: bytes, partition: int, value: bytes) -> None:
        """Set a table key and send its changelog record ourselves.

        `table[key] = value` would queue the changelog record in faust's producer
        buffer, whose flush before a commit gives up after 0.1 s without progress
        (faust-streaming 0.15): under load an offset could then be committed before
        the state it produced reached the changelog, and a crash would lose that
        state. The record goes to the changelog partition of the input partition,
        where faust's recovery reads it back.
        """
        table.data[key] = value
        await self._send(table.changelog_topic, key, value, partition)

    async def _resend(self, sent: list[list[Any]]) -> None:
        for topic_name, body in sent:
            topic = self.rejected if topic_name == self.rejected.get_topic_name() \
                else self.decisions
            subject = orjson.loads(body).get("subject")
            await self._send(topic, _key(subject), body.encode())

    async def flush_snapshots(self) -> int:
        """Publish the snapshot of every account changed since the last flush."""
        sent = 0
        for pe in list(self.engines.values()):
            dirty, pe.dirty = pe.dirty, {}
            for account in dirty:
                if account in pe.engine.accounts:
                    try:
                        snap = pe.engine.snapshot_event(account)
                    except Exception:
                        # A snapshot is a view: a defect in making one must not stop
                        # the worker (it would fail again on every restart, since a
                        # restored account is flushed at once). Decisions go on; the
                        # failure is logged with the account and counted.
                        log.exception("could not make the snapshot of %s; it is "
                                      "skipped until the account changes again", account)
                        self.metrics.snapshot_failed()
                        continue
                    await self._send(self.snapshots, account.encode(), orjson.dumps(snap))
                    sent += 1
                    if sent % 200 == 0:
                        await asyncio.sleep(0)  # let the agent go on between batches
        return sent


# The partition's clock and rates live in the accounts table under a key of their own,
# so that they and the accounts share one changelog partition: a crash then loses a
# suffix of one ordered log, and the clock can never be ahead of the accounts it moved.
PARTITION_KEY_PREFIX = b"\x00partition/"


def _partition_key(partition: int) -> bytes:
    return PARTITION_KEY_PREFIX + str(partition).encode()


def _key(subject: str | None) -> bytes | None:
    return subject.encode() if subject else None


__all__ = ["CreditStreams", "output_id"]
