"""The order in which a worker may apply the records of its input partitions.

faust-streaming and aiokafka can hand the agent a partition's records from somewhere
other than where its committed offset says to start: a worker that was given a
partition with no committed offset while the group formed began hundreds of records
in (the takeover test caught 757 records skipped on one partition), and records fetched
around a rebalance can be dropped with the fetch position already past them. faust then
commits past what it never delivered, so those events are lost for good.

The worker therefore applies a record only when its offset is the next one expected for
its partition, and commits offsets itself, never beyond what it applied:

- after every (re)assignment a partition starts at its committed offset, or at the
  start of the log when nothing is committed;
- the record expected is applied, and the next one becomes expected;
- a record below the expected offset was applied already (delivered twice): skipped;
- a record beyond it means records were skipped: the input is sought back to the
  records expected (and those are committed, so that faust's own seeks to the
  committed offsets agree), and everything until the expected record arrives is
  skipped;
- the offset committed for a partition is the one expected next, so everything before
  it was applied (and its outputs flushed, see `CreditStreams.commit_applied`).

This class holds only the bookkeeping, so that the rules are tested without Kafka.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Verdict(enum.Enum):
    APPLY = "apply"
    SEEN = "seen"
    GAP = "gap"


# How long a partition sought back waits for the record it expects before the seek is
# made again (a seek can be lost to a rebalance or to the fetcher's own bookkeeping).
RESEEK_SECONDS = 5.0


@dataclass
class InputSequence:
    """Next offset expected per input partition, the offset committed, and the gaps
    being repaired."""

    expected: dict[int, int] = field(default_factory=dict)
    committed: dict[int, int] = field(default_factory=dict)
    # partition -> (offset sought back to, monotonic time of the seek)
    rewinds: dict[int, tuple[int, float]] = field(default_factory=dict)
    gaps: int = 0

    def reset(self) -> None:
        """Forget every partition: called on each rebalance, since a partition may come
        back from another worker that went further."""
        self.expected.clear()
        self.committed.clear()
        self.rewinds.clear()

    def knows(self, partition: int) -> bool:
        return partition in self.expected

    def start(self, partition: int, offset: int) -> None:
        """The first offset to apply after an assignment: the one committed."""
        self.expected[partition] = offset
        self.committed[partition] = offset

    def check(self, partition: int, offset: int) -> Verdict:
        want = self.expected[partition]
        if offset == want:
            return Verdict.APPLY
        return Verdict.SEEN if offset < want else Verdict.GAP

    def applied(self, partition: int, offset: int) -> None:
        self.expected[partition] = offset + 1
        self.rewinds.pop(partition, None)

    def skip_to(self, partition: int, offset: int) -> None:
        """Expect `offset` next: the records before it are gone from the log."""
        self.expected[partition] = offset
        self.rewinds.pop(partition, None)

    def should_seek(self, partition: int, now: float) -> bool:
        """Whether a gap on the partition calls for a seek now: the first time the
        expected offset is missed, and again if it has not come after a while."""
        want = self.expected[partition]
        last = self.rewinds.get(partition)
        if last is not None and last[0] == want and now - last[1] < RESEEK_SECONDS:
            return False
        if last is None or last[0] != want:
            self.gaps += 1
        self.rewinds[partition] = (want, now)
        return True

    def behind(self, partition: int, end: int) -> bool:
        """Whether the log holds records the partition has not applied (`end` is the
        broker's end offset): the check for records lost at the tail, which no later
        record would reveal."""
        want = self.expected.get(partition)
        return want is not None and end > want


__all__ = ["InputSequence", "RESEEK_SECONDS", "Verdict"]
