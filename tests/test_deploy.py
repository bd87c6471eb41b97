"""Deployment checks.

* Static: docker-compose.yml and the other container configs parse, and agree
  with the local scripts (deploy/kafka.sh, deploy/postgres.sh) and the pom
  (deploy/kafka/pom.xml). Both sides are read from the files.
* Integration (``-m integration``): real round trips against the broker and the
  PostgreSQL server that ``bash deploy/services.sh start`` runs: aiokafka
  (admin, producer, consumer group with commits), faust-streaming (a worker with
  an agent and a table), and asyncpg. A service that does not answer fails the
  test (see tests/conftest_services.py); nothing is skipped.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest_services import (
    DEFAULT_KAFKA_PORT,
    DEFAULT_PG_PORT,
    require_kafka,
    require_postgres,
)

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


# --------------------------------------------------------------------------
# Reading the local scripts and the pom
# --------------------------------------------------------------------------


def _shell_default(script: Path, env_var: str) -> str:
    """Default of a `X="${ENV_VAR:-default}"` assignment in a script."""
    m = re.search(r"\$\{" + re.escape(env_var) + r":-([^}]+)\}", script.read_text())
    assert m, f"{script.name} has no default for {env_var}"
    return m.group(1)


def _shell_constant(script: Path, name: str) -> str:
    """Value of a plain `NAME=value` line in a script."""
    m = re.search(rf"^{name}=([A-Za-z0-9_.-]+)$", script.read_text(), re.M)
    assert m, f"{script.name} has no constant {name}"
    return m.group(1)


def _kafka_script_properties() -> dict[str, str]:
    """The literal key=value lines of the server.properties kafka.sh writes."""
    text = (DEPLOY / "kafka.sh").read_text()
    m = re.search(r'cat >"\$CONF" <<EOF\n(.*?)\nEOF\n', text, re.S)
    assert m, "server.properties heredoc not found in deploy/kafka.sh"
    props = {}
    for line in m.group(1).splitlines():
        if line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        props[key] = value
    return props


def _pom_kafka_version() -> str:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    root = ET.parse(DEPLOY / "kafka" / "pom.xml").getroot()
    version = root.findtext("m:properties/m:kafka.version", namespaces=ns)
    assert version, "kafka.version property missing from deploy/kafka/pom.xml"
    deps = {
        (d.findtext("m:groupId", namespaces=ns), d.findtext("m:artifactId", namespaces=ns)): (
            d.findtext("m:version", namespaces=ns)
        )
        for d in root.iterfind("m:dependencies/m:dependency", ns)
    }
    assert deps.get(("org.apache.kafka", "kafka_2.13")) == "${kafka.version}"
    return version


def _compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def _host_port(service: dict[str, Any], container_port: int) -> int:
    """Host port that a compose service publishes for `container_port`."""
    for entry in service.get("ports", []):
        parts = str(entry).split(":")
        if int(parts[-1]) == container_port:
            return int(parts[-2])
    raise AssertionError(f"port {container_port} not published: {service.get('ports')}")


# --------------------------------------------------------------------------
# Static checks
# --------------------------------------------------------------------------


def test_compose_has_the_services() -> None:
    services = _compose()["services"]
    assert {"kafka", "postgres", "monitor", "prometheus", "grafana"} <= set(services)
    assert services["monitor"]["command"] == ["credit-monitor", "worker"]
    env = services["monitor"]["environment"]
    assert {"CREDIT_MONITOR_KAFKA_BOOTSTRAP", "CREDIT_MONITOR_PG_DSN"} <= set(env)
    assert (ROOT / "Dockerfile").is_file()
    api = services["api"]
    assert api["command"] == ["credit-monitor", "api", "serve"]
    assert api["environment"]["CREDIT_MONITOR_PG_DSN"] == env["CREDIT_MONITOR_PG_DSN"]
    assert _host_port(api, 8090) == 8090
    mounted = api["volumes"][0].split(":")[0]
    assert (ROOT / mounted).is_file(), "the token file the api service mounts"


def test_compose_kafka_matches_pom_and_local_script() -> None:
    kafka = _compose()["services"]["kafka"]
    image, _, tag = kafka["image"].partition(":")
    assert image == "apache/kafka"
    assert tag == _pom_kafka_version()

    script = DEPLOY / "kafka.sh"
    assert _host_port(kafka, 9092) == int(_shell_default(script, "CREDIT_MONITOR_KAFKA_PORT"))
    assert int(_shell_default(script, "CREDIT_MONITOR_KAFKA_PORT")) == DEFAULT_KAFKA_PORT

    # Settings that do not depend on host names or ports must be identical.
    props = _kafka_script_properties()
    env = {k: str(v) for k, v in kafka["environment"].items()}
    location_specific = {
        "listeners",
        "advertised.listeners",
        "controller.quorum.voters",
        "listener.security.protocol.map",
        "log.dirs",
    }
    compared = 0
    for key, value in props.items():
        if key in location_specific:
            continue
        env_key = "KAFKA_" + key.upper().replace(".", "_")
        assert env.get(env_key) == value, f"{env_key}: compose {env.get(env_key)!r}, kafka.sh {value!r}"
        compared += 1
    assert compared >= 8
    # The settings the brief asks for are among them.
    assert props["process.roles"] == "broker,controller"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "false"


def test_compose_postgres_matches_local_script() -> None:
    services = _compose()["services"]
    pg = services["postgres"]
    script = DEPLOY / "postgres.sh"
    db = _shell_constant(script, "PG_DB")
    user = _shell_constant(script, "PG_USER")
    password = _shell_constant(script, "PG_PASSWORD")
    port = int(_shell_default(script, "CREDIT_MONITOR_PG_PORT"))

    assert pg["image"] == "postgres:15"
    assert pg["environment"]["POSTGRES_DB"] == db
    assert pg["environment"]["POSTGRES_USER"] == user
    assert pg["environment"]["POSTGRES_PASSWORD"] == password
    assert _host_port(pg, 5432) == port
    assert port == DEFAULT_PG_PORT

    dsn = services["monitor"]["environment"]["CREDIT_MONITOR_PG_DSN"]
    assert dsn == f"postgresql://{user}:{password}@postgres:5432/{db}"


def test_prometheus_and_grafana_configs() -> None:
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = [j for j in prom["scrape_configs"] if j["job_name"] == "credit-monitor"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["monitor:8080"]
    assert _host_port(_compose()["services"]["monitor"], 8080) == 8080

    ds_file = DEPLOY / "grafana" / "provisioning" / "datasources" / "datasources.yml"
    sources = {d["type"]: d for d in yaml.safe_load(ds_file.read_text())["datasources"]}
    assert sources["prometheus"]["url"] == "http://prometheus:9090"
    pg = sources["postgres"]
    assert pg["url"] == "postgres:5432"
    assert pg["user"] == _shell_constant(DEPLOY / "postgres.sh", "PG_USER")
    assert pg["jsonData"]["database"] == _shell_constant(DEPLOY / "postgres.sh", "PG_DB")


# --------------------------------------------------------------------------
# Kafka round trip with aiokafka
# --------------------------------------------------------------------------


@pytest.mark.integration
async def test_kafka_roundtrip_aiokafka() -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    bootstrap = require_kafka()
    topic = f"test-deploy-roundtrip-{uuid.uuid4().hex[:10]}"
    group = f"{topic}-group"
    n_records, n_partitions = 100, 3

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name=topic, num_partitions=n_partitions, replication_factor=1)]
        )
        meta = await admin.describe_topics([topic])
        assert len(meta[0]["partitions"]) == n_partitions

        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            sends = [
                await producer.send(
                    topic, key=f"customer-{i % 10}".encode(), value=f"{i}".encode()
                )
                for i in range(n_records)
            ]
            written = [await fut for fut in sends]
        finally:
            await producer.stop()
        key_partition = {}
        for i, md in enumerate(written):
            key = f"customer-{i % 10}"
            # Keyed records: one key, one partition.
            assert key_partition.setdefault(key, md.partition) == md.partition
        assert len(set(key_partition.values())) > 1, "10 keys all hashed to one partition"

        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        received: list[tuple[bytes, bytes, int]] = []
        try:
            deadline = time.monotonic() + 60
            while len(received) < n_records and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=1000)
                for tp, records in batches.items():
                    received.extend((r.key, r.value, tp.partition) for r in records)
            await consumer.commit()
            committed = {
                p: await consumer.committed(TopicPartition(topic, p))
                for p in range(n_partitions)
            }
        finally:
            await consumer.stop()

        assert len(received) == n_records
        assert sorted(int(v) for _, v, _ in received) == list(range(n_records))
        for key, _, partition in received:
            assert key_partition[key.decode()] == partition
        per_partition = Counter(p for _, _, p in received)
        # The group's committed offsets cover every record.
        assert committed == {p: per_partition.get(p, 0) for p in range(n_partitions)}

        offsets = await admin.list_consumer_group_offsets(group)
        assert sum(o.offset for o in offsets.values()) == n_records
    finally:
        try:
            await admin.delete_topics([topic])
        finally:
            await admin.close()


# --------------------------------------------------------------------------
# Kafka round trip with faust-streaming (agent + table)
# --------------------------------------------------------------------------

FAUST_APP = textwrap.dedent(
    """
    import os

    import faust

    SUFFIX = os.environ["RT_SUFFIX"]

    app = faust.App(
        f"credit-monitor-deploy-test-{SUFFIX}",
        broker=f"kafka://{os.environ['RT_BOOTSTRAP']}",
        store="memory://",
        datadir=os.environ["RT_DATADIR"],
        web_enabled=False,
        topic_partitions=int(os.environ["RT_PARTITIONS"]),
        topic_replication_factor=1,
    )
    source = app.topic(f"rt-in-{SUFFIX}", key_type=str, value_type=int)
    sink = app.topic(f"rt-out-{SUFFIX}", key_type=str, value_type=int)
    # Running total per key, kept in a table (changelog topic created by faust).
    totals = app.Table(f"rt-totals-{SUFFIX}", default=int)


    @app.agent(source)
    async def add_up(stream):
        async for key, value in stream.items():
            totals[key] += value
            await sink.send(key=key, value=totals[key])
    """
)


@pytest.mark.integration
async def test_kafka_roundtrip_faust_worker(tmp_path: Path) -> None:
    """A real `faust worker` consumes a topic into a table and stops cleanly."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    bootstrap = require_kafka()
    suffix = uuid.uuid4().hex[:10]
    in_topic, out_topic = f"rt-in-{suffix}", f"rt-out-{suffix}"
    n_records, n_partitions, n_keys = 60, 3, 6

    (tmp_path / "rt_faust_app.py").write_text(FAUST_APP)
    env = dict(
        os.environ,
        RT_SUFFIX=suffix,
        RT_BOOTSTRAP=bootstrap,
        RT_DATADIR=str(tmp_path / "faust-data"),
        RT_PARTITIONS=str(n_partitions),
        PYTHONPATH=str(tmp_path),
    )

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    worker: subprocess.Popen[bytes] | None = None
    worker_log = tmp_path / "faust-worker.log"
    try:
        # Auto-creation is off on the broker (as in production): the source
        # and sink topics are created up front; faust creates its own internal
        # topics (table changelog, leader topic) through the admin API.
        await admin.create_topics(
            [
                NewTopic(name=in_topic, num_partitions=n_partitions, replication_factor=1),
                NewTopic(name=out_topic, num_partitions=1, replication_factor=1),
            ]
        )

        with worker_log.open("wb") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "faust", "-A", "rt_faust_app", "worker", "-l", "info"],
                cwd=tmp_path,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            for i in range(n_records):
                # faust's default codec for int/str values is JSON.
                await producer.send_and_wait(
                    in_topic, key=f'"k{i % n_keys}"'.encode(), value=b"1"
                )
        finally:
            await producer.stop()

        consumer = AIOKafkaConsumer(
            out_topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        outputs: list[tuple[str, int]] = []
        try:
            deadline = time.monotonic() + 120
            while len(outputs) < n_records and time.monotonic() < deadline:
                if worker.poll() is not None:
                    break
                batches = await consumer.getmany(timeout_ms=1000)
                for records in batches.values():
                    outputs.extend(
                        (r.key.decode().strip('"'), int(r.value)) for r in records
                    )
        finally:
            await consumer.stop()

        def log_tail() -> str:
            return "\n".join(worker_log.read_text(errors="replace").splitlines()[-60:])

        assert worker.poll() is None, f"faust worker exited early:\n{log_tail()}"
        assert len(outputs) == n_records, (
            f"faust processed {len(outputs)}/{n_records} records:\n{log_tail()}"
        )
        # The table's running totals reach each key's record count.
        final = {}
        for key, total in outputs:
            final[key] = max(final.get(key, 0), total)
        assert final == {f"k{k}": n_records // n_keys for k in range(n_keys)}

        # Clean stop: SIGTERM, as a supervisor would send.
        worker.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(worker.wait, 60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"faust worker did not stop within 60s of SIGTERM:\n{log_tail()}")
        assert code == 0, f"faust worker exit code {code}:\n{log_tail()}"
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait()
        try:
            topics = [t for t in await admin.list_topics() if suffix in t]
            if topics:
                await admin.delete_topics(topics)
        finally:
            await admin.close()


# --------------------------------------------------------------------------
# PostgreSQL round trip with asyncpg
# --------------------------------------------------------------------------


@pytest.mark.integration
async def test_postgres_roundtrip_asyncpg() -> None:
    import asyncpg

    dsn = require_postgres()
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        assert await conn.fetchval("SELECT current_database()") == "credit_monitor"
        await conn.execute(
            "CREATE TEMP TABLE deploy_check (id int PRIMARY KEY, customer text, amount numeric(18, 2))"
        )
        rows = [(i, f"customer-{i}", i * 10.5) for i in range(1, 6)]
        await conn.executemany("INSERT INTO deploy_check VALUES ($1, $2, $3)", rows)
        got = await conn.fetch("SELECT id, customer, amount FROM deploy_check ORDER BY id")
        assert [(r["id"], r["customer"], float(r["amount"])) for r in got] == rows
        assert await conn.fetchval("SELECT sum(amount) FROM deploy_check") == pytest.approx(157.5)
    finally:
        await conn.close()


# --------------------------------------------------------------------------
# The service scripts themselves
# --------------------------------------------------------------------------


def _path_without(tmp_path: Path, *missing: str) -> str:
    """A PATH with every command of this machine except `missing`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for folder in ("/usr/local/bin", "/usr/bin", "/bin"):
        for tool in Path(folder).iterdir() if Path(folder).is_dir() else ():
            target = bin_dir / tool.name
            if tool.name not in missing and not target.exists():
                target.symlink_to(tool)
    return str(bin_dir)


@pytest.mark.parametrize("tool", ["java", "mvn"])
def test_kafka_script_without_java_or_maven_says_what_to_install(tmp_path: Path,
                                                                 tool: str) -> None:
    # Another port, so that the broker the tests use is not taken for this one.
    env = {**os.environ, "PATH": _path_without(tmp_path, tool),
           "CREDIT_MONITOR_KAFKA_PORT": "19192"}
    env.pop("JAVA_HOME", None)
    result = subprocess.run(["bash", str(DEPLOY / "kafka.sh"), "start"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"{tool} not found on PATH" in result.stderr
    assert "apt-get install" in result.stderr


@pytest.mark.integration
def test_starting_the_running_services_again_changes_nothing() -> None:
    require_kafka()
    require_postgres()
    pid_file = ROOT / ".var" / "kafka" / "kafka.pid"
    before = pid_file.read_text().strip()

    result = subprocess.run(["bash", str(DEPLOY / "services.sh"), "start"],
                            capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    assert "already running" in result.stdout
    assert pid_file.read_text().strip() == before
    require_kafka()
    require_postgres()

