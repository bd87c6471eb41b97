"""The monitor against the ceiling of its own Kafka client, on the local real broker.

    .venv/bin/python bench/bench_stream.py [--min-events 1000000] [--rates 1000,5000]
        [--latency-seconds 60] [--seed 0]

Needs Kafka and PostgreSQL running (`bash deploy/services.sh start`). Every step uses
topics of its own (prefix `bench<id>.`) and deletes them afterwards. Steps:

1. Input: the UCI Online Retail conversion replayed in interleaved copies with shifted
   customer ids (as `bench_evaluate.py` builds it) up to `--min-events`; its accounts,
   amounts and event mix are the real data's. Published once to the input topic.
2. Ceiling: a bare aiokafka loop over the same records: consume, parse the JSON, produce
   one small output per record, commit. No credit logic.
3. Monitor throughput: one `credit-monitor worker` (replay mode) from the start of the
   same topic until it has processed every record (its /health counter), with its
   resident memory (VmRSS) at the end, holding every account of the input.
4. Recovery: that worker is killed (SIGKILL) and a new one started; the time until it
   is ready again and until it decides a new order.
5. Latency: for each offered load, a fresh worker and topics; orders published at that
   rate for `--latency-seconds`; for each the time from producing it to consuming its
   decision; p50 and p99.
6. The offline evaluator (in-process) on the same input.

Writes `BENCHMARKS.md` (keeping its hand-written `## Reading` section).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402

from monitor.settings import Settings  # noqa: E402
from schemas import topics  # noqa: E402
from tests.conftest_services import kafka_bootstrap_from_env, pg_dsn_from_env  # noqa: E402
from tests.streamkit import delete_topics, env_of, free_port  # noqa: E402

RESULTS = ROOT / "BENCHMARKS.md"
TARGETS = {
    "throughput_share_of_ceiling": 0.25,
    "throughput_events_per_s": 10_000,
    "p99_ms_at_2000": 100,
    "rss_mb_100k_accounts": 500,
    "recovery_s_100k_accounts": 60,
}


def settings_for(tag: str, partitions: int = 6) -> Settings:
    return Settings(  # type: ignore[call-arg]
        topic_prefix=f"bench{tag}.", app_id=f"bench-{tag}", partitions=partitions,
        mode="replay", web_port=free_port(), state_dir=ROOT / ".var" / f"bench-{tag}",
        kafka_bootstrap=kafka_bootstrap_from_env(), pg_dsn=pg_dsn_from_env(),
    )


class Worker:
    def __init__(self, settings: Settings, log: Path) -> None:
        self.settings = settings
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "worker"], cwd=ROOT, env=env_of(settings),
            stdout=open(log, "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115
            start_new_session=True)

    def get(self, path: str) -> dict[str, Any] | None:
        try:
            url = f"http://127.0.0.1:{self.settings.web_port}{path}"
            with urllib.request.urlopen(url, timeout=2) as r:
                return orjson.loads(r.read())  # type: ignore[no-any-return]
        except Exception:
            return None

    def wait_ready(self, timeout: float = 300) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited {self.proc.returncode}")
            ready = self.get("/ready")
            if ready and ready.get("ready"):
                return time.monotonic() - started
            time.sleep(0.2)
        raise RuntimeError("worker not ready")

    def processed(self) -> int:
        health = self.get("/health")
        return int(health["processed"]) if health else -1

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


async def create_topics(settings: Settings) -> None:
    from streams.topology import ensure_topics

    await ensure_topics(settings)


async def publish_file(settings: Settings, path: Path) -> tuple[int, float]:
    from streams.publish import EventPublisher

    started = time.perf_counter()
    n = 0
    async with EventPublisher(settings) as pub:
        with open(path, "rb") as src:
            for line in src:
                if line.strip():
                    await pub.publish(orjson.loads(line))
                    n += 1
    return n, time.perf_counter() - started


# ---- 2. the ceiling ---------------------------------------------------------------------


async def ceiling(settings: Settings, expected: int) -> dict[str, Any]:
    """Consume, parse, produce one small record each, commit: the client's own pace."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    source = settings.topic(topics.INPUT)
    out_topic = settings.topic("bench.ceiling")
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(out_topic, settings.partitions, 1)])
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(source, bootstrap_servers=settings.kafka_bootstrap,
                                group_id=f"{settings.app_id}-ceiling",
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                max_partition_fetch_bytes=4 << 20)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                linger_ms=5, max_batch_size=262144)
    await consumer.start()
    await producer.start()
    seen = 0
    started = None
    try:
        while seen < expected:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            if started is None and batch:
                started = time.perf_counter()
            for records in batch.values():
                for r in records:
                    doc = orjson.loads(r.value)
                    await producer.send(out_topic, orjson.dumps(
                        {"id": doc.get("id"), "type": doc.get("type")}), key=r.key)
                    seen += 1
            if batch:
                await producer.flush()
                await consumer.commit()
        seconds = time.perf_counter() - (started or time.perf_counter())
    finally:
        await consumer.stop()
        await producer.stop()
    return {"events": seen, "seconds": seconds, "events_per_s": seen / seconds}


