"""`credit-monitor replay` and `credit-monitor summary` against the real services.

A slice of each data set is replayed by the command itself into topics of its own,
through a running worker; what the worker decides must be what the offline
evaluator decides over the same events, and the summary must count the accounts
the evaluator ends with. The pacing and argument checks at the end need no services.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest
from pydantic import SecretStr

from monitor.datasets import ibm, online_retail
from monitor.domain.policy import Policy
from monitor.evaluate import evaluate_lines
from monitor.replay import ReplayError, load_history, pacing_delay
from monitor.settings import Settings

from .streamkit import (
    ROOT,
    Worker,
    collect,
    delete_topics,
    env_of,
    expected_split,
    free_port,
    make_settings,
    snapshot_view,
)

pytestmark = pytest.mark.integration

CUSTOMERS = 5
CONVERTERS = {"ibm": ibm.events, "online-retail": online_retail.events}


def cli(
    settings: Settings, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    env = env_of(settings)
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("dataset", ["ibm", "online-retail"])
def test_replayed_slice_decides_as_the_evaluator_and_a_second_replay_changes_nothing(
    dataset: str, tmp_path: Path, kafka_bootstrap: str, schema_dsn: str
) -> None:
    # The history spans about two years; ids must be remembered that long for the
    # second replay to be recognised (as run.sh does).
    settings = make_settings(tmp_path, partitions=3, retention_days=3650).model_copy(
        update={"pg_dsn": SecretStr(schema_dsn)}
    )
    events = list(CONVERTERS[dataset](customers=CUSTOMERS))
    outputs = list(
        evaluate_lines(
            (orjson.dumps(e) for e in events), Policy.default_policy(), snapshots=True
        )
    )
    exp_d, exp_r, exp_s = expected_split(outputs)
    worker = Worker(settings, tmp_path / "worker.log").start()
    try:
        worker.wait_ready()

        first = cli(
            settings,
            "replay",
            dataset,
            "--customers",
            str(CUSTOMERS),
            "--wait",
            "--wait-timeout",
            "240",
            "--quiet",
        )
        assert first.returncode == 0, first.stderr + worker.tail()
        published = Counter(e["type"] for e in events)
        for kind, count in published.items():
            assert f"{count:,}  {kind}" in first.stdout
        got = asyncio.run(
            collect(
                settings, want_decisions=len(exp_d), want_rejected=len(exp_r), idle=3
            )
        )

        summary = cli(settings, "summary", "--json")
        assert summary.returncode == 0, summary.stderr

        again = cli(
            settings,
            "replay",
            dataset,
            "--customers",
            str(CUSTOMERS),
            "--wait",
            "--wait-timeout",
            "240",
            "--quiet",
        )
        assert again.returncode == 0, again.stderr + worker.tail()
        got_again = asyncio.run(
            collect(
                settings, want_decisions=len(exp_d), want_rejected=len(exp_r), idle=3
            )
        )
        summary_again = cli(settings, "summary", "--json")
    finally:
        worker.stop()
        asyncio.run(delete_topics(settings))

    assert len(exp_s) == CUSTOMERS and exp_d
    assert not got.conflicting
    assert got.decisions == exp_d
    assert {i: r["data"]["error"] for i, r in got.rejected.items()} == {
        i: r["data"]["error"] for i, r in exp_r.items()
    }
    assert {a: snapshot_view(s) for a, s in got.snapshots.items()} == {
        a: snapshot_view(s) for a, s in exp_s.items()
    }

    shown = json.loads(summary.stdout)
    statuses = Counter(s["data"]["status"] for s in exp_s.values())
    assert shown["accounts"] == CUSTOMERS
    assert shown["accounts_by_status"] == dict(statuses)
    changes = sum(
        1 for d in exp_d.values() if d["type"] == "credit.account.status_changed"
    )
    assert (
        shown["history"]["outputs_by_type"].get("credit.account.status_changed", 0)
        == changes
    )
    assert len(shown["on_hold"]) == statuses.get("HOLD", 0)

    # The second replay: no new decision, no conflicting one, the same summary.
    assert not got_again.conflicting
    assert got_again.decisions.keys() == got.decisions.keys()
    assert summary_again.returncode == 0, summary_again.stderr
    assert json.loads(summary_again.stdout) == shown


def test_summary_text_lists_statuses_and_the_history(
    tmp_path: Path, kafka_bootstrap: str, schema_dsn: str
) -> None:
    settings = make_settings(tmp_path, partitions=2).model_copy(
        update={"pg_dsn": SecretStr(schema_dsn)}
    )
    worker = Worker(settings, tmp_path / "worker.log").start()
    try:
        worker.wait_ready()
        replayed = cli(
            settings,
            "replay",
            "ibm",
            "--customers",
            "3",
            "--limit-rule",
            "fixed:100",
            "--wait",
            "--quiet",
        )
        assert replayed.returncode == 0, replayed.stderr + worker.tail()
        summary = cli(settings, "summary", "--top", "2")
    finally:
        worker.stop()
        asyncio.run(delete_topics(settings))

    assert summary.returncode == 0, summary.stderr
    text = summary.stdout
    assert "Accounts by status (3 accounts)" in text
    assert "History in the audit log" in text
    assert "accounts ever on HOLD" in text
    assert ":***@" in text and "credit_monitor:credit_monitor@" not in text


def test_summary_without_the_tables_says_to_start_the_worker(
    tmp_path: Path, schema_dsn: str
) -> None:
    settings = make_settings(tmp_path).model_copy(
        update={"pg_dsn": SecretStr(schema_dsn)}
    )
    result = cli(settings, "summary")
    assert result.returncode == 2
    assert "credit-monitor worker" in result.stderr
    assert ":***@" in result.stderr


# ---- no services needed -----------------------------------------------------------


def test_replay_without_kafka_exits_2_and_says_how_to_start_it(tmp_path: Path) -> None:
    settings = make_settings(tmp_path).model_copy(
        update={"kafka_bootstrap": f"127.0.0.1:{free_port()}"}
    )
    result = cli(settings, "replay", "ibm", "--customers", "1", timeout=60)
    assert result.returncode == 2
    assert "CREDIT_MONITOR_KAFKA_BOOTSTRAP" in result.stderr
    assert "bash deploy/services.sh start" in result.stderr
    assert "Traceback" not in result.stderr


T0 = dt.datetime(2013, 1, 1, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("current", "elapsed", "speed", "wait"),
    [
        (T0 + dt.timedelta(days=1), 0.0, 86400.0, 1.0),  # a day a second
        (T0 + dt.timedelta(days=3), 1.25, 86400.0, 1.75),  # part of it already gone
        (T0 + dt.timedelta(hours=1), 0.0, 60.0, 60.0),  # an hour a minute
        (T0 + dt.timedelta(days=1), 5.0, 86400.0, 0.0),  # behind: no wait, catch up
        (T0 + dt.timedelta(days=9), 0.0, None, 0.0),  # no speed: as fast as possible
        (T0, 0.0, 86400.0, 0.0),  # the first event goes at once
        (T0 - dt.timedelta(days=1), 0.0, 86400.0, 0.0),  # earlier than the first
        (None, 0.0, 86400.0, 0.0),  # no usable time
    ],
)
def test_pacing_waits_until_the_event_time_is_due(
    current: dt.datetime | None, elapsed: float, speed: float | None, wait: float
) -> None:
    assert pacing_delay(T0, current, elapsed, speed) == pytest.approx(wait)


def test_pacing_a_day_of_ticks_at_one_day_a_second_takes_a_second_each() -> None:
    ticks = [T0 + dt.timedelta(days=n) for n in range(5)]
    elapsed, waits = 0.0, []
    for moment in ticks:
        wait = pacing_delay(ticks[0], moment, elapsed, 86400.0)
        waits.append(wait)
        elapsed += wait + 0.1  # publishing itself takes time too
    assert waits == pytest.approx([0.0, 0.9, 0.9, 0.9, 0.9])


def test_replay_arguments_that_do_not_fit_the_dataset_are_refused(
    tmp_path: Path,
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b'{"type": "clock.tick"}\n[1, 2]\n')
    with pytest.raises(ReplayError, match="only apply"):
        load_history(str(events), customers=3)
    with pytest.raises(ReplayError, match=r"events.jsonl:2: not a JSON object"):
        load_history(str(events))
    with pytest.raises(ReplayError, match="--seed only applies to online-retail"):
        load_history("ibm", seed=1)
    with pytest.raises(ReplayError, match="limit rule"):
        load_history("ibm", limit_rule="generous")
    with pytest.raises(ReplayError, match="no such file"):
        load_history(str(tmp_path / "missing.jsonl"))


def test_a_file_is_replayed_as_it_is(tmp_path: Path) -> None:
    lines = [
        {"type": "clock.tick", "id": f"t{n}", "time": "2013-01-0{n}T00:05:00Z"}
        for n in range(1, 4)
    ]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n\n" for e in lines))
    history = load_history(str(path))
    assert history.total == 3
    assert list(history.events) == lines
