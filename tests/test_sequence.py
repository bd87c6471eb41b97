"""The rules that keep a worker from applying a partition's records out of order
(`streams.sequence`); pure bookkeeping, no Kafka. The live takeover and crash tests in
`test_resilience.py` exercise them against the broker."""

from __future__ import annotations

from streams.sequence import RESEEK_SECONDS, InputSequence, Verdict


def test_records_are_applied_one_after_another_from_the_start() -> None:
    seq = InputSequence()
    assert not seq.knows(0)
    seq.start(0, 40)
    assert seq.committed == {0: 40}
    for offset in (40, 41, 42):
        assert seq.check(0, offset) is Verdict.APPLY
        seq.applied(0, offset)
    # What may be committed is the next offset expected; nothing beyond it.
    assert seq.expected == {0: 43}


def test_a_record_delivered_again_is_not_applied_again() -> None:
    seq = InputSequence()
    seq.start(1, 10)
    seq.applied(1, 10)
    assert seq.check(1, 10) is Verdict.SEEN
    assert seq.check(1, 3) is Verdict.SEEN
    assert seq.check(1, 11) is Verdict.APPLY


def test_a_skipped_record_is_a_gap_and_asks_for_one_seek() -> None:
    seq = InputSequence()
    seq.start(2, 0)
    # The takeover failure: the first record to arrive was 757, not 0.
    assert seq.check(2, 757) is Verdict.GAP
    assert seq.should_seek(2, now=100.0)
    # The records fetched before the seek keep coming; they do not seek again.
    assert seq.check(2, 758) is Verdict.GAP
    assert not seq.should_seek(2, now=100.1)
    assert seq.gaps == 1
    # The record expected arrives: applied, and the gap is closed.
    assert seq.check(2, 0) is Verdict.APPLY
    seq.applied(2, 0)
    assert seq.rewinds == {}


def test_a_seek_that_did_not_take_is_made_again() -> None:
    seq = InputSequence()
    seq.start(0, 5)
    assert seq.should_seek(0, now=0.0)
    assert not seq.should_seek(0, now=RESEEK_SECONDS - 0.1)
    assert seq.should_seek(0, now=RESEEK_SECONDS + 0.1)
    assert seq.gaps == 1  # one gap, sought twice


def test_a_new_gap_after_the_first_is_repaired_counts_again() -> None:
    seq = InputSequence()
    seq.start(0, 0)
    assert seq.should_seek(0, now=0.0)
    seq.applied(0, 0)
    assert seq.check(0, 9) is Verdict.GAP
    assert seq.should_seek(0, now=0.5)
    assert seq.gaps == 2


def test_a_rebalance_forgets_every_partition() -> None:
    seq = InputSequence()
    seq.start(0, 7)
    seq.should_seek(0, now=0.0)
    seq.reset()
    assert not seq.knows(0) and seq.rewinds == {} and seq.committed == {}


def test_records_at_the_end_of_the_log_not_applied_are_noticed() -> None:
    seq = InputSequence()
    assert not seq.behind(0, end=10)  # nothing known yet
    seq.start(0, 8)
    assert seq.behind(0, end=10)
    seq.applied(0, 8)
    seq.applied(0, 9)
    assert not seq.behind(0, end=10)