# ---- 3 and 4. monitor throughput, memory, recovery --------------------------------------


def monitor_run(settings: Settings, expected: int, log: Path) -> dict[str, Any]:
    worker = Worker(settings, log)
    try:
        worker.wait_ready()
        started = time.perf_counter()
        last = 0
        stalled_since = time.monotonic()
        while True:
            done = worker.processed()
            if done >= expected:
                break
            if done != last:
                last, stalled_since = done, time.monotonic()
            elif time.monotonic() - stalled_since > 120:
                raise RuntimeError(f"worker stalled at {done} of {expected} records")
            time.sleep(0.5)
        seconds = time.perf_counter() - started
        time.sleep(2)  # let the snapshot flush settle before measuring memory
        rss = worker.rss_mb()
        result = {"events": expected, "seconds": seconds, "events_per_s": expected / seconds,
                  "rss_mb": rss}
        result.update(recovery(settings, worker, log))
        return result
    finally:
        worker.stop()


def recovery(settings: Settings, worker: Worker, log: Path) -> dict[str, Any]:
    worker.kill()
    killed = time.perf_counter()
    fresh = Worker(settings, log)
    try:
        fresh.wait_ready()
        ready_s = time.perf_counter() - killed
        decided_s = asyncio.run(_first_decision(settings, killed))
    finally:
        fresh.stop()
    return {"recovery_ready_s": ready_s, "recovery_decides_s": decided_s}


async def _first_decision(settings: Settings, since: float) -> float:
    from streams.publish import EventPublisher

    probe = f"probe-{uuid.uuid4().hex[:8]}"
    consumer = AIOKafkaConsumer(settings.topic(topics.DECISIONS),
                                bootstrap_servers=settings.kafka_bootstrap,
                                auto_offset_reset="latest", group_id=None)
    await consumer.start()
    try:
        await consumer.getmany(timeout_ms=500)  # take a position at the end
        async with EventPublisher(settings) as pub:
            await pub.publish(_order(probe, "bench-probe", dt.datetime(2030, 1, 1,
                                                                       tzinfo=dt.timezone.utc)))
        while True:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for r in records:
                    if probe.encode() in r.value:
                        return time.perf_counter() - since
    finally:
        await consumer.stop()


def _order(order_id: str, customer: str, when: dt.datetime) -> dict[str, Any]:
    return {"specversion": "1.0", "id": order_id, "source": "bench/latency",
            "type": "erp.order.placed", "time": when.isoformat().replace("+00:00", "Z"),
            "data": {"company": "main", "customer_id": customer, "order_id": order_id,
                     "amount": "10.00", "currency": "GBP"}}


# ---- 5. latency -------------------------------------------------------------------------


