"""`credit-monitor replay DATASET`: publish a history to Kafka as contract events.

DATASET is `ibm` or `online-retail` (converted on the fly by `monitor.datasets`, with
a daily `clock.tick`), or a JSON-lines file of contract events already in time order.
Events go to the input topic through `streams.publish.EventPublisher`, in the order
given: account events keyed by account, ticks and FX rates to every partition.

`--speed X` replays X seconds of event time per wall-clock second; without it events
go as fast as the broker takes them. `--wait` then waits until the worker has
processed every input record and the audit sink has stored every output in
PostgreSQL, which it reads from the two consumer groups' committed offsets.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from tqdm import tqdm

from monitor.datasets import ibm, online_retail
from monitor.datasets.common import DEFAULT_RISK_RULE, LimitRule, RiskRule, RuleError
from monitor.kafka_config import KafkaUnavailable, kafka_client_kwargs
from monitor.settings import Settings
from schemas import topics

DATASETS = ("ibm", "online-retail")
START_HINT = (
    "start it with `bash deploy/services.sh start` or point "
    "CREDIT_MONITOR_KAFKA_BOOTSTRAP at a running broker"
)

Event = dict[str, Any]


class ReplayError(Exception):
    """The replay cannot start: a bad argument, file or topic; the message says why."""


class MonitorBehind(Exception):
    """`--wait` gave up: the worker or the audit sink still had records to handle."""


# ---- what to replay ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class History:
    """Events to replay, in event-time order, and how many there are."""

    name: str
    events: Iterable[Event]
    total: int


def load_history(
    dataset: str,
    *,
    limit_rule: str | None = None,
    risk_rule: str | None = None,
    seed: int | None = None,
    customers: int | None = None,
) -> History:
    """The events of a data set in `data/`, or of a JSON-lines file.

    A data set is converted in full before the first event is published, so the
    progress bar knows its total and a conversion error publishes nothing. A file is
    read twice: once to check every line and count them, once while publishing.
    """
    if dataset not in DATASETS:
        used = [
            flag
            for flag, value in (
                ("--limit-rule", limit_rule),
                ("--risk-rule", risk_rule),
                ("--seed", seed),
                ("--customers", customers),
            )
            if value is not None
        ]
        if used:
            raise ReplayError(
                f"{', '.join(used)} only apply to the data sets {', '.join(DATASETS)}; "
                f"{dataset} is replayed as it is"
            )
        return _file_history(Path(dataset))

    try:
        risk = RiskRule.parse(risk_rule) if risk_rule else None
        if dataset == "ibm":
            if seed is not None:
                raise ReplayError("--seed only applies to online-retail")
            limit = (
                LimitRule.parse(limit_rule) if limit_rule else ibm.DEFAULT_LIMIT_RULE
            )
            events = ibm.events(
                limit_rule=limit,
                risk_rule=risk or DEFAULT_RISK_RULE,
                customers=customers,
            )
        else:
            limit = (
                LimitRule.parse(limit_rule)
                if limit_rule
                else online_retail.DEFAULT_LIMIT_RULE
            )
            events = online_retail.events(
                seed=seed or 0,
                limit_rule=limit,
                risk_rule=risk or DEFAULT_RISK_RULE,
                customers=customers,
            )
        converted = list(events)
    except RuleError as exc:
        raise ReplayError(str(exc)) from exc
    except FileNotFoundError as exc:
        hint = (
            "the data files belong in data/ at the top of the project (or set "
            "CREDIT_MONITOR_DATA_DIR)"
        )
        raise ReplayError(f"{exc.filename}: no such file; {hint}") from exc
    return History(dataset, converted, len(converted))


def _file_history(path: Path) -> History:
    if not path.is_file():
        raise ReplayError(
            f"{path}: no such file (DATASET is {' or '.join(DATASETS)}, or a "
            "JSON-lines file of contract events)"
        )
    total = 0
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise ReplayError(f"{path}:{number}: not JSON ({exc})") from None
            if not isinstance(event, dict):
                raise ReplayError(f"{path}:{number}: not a JSON object (an event)")
            total += 1
    return History(str(path), _read_events(path), total)


def _read_events(path: Path) -> Iterator[Event]:
    with path.open("rb") as f:
        for line in f:
            if line.strip():
                yield orjson.loads(line)


# ---- pacing -----------------------------------------------------------------------


def pacing_delay(
    first: dt.datetime | None,
    current: dt.datetime | None,
    elapsed_seconds: float,
    speed: float | None,
) -> float:
    """Seconds to wait before publishing an event of time `current`.

    The replay started `elapsed_seconds` ago with the event of time `first`; at
    `speed` seconds of event time per wall-clock second the event at `current` is due
    `(current - first) / speed` seconds after the start. Never negative: a replay
    that fell behind publishes at once and catches up. No speed, or an event
    without a time or earlier than the first, means no wait.
    """
    if speed is None or first is None or current is None or current <= first:
        return 0.0
    due = (current - first).total_seconds() / speed
    return max(0.0, due - elapsed_seconds)


def event_time(event: Event) -> dt.datetime | None:
    """The event's `time` as an aware datetime, or None if it has no usable one."""
    text = event.get("time")
    if not isinstance(text, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else None


# ---- publishing -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReplayResult:
    counts: dict[str, int]
    """Events published, per CloudEvents type."""
    records: int
    """Kafka records written: a tick or rate counts once per partition."""
    seconds: float
    first: dt.datetime | None
    last: dt.datetime | None


async def replay(
    settings: Settings,
    history: History,
    *,
    speed: float | None = None,
    progress: bool = False,
    clock: Callable[[], float] = time.monotonic,
) -> ReplayResult:
    """Publish the history to the input topic, creating the topics first if needed.

    Raises `KafkaUnavailable` when the broker cannot be reached and `ReplayError`
    when the topics do not fit the settings.
    """
    from streams.publish import BROADCAST_TYPES, EventPublisher
    from streams.topology import TopologyError, ensure_topics

    try:
        await ensure_topics(settings)
    except TopologyError as exc:
        raise ReplayError(str(exc)) from exc
    except (KafkaError, OSError) as exc:
        raise KafkaUnavailable(
            f"cannot reach Kafka at {settings.kafka_bootstrap} "
            f"(CREDIT_MONITOR_KAFKA_BOOTSTRAP): {exc}; {START_HINT}"
        ) from exc

    counts: Counter[str] = Counter()
    records = 0
    first: dt.datetime | None = None
    last: dt.datetime | None = None
    bar = tqdm(
        total=history.total,
        desc=f"replay {history.name}",
        unit=" events",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
    )
    day = ""
    started = clock()
    try:
        async with EventPublisher(settings) as publisher:
            for event in history.events:
                moment = event_time(event)
                if moment is not None:
                    first = first or moment
                    last = moment if last is None or moment > last else last
                wait = pacing_delay(first, moment, clock() - started, speed)
                if wait > 0:
                    await asyncio.sleep(wait)

                await publisher.publish(event)
                kind = str(event.get("type"))
                counts[kind] += 1
                records += settings.partitions if kind in BROADCAST_TYPES else 1

                bar.update(1)
                if moment is not None and moment.date().isoformat() != day:
                    day = moment.date().isoformat()
                    bar.set_postfix_str(f"event time {day}", refresh=False)
    except (KafkaError, OSError) as exc:
        raise KafkaUnavailable(
            f"lost Kafka at {settings.kafka_bootstrap} after {sum(counts.values())} "
            f"events: {exc}; {START_HINT}. Replaying again is harmless: events the "
            "monitor has seen change nothing"
        ) from exc
    finally:
        bar.close()
    return ReplayResult(dict(counts), records, clock() - started, first, last)


# ---- waiting for the monitor ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Backlog:
    """Records on the topics that a consumer group has not committed yet."""

    worker: int
    """Input records the worker (group `app_id`) has not processed."""
    audit: int
    """Output records the audit sink (group `app_id-audit`) has not stored."""
    ends: tuple[tuple[str, int, int], ...]
    """(topic, partition, end offset) of every partition looked at."""

    @property
    def empty(self) -> bool:
        return self.worker == 0 and self.audit == 0


async def backlog(settings: Settings) -> Backlog:
    """What the worker and its audit sink still have to do, from committed offsets."""
    worker_topics = [settings.topic(topics.INPUT), settings.topic(topics.BROADCAST)]
    audit_topics = [
        settings.topic(t) for t in (topics.DECISIONS, topics.SNAPSHOTS, topics.REJECTED)
    ]
    kwargs = kafka_client_kwargs(settings)
    admin = AIOKafkaAdminClient(**kwargs)
    consumer = AIOKafkaConsumer(group_id=None, enable_auto_commit=False, **kwargs)
    try:
        await admin.start()
        await consumer.start()
        described = await admin.describe_topics(worker_topics + audit_topics)
        partitions = [
            TopicPartition(d["topic"], p["partition"])
            for d in described
            if not d.get("error_code")
            for p in d["partitions"]
        ]
        ends = await consumer.end_offsets(partitions)
        worker_done = await admin.list_consumer_group_offsets(settings.app_id)
        audit_done = await admin.list_consumer_group_offsets(f"{settings.app_id}-audit")
    except (KafkaError, OSError) as exc:
        raise KafkaUnavailable(
            f"cannot read consumer offsets from Kafka at {settings.kafka_bootstrap}: "
            f"{exc}; {START_HINT}"
        ) from exc
    finally:
        await consumer.stop()
        await admin.close()

    def lag(names: list[str], committed: dict[TopicPartition, Any]) -> int:
        total = 0
        for tp, end in ends.items():
            if tp.topic in names:
                done = committed.get(tp)
                offset = done.offset if done is not None and done.offset >= 0 else 0
                total += max(0, end - offset)
        return total

    return Backlog(
        worker=lag(worker_topics, worker_done),
        audit=lag(audit_topics, audit_done),
        ends=tuple(sorted((tp.topic, tp.partition, end) for tp, end in ends.items())),
    )


async def wait_until_processed(
    settings: Settings,
    *,
    timeout_seconds: float = 600.0,
    poll_seconds: float = 1.0,
    report: Callable[[Backlog], None] | None = None,
) -> Backlog:
    """Return once the worker and the audit sink have nothing left to do.

    Done means: no backlog in either consumer group at two polls in a row with no
    new record on any topic in between. The second poll covers what the worker
    sends after it commits (snapshots go out on a timer, twice a second).
    Raises `MonitorBehind` after `timeout_seconds`.
    """
    deadline = time.monotonic() + timeout_seconds
    previous: Backlog | None = None
    while True:
        current = await backlog(settings)
        if report is not None:
            report(current)
        if current.empty and previous is not None and previous.ends == current.ends:
            return current
        previous = current if current.empty else None
        if time.monotonic() > deadline:
            raise MonitorBehind(
                f"after {timeout_seconds:.0f} s the worker still has {current.worker} "
                f"input records and the audit sink {current.audit} output records to "
                f"go; is `credit-monitor worker` running with CREDIT_MONITOR_APP_ID="
                f"{settings.app_id} and the same CREDIT_MONITOR_TOPIC_PREFIX? Its "
                "log says why it is slow or stuck"
            )
        await asyncio.sleep(poll_seconds)


# ---- the command ------------------------------------------------------------------


def span_days(result: ReplayResult) -> int:
    if result.first is None or result.last is None:
        return 0
    return (result.last - result.first).days


def print_result(result: ReplayResult, settings: Settings, out: IO[str]) -> None:
    """Counts by event type, then the totals and where they went."""
    width = max(9, len(f"{sum(result.counts.values()):,}"))
    for kind, count in sorted(result.counts.items()):
        print(f"{count:>{width},}  {kind}", file=out)
    total = sum(result.counts.values())
    span = ""
    if result.first is not None and result.last is not None:
        span = f", event time {result.first:%Y-%m-%d} to {result.last:%Y-%m-%d}"
    print(
        f"{total:>{width},}  events in {result.seconds:.1f} s -> "
        f"{settings.topic(topics.INPUT)} ({result.records:,} records over "
        f"{settings.partitions} partitions{span})",
        file=out,
    )


def run(args: Any, settings: Settings) -> int:
    """`credit-monitor replay`: load, publish, report, and optionally wait."""
    quiet: bool = args.quiet
    # Kafka trouble reaches the user as one message with the remedy; aiokafka's own
    # log lines about it would only repeat it in a rawer form.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    history = load_history(
        args.dataset,
        limit_rule=args.limit_rule,
        risk_rule=args.risk_rule,
        seed=args.seed,
        customers=args.customers,
    )
    progress = not quiet and sys.stderr.isatty()
    result = asyncio.run(replay(settings, history, speed=args.speed, progress=progress))
    print_result(result, settings, sys.stdout)

    span = span_days(result)
    if span > settings.retention_days:
        # The engine forgets event ids after retention_days of event time, so the
        # older events of a second replay into the same topics would count again.
        print(
            f"note: these events span {span} days, more than CREDIT_MONITOR_RETENTION_"
            f"DAYS={settings.retention_days}: replaying them again into the same topics "
            "would apply the older ones a second time. For repeatable replays run the "
            f"worker with CREDIT_MONITOR_RETENTION_DAYS>={span}, or replay into a new "
            "CREDIT_MONITOR_TOPIC_PREFIX and CREDIT_MONITOR_APP_ID",
            file=sys.stderr,
        )

    if args.wait:
        sys.stdout.flush()
        last_report = [0.0]

        def report(state: Backlog) -> None:
            now = time.monotonic()
            if quiet or state.empty or now - last_report[0] < 5:
                return
            last_report[0] = now
            print(
                f"waiting for the monitor: {state.worker:,} input records to process, "
                f"{state.audit:,} outputs to store",
                file=sys.stderr,
            )

        started = time.monotonic()
        asyncio.run(
            wait_until_processed(
                settings, timeout_seconds=args.wait_timeout, report=report
            )
        )
        print(
            f"the monitor has processed everything and the audit store is up to date "
            f"({time.monotonic() - started:.1f} s)",
            file=sys.stdout,
        )
    return 0
