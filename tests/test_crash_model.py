"""Crashes of the streaming worker, modelled in process: the domain-level half of the
exactly-once argument, checked on every record rather than at five random moments.

The worker (`streams/app.py`) writes, after each record, the image of every account the
record changed and, after a clock tick or FX rate, the partition's clock and rates, all
to one ordered changelog. A crash loses any suffix of those writes that is not yet
committed, and the restarted worker restores what arrived and reads the input again from
the committed offset. That is only exact if the images hold everything the engine knows:
an account changed in memory but not written (a tick that moves an overdue account's
figures without deciding anything, for instance) would make the restarted worker decide
differently from the one that crashed, and the same output id would carry two contents.

This model replays that protocol with the real engine and no Kafka: the changelog is a
list of writes, a crash keeps a random prefix of it that covers at least the committed
records, and a new engine restored from that prefix reads the input again. Every output
id must then carry one content, and the set of ids must be the evaluator's.
"""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from monitor.domain.account import Account
from monitor.domain.engine import CreditEngine
from monitor.domain.policy import Policy
from monitor.domain.state import account_from_state, account_to_state

from . import streamgen

PARTITION_KEY = "\x00partition"


class ModelWorker:
    """One life of a worker over one partition: an engine restored from a changelog."""

    def __init__(self, policy: Policy, changelog: list[tuple[int, str, bytes]]) -> None:
        self.table: dict[str, bytes] = {}
        for _, key, value in changelog:
            self.table[key] = value
        self.engine = CreditEngine(policy, saved_state=self._saved)
        raw = self.table.get(PARTITION_KEY)
        if raw is not None:
            self.engine.restore_shared_state(orjson.loads(raw))
        accounts: list[Account] = [account_from_state(orjson.loads(v))
                                   for k, v in self.table.items() if k != PARTITION_KEY]
        self.engine.adopt(accounts)

    def _saved(self, key: str) -> dict[str, Any] | None:
        raw = self.table.get(key)
        return None if raw is None else orjson.loads(raw)  # type: ignore[no-any-return]

    def process(self, index: int, record: bytes,
                changelog: list[tuple[int, str, bytes]]) -> list[dict[str, Any]]:
        """Apply one record; append its writes to the changelog, as the worker does."""
        outcome = self.engine.process_outcome(record, {"offset": index}, index)
        if outcome.duplicate is not None:
            return []  # the worker re-sends the outbox: bytes sent before, not new ones
        for key in outcome.changed:
            value = orjson.dumps(account_to_state(self.engine.accounts[key]))
            self.table[key] = value
            changelog.append((index, key, value))
        if outcome.broadcast:
            value = orjson.dumps(self.engine.shared_state())
            self.table[PARTITION_KEY] = value
            changelog.append((index, PARTITION_KEY, value))
        return outcome.outputs


def comparable(doc: dict[str, Any]) -> Any:
    if doc["type"] == "credit.event.rejected":
        return doc["data"]["error"]
    return doc


def run_with_crashes(records: list[bytes], policy: Policy, crashes: int,
                     rnd: random.Random) -> tuple[dict[str, Any], list[str], ModelWorker]:
    """Every output id with its content, the ids that came with two contents, and the
    last life of the worker."""
    changelog: list[tuple[int, str, bytes]] = []
    worker = ModelWorker(policy, changelog)
    seen: dict[str, Any] = {}
    conflicts: list[str] = []
    crash_at = sorted(rnd.sample(range(1, len(records)), crashes))
    committed = 0
    position = 0
    for stop in crash_at + [len(records)]:
        while position < stop:
            for out in worker.process(position, records[position], changelog):
                got = comparable(out)
                if out["id"] in seen and seen[out["id"]] != got:
                    conflicts.append(out["id"])
                seen.setdefault(out["id"], got)
            position += 1
        if stop == len(records):
            break
        # The crash: the offsets committed lag behind, by up to a few hundred records;
        # the changelog keeps every write of the committed records and any prefix of
        # the writes after them.
        committed = rnd.randint(max(committed, stop - 300), stop)
        flushed = next((i for i, w in enumerate(changelog) if w[0] >= committed),
                       len(changelog))
        del changelog[rnd.randint(flushed, len(changelog)):]
        worker = ModelWorker(policy, changelog)
        position = committed
    return seen, conflicts, worker


@pytest.mark.parametrize("seed", [1, 2, 3, 6])
def test_a_worker_restored_from_its_changelog_decides_as_before(seed: int) -> None:
    events = streamgen.generate(6_000, 60, seed=seed)
    records = [orjson.dumps(e) for e in events]
    policy = Policy.default_policy()

    reference = CreditEngine(policy)
    want: dict[str, Any] = {}
    for i, record in enumerate(records):
        for out in reference.process(record, {"offset": i}, i):
            want[out["id"]] = comparable(out)

    got, conflicts, last = run_with_crashes(records, policy, crashes=25,
                                            rnd=random.Random(seed))

    assert conflicts == [], f"{len(conflicts)} output ids came with two contents"
    assert got.keys() == want.keys(), (len(want.keys() - got.keys()),
                                       len(got.keys() - want.keys()))
    assert got == want
    assert last.engine.snapshots() == reference.snapshots()


@pytest.mark.parametrize("seed", [4, 5])
def test_an_account_changes_only_with_a_write(seed: int) -> None:
    """After every record, every account the record did not report as changed has the
    image it had before: nothing an engine knows about an account lives only in memory."""
    events = streamgen.generate(4_000, 40, seed=seed)
    engine = CreditEngine(Policy.default_policy())
    images: dict[str, bytes] = {}
    silent: list[tuple[int, str, str]] = []
    for i, event in enumerate(events):
        outcome = engine.process_outcome(orjson.dumps(event), {"offset": i}, i)
        for key, account in engine.accounts.items():
            image = orjson.dumps(account_to_state(account))
            if key not in outcome.changed and key in images and images[key] != image:
                silent.append((i, event["type"], key))
            images[key] = image
    assert silent == []