async def latency(settings: Settings, rate: int, seconds: float,
                  worker: Worker) -> dict[str, Any]:
    """Orders at `rate` per second; produce-to-decision time of each."""
    from streams.publish import EventPublisher

    sent: dict[str, float] = {}
    got: dict[str, float] = {}
    consumer = AIOKafkaConsumer(settings.topic(topics.DECISIONS),
                                bootstrap_servers=settings.kafka_bootstrap,
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()

    async def read() -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            now = time.perf_counter()
            for records in batch.values():
                for r in records:
                    cause = orjson.loads(r.value).get("causationid", "")
                    got.setdefault(cause.rpartition("/")[2], now)

    reader = asyncio.create_task(read())
    accounts = 1000
    start = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
    try:
        async with EventPublisher(settings) as pub:
            for c in range(accounts):  # profiles first, unmeasured
                await pub.publish({
                    "specversion": "1.0", "id": f"p{c}", "source": "bench/latency",
                    "type": "erp.credit_profile.set", "time": "2029-12-31T00:00:00Z",
                    "data": {"company": "main", "customer_id": f"L{c}", "currency": "GBP",
                             "credit_limit": "1000000", "risk_class": "B"}})
            await pub.producer.flush()
            # The profiles are set up before the clock starts: no backlog is measured.
            while await asyncio.to_thread(worker.processed) < accounts:
                await asyncio.sleep(0.5)
            total = int(rate * seconds)
            began = time.perf_counter()
            for n in range(total):
                due = began + n / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                oid = f"o{n}"
                sent[oid] = time.perf_counter()
                await pub.publish(_order(oid, f"L{n % accounts}",
                                         start + dt.timedelta(milliseconds=n)))
            offered = total / (time.perf_counter() - began)
        deadline = time.perf_counter() + 120
        while len([k for k in sent if k in got]) < len(sent) and time.perf_counter() < deadline:
            await asyncio.sleep(0.5)
    finally:
        reader.cancel()
        await consumer.stop()
    lat = sorted((got[k] - t) * 1000 for k, t in sent.items() if k in got)

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")

    return {"rate": rate, "offered_per_s": offered, "orders": len(sent),
            "decided": len(lat), "p50_ms": pct(0.50), "p99_ms": pct(0.99)}


# ---- 6. the evaluator -------------------------------------------------------------------


def evaluator(path: Path) -> dict[str, Any]:
    from monitor.domain.policy import Policy
    from monitor.evaluate import evaluate_lines

    with open(path, "rb") as src:
        started = time.perf_counter()
        n = sum(1 for _ in evaluate_lines(src, Policy.default_policy(), name=str(path)))
        seconds = time.perf_counter() - started
    events = sum(1 for line in open(path, "rb") if line.strip())
    return {"events": events, "outputs": n, "seconds": seconds,
            "events_per_s": events / seconds}


# ---- the report -------------------------------------------------------------------------


def write_report(r: dict[str, Any], command: str) -> None:
    ceiling_rate = r["ceiling"]["events_per_s"]
    m = r["monitor"]
    ev = r["evaluate"]
    kept = ""
    if RESULTS.exists():
        text = RESULTS.read_text()
        # The heading on a line of its own (the header mentions it in running text).
        if "\n## Reading\n" in text:
            kept = text[text.index("\n## Reading\n") + 1:]

    def ok(good: bool) -> str:
        return "met" if good else "**not met**"
    rows = [
        ("ceiling: bare aiokafka consume-parse-produce", f"{ceiling_rate:,.0f} events/s", "1.00", ""),
        ("monitor: one worker, sustained", f"{m['events_per_s']:,.0f} events/s",
         f"{m['events_per_s'] / ceiling_rate:.3f}",
         f"≥ 0.25 of ceiling and ≥ 10,000/s: "
         f"{ok(m['events_per_s'] >= 10_000 and m['events_per_s'] >= 0.25 * ceiling_rate)}"),
        ("offline evaluator, in-process", f"{ev['events_per_s']:,.0f} events/s",
         f"{ev['events_per_s'] / ceiling_rate:.3f}", ""),
    ]
    lines = [
        "# Benchmarks", "",
        f"Written by `{command}`; rerun it to refresh the figures (the `## Reading` "
        "section below is kept).", "",
        f"- machine: {os.cpu_count()} CPUs, {platform.platform()}; Python "
        f"{platform.python_version()}; Kafka {r['kafka_version']} (one local broker)",
        f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; load average at "
        f"the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"- code: `{r['git']}`; input: {r['events']:,} events over {r['accounts']:,} "
        f"accounts (UCI Online Retail, {r['copies']} interleaved copies), "
        f"{r['partitions']} partitions",
        "",
        "## Throughput, next to the ceiling measured in the same run", "",
        "| what | rate | ratio to ceiling | target |", "| --- | ---: | ---: | --- |",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows],
        "",
        "## Latency: event produced to decision consumed", "",
        "| offered load | achieved | orders | decided | p50 | p99 | target |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        *[f"| {x['rate']:,}/s | {x['offered_per_s']:,.0f}/s | {x['orders']:,} | "
          f"{x['decided']:,} | {x['p50_ms']:,.0f} ms | {x['p99_ms']:,.0f} ms | "
          + (f"p99 ≤ 100 ms at 2,000/s: {ok(x['p99_ms'] <= 100)}" if x["rate"] == 2000
             else "") + " |"
          for x in r["latency"]],
        "",
        "## Memory and recovery", "",
        "| what | figure | target |", "| --- | ---: | --- |",
        f"| resident memory of the worker holding {r['accounts']:,} accounts | "
        f"{m['rss_mb']:,.0f} MB | ≤ 500 MB for 100,000 accounts |",
        f"| recovery after SIGKILL: ready again | {m['recovery_ready_s']:,.1f} s | |",
        f"| recovery after SIGKILL: first new decision | {m['recovery_decides_s']:,.1f} s | "
        "≤ 60 s for 100,000 accounts |",
        "",
    ]
    RESULTS.write_text("\n".join(lines) + "\n" + (kept or "## Reading\n\n(to be written)\n"))


