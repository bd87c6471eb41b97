"""Log lines (monitor/logs.py): JSON lines for log shippers, plain text for people, and
no secret in what the worker writes when it starts (monitor/worker.py).

The logging set-up writes to `sys.stderr` as it is when `configure` runs, which in a
test is pytest's capture (read with `capsys`); the root logger, its handlers and the
formatters' clock are put back after each test.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from monitor.logs import configure
from monitor.settings import PREFIX, load_settings

SECRET = "Pg-s3cr3t!pw"
SASL_SECRET = "sasl-S3CRET-pw"
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


class Stderr:
    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def getvalue(self) -> str:
        return self.capsys.readouterr().err


@pytest.fixture
def stderr(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
           ) -> Iterator[Stderr]:
    """What the test writes to stderr, with the logging set-up restored after and no
    CREDIT_MONITOR_* variable of the environment leaking in."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    converter = logging.Formatter.converter
    for name in list(os.environ):
        if name.startswith(PREFIX):
            monkeypatch.delenv(name)
    capsys.readouterr()
    try:
        yield Stderr(capsys)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        logging.Formatter.converter = converter


def _configure_from_env(monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    """Configure logging as the worker and the API do: from the settings."""
    monkeypatch.setenv("CREDIT_MONITOR_LOG_FORMAT", fmt)
    settings = load_settings()
    assert settings.log_format == fmt
    configure(settings.log_format, settings.log_level)


def _json_lines(text: str) -> list[dict[str, Any]]:
    assert text.endswith("\n")
    # Split at "\n" only: str.splitlines would also split at U+2028 and the like,
    # which JSON keeps inside strings.
    docs = [json.loads(line) for line in text.split("\n")[:-1]]
    assert all(isinstance(d, dict) for d in docs)
    return docs


def test_json_format_writes_one_object_per_line_with_level_logger_and_message(
    stderr: Stderr, monkeypatch: pytest.MonkeyPatch
) -> None:
    _configure_from_env(monkeypatch, "json")

    logging.getLogger("monitor.test.a").info("topics ready (created %s)", "none")
    logging.getLogger("monitor.test.b").warning("PostgreSQL %s is away", "db:5432")
    logging.getLogger("monitor.test.c").debug("not shown at INFO")

    text = stderr.getvalue()
    assert text.count("\n") == 2
    first, second = _json_lines(text)
    assert first["level"] == "INFO"
    assert first["logger"] == "monitor.test.a"
    assert first["message"] == "topics ready (created none)"
    assert second["level"] == "WARNING"
    assert second["logger"] == "monitor.test.b"
    assert second["message"] == "PostgreSQL db:5432 is away"
    for doc in (first, second):
        assert TIME.match(doc["time"]), doc["time"]
        assert "exception" not in doc


def test_json_format_keeps_a_traceback_inside_its_object(
    stderr: Stderr, monkeypatch: pytest.MonkeyPatch
) -> None:
    _configure_from_env(monkeypatch, "json")
    log = logging.getLogger("monitor.test.crash")

    try:
        {}["missing"]
    except KeyError:
        log.exception("snapshot of %s failed", "main/C1")
    log.info("after the crash")

    text = stderr.getvalue()
    assert text.count("\n") == 2  # the traceback's own lines do not become log lines
    crash, after = _json_lines(text)
    assert crash["level"] == "ERROR"
    assert crash["logger"] == "monitor.test.crash"
    assert crash["message"] == "snapshot of main/C1 failed"
    assert crash["exception"].startswith("Traceback (most recent call last):\n")
    assert "KeyError: 'missing'" in crash["exception"]
    assert "test_logs.py" in crash["exception"]
    assert after["message"] == "after the crash" and "exception" not in after


def test_json_format_keeps_non_ascii_text_and_newlines_in_one_line(
    stderr: Stderr, monkeypatch: pytest.MonkeyPatch
) -> None:
    _configure_from_env(monkeypatch, "json")
    message = "Zahlung für Kunde Ø-Åkesson € 1.234,50\nzweite Zeile: 東京 \u2028 ok"

    logging.getLogger("monitor.test.ünï").warning("%s", message)
    logging.getLogger("monitor.test").error("multi\r\nline %s", "arg\nwith newline")

    text = stderr.getvalue()
    assert text.count("\n") == 2
    lines = text.split("\n")[:-1]
    assert "\r" not in text
    assert "für" in lines[0] and "東京" in lines[0]  # written as is, not \u-escaped
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == message
    assert first["logger"] == "monitor.test.ünï"
    assert second["message"] == "multi\r\nline arg\nwith newline"


def test_json_times_are_utc_whatever_the_local_zone(
    stderr: Stderr, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_tz = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Tokyo"  # 9 hours from UTC, no summer time
    time.tzset()
    try:
        assert time.localtime(0).tm_hour == 9
        _configure_from_env(monkeypatch, "json")
        before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        logging.getLogger("monitor.test").info("tick")
        after = dt.datetime.now(dt.timezone.utc)
    finally:
        if old_tz is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old_tz
        time.tzset()
    (doc,) = _json_lines(stderr.getvalue())
    stamp = dt.datetime.strptime(doc["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=dt.timezone.utc)
    assert before <= stamp <= after


def test_text_format_is_not_json_and_shows_level_logger_and_message(
    stderr: Stderr, monkeypatch: pytest.MonkeyPatch
) -> None:
    _configure_from_env(monkeypatch, "text")

    logging.getLogger("monitor.test.text").warning("limit %s reached", "main/C1")

    text = stderr.getvalue()
    assert text.count("\n") == 1
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING monitor\.test\.text: "
                    r"limit main/C1 reached\n$", text), text


# ---- secrets at start-up --------------------------------------------------------------


class _FakeStreams:
    def __init__(self, settings: Any, policy: Any) -> None:
        self.app = object()


class _FakeFaustWorker:
    started: list[tuple[Any, dict[str, Any]]] = []

    def __init__(self, app: Any, **kwargs: Any) -> None:
        self.app, self.kwargs = app, kwargs

    def execute_from_commandline(self) -> None:
        _FakeFaustWorker.started.append((self.app, self.kwargs))


def _start_worker_without_services(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> int:
    """`run_worker` up to the point where faust would take over, with the broker and
    the stream processors replaced by stand-ins (no Kafka, no PostgreSQL)."""
    import faust

    import streams.app
    import streams.topology
    from monitor.worker import run_worker

    async def topics_created(settings: Any) -> list[str]:
        return [settings.topic("credit.events")]

    monkeypatch.setattr(streams.topology, "ensure_topics", topics_created)
    monkeypatch.setattr(streams.app, "CreditStreams", _FakeStreams)
    monkeypatch.setattr(faust, "Worker", _FakeFaustWorker)
    monkeypatch.setenv("CREDIT_MONITOR_STATE_DIR", str(tmp_path / "worker"))
    _FakeFaustWorker.started.clear()
    return run_worker()


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_worker_start_logs_the_dsn_with_its_password_masked_and_no_sasl_password(
    stderr: Stderr, monkeypatch: pytest.MonkeyPatch, tmp_path: Any, fmt: str
) -> None:
    monkeypatch.setenv("CREDIT_MONITOR_LOG_FORMAT", fmt)
    monkeypatch.setenv("CREDIT_MONITOR_PG_DSN",
                       f"postgresql://cm:{SECRET}@db.example:5432/cm?search_path=t1")
    monkeypatch.setenv("CREDIT_MONITOR_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("CREDIT_MONITOR_KAFKA_SASL_USERNAME", "monitor")
    monkeypatch.setenv("CREDIT_MONITOR_KAFKA_SASL_PASSWORD", SASL_SECRET)
    monkeypatch.setenv("CREDIT_MONITOR_TOPIC_PREFIX", "t1.")

    assert _start_worker_without_services(monkeypatch, tmp_path) == 0

    assert len(_FakeFaustWorker.started) == 1  # it got as far as handing over to faust
    text = stderr.getvalue()
    assert SECRET not in text and SASL_SECRET not in text
    masked = "postgresql://cm:***@db.example:5432/cm?search_path=t1"
    if fmt == "json":
        (doc,) = _json_lines(text)
        assert doc["level"] == "INFO" and doc["logger"] == "monitor.worker"
        assert doc["message"] == f"topics ready (created ['t1.credit.events']); " \
                                 f"PostgreSQL at {masked}"
    else:
        assert text.count("\n") == 1
        assert f"INFO monitor.worker: topics ready (created ['t1.credit.events']); " \
               f"PostgreSQL at {masked}\n" in text


def test_a_refused_dsn_is_reported_at_start_without_its_password(
    stderr: Stderr, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("CREDIT_MONITOR_PG_DSN", f"mysql://cm:{SECRET}@db.example/cm")
    monkeypatch.setenv("CREDIT_MONITOR_KAFKA_SASL_PASSWORD", SASL_SECRET)

    assert _start_worker_without_services(monkeypatch, tmp_path) == 2

    assert _FakeFaustWorker.started == []
    text = stderr.getvalue()
    assert "CREDIT_MONITOR_PG_DSN" in text
    assert SECRET not in text and SASL_SECRET not in text


def test_worker_start_does_not_log_a_password_given_as_dsn_query_parameter(
    stderr: Stderr, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("CREDIT_MONITOR_PG_DSN",
                       f"postgresql://cm@db.example:5432/cm?password={SECRET}")

    assert _start_worker_without_services(monkeypatch, tmp_path) == 0

    text = stderr.getvalue()
    assert "topics ready" in text
    assert SECRET not in text