def _kafka_version() -> str:
    import re

    pom = (ROOT / "deploy" / "kafka" / "pom.xml").read_text()
    found = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom)
    return found.group(1) if found else "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-events", type=int, default=1_000_000)
    parser.add_argument("--rates", default="1000,2000,5000")
    parser.add_argument("--latency-seconds", type=float, default=60.0)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=0,
                        help="use only the first N events of the input (quick runs)")
    args = parser.parse_args(argv)
    from bench_evaluate import build_input

    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    built = build_input(args.min_events, args.seed)
    path = Path(built["path"])
    if args.limit:
        cut = out / "stream-input.jsonl"
        with open(path, "rb") as src, open(cut, "wb") as dst:
            for n, line in enumerate(src):
                if n >= args.limit:
                    break
                dst.write(line)
        path = cut
        built["events"] = min(built["events"], args.limit)
    accounts = len({orjson.loads(line)["data"].get("customer_id")
                    for line in open(path, "rb") if b"customer_id" in line})
    print(f"input: {built['events']:,} events, {accounts:,} accounts", flush=True)
    git = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT,
                         capture_output=True, text=True).stdout.strip()
    results: dict[str, Any] = {"events": built["events"], "accounts": accounts,
                               "copies": built["copies"], "partitions": args.partitions,
                               "git": git}
    tag = uuid.uuid4().hex[:8]
    settings = settings_for(tag, args.partitions)
    log = out / f"bench-stream-{tag}.log"
    try:
        asyncio.run(create_topics(settings))
        results["kafka_version"] = _kafka_version()
        n, secs = asyncio.run(publish_file(settings, path))
        print(f"published {n:,} in {secs:,.0f} s", flush=True)
        results["ceiling"] = asyncio.run(ceiling(settings, n))
        print(f"ceiling: {results['ceiling']}", flush=True)
        results["monitor"] = monitor_run(settings, n, log)
        print(f"monitor: {results['monitor']}", flush=True)
    finally:
        asyncio.run(delete_topics(settings))
    results["latency"] = []
    for rate in [int(x) for x in args.rates.split(",") if x]:
        lat_settings = settings_for(uuid.uuid4().hex[:8], args.partitions)
        worker = None
        try:
            asyncio.run(create_topics(lat_settings))
            worker = Worker(lat_settings, log)
            worker.wait_ready()
            results["latency"].append(asyncio.run(
                latency(lat_settings, rate, args.latency_seconds, worker)))
            print(f"latency: {results['latency'][-1]}", flush=True)
        finally:
            if worker is not None:
                worker.stop()
            asyncio.run(delete_topics(lat_settings))
    results["evaluate"] = evaluator(path)
    print(f"evaluate: {results['evaluate']}", flush=True)
    command = "python bench/bench_stream.py " + " ".join(argv or sys.argv[1:])
    write_report(results, command.strip())
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
