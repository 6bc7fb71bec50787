"""Sets of UIDs kept as ranges: per-user \\Seen, from the backup stream
through the database to an IMAP session, is never expanded into one integer
per UID (a range of 3,000,000 UIDs is two numbers, not 230 MB)."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable

MAX_UID = 0xFFFFFFFE  # UIDs are 32-bit and UIDNEXT (the next one) must fit too


class UidRanges:
    """Disjoint, sorted, non-adjacent [first, last] ranges of UIDs."""

    __slots__ = ("_starts", "_ends")

    def __init__(self, ranges: Iterable[Iterable[int]] = ()):
        pairs = sorted((int(a), int(b)) for a, b in ranges)
        starts: list[int] = []
        ends: list[int] = []
        for a, b in pairs:
            if not 1 <= a <= b <= MAX_UID:
                raise ValueError(f"UID range {a}-{b} is not within 1-{MAX_UID}")
            if ends and a <= ends[-1] + 1:
                ends[-1] = max(ends[-1], b)
            else:
                starts.append(a)
                ends.append(b)
        self._starts, self._ends = starts, ends

    @classmethod
    def of(cls, uids: Iterable[int] | UidRanges) -> UidRanges:
        if isinstance(uids, UidRanges):
            return uids
        return cls((u, u) for u in uids)

    def __contains__(self, uid: object) -> bool:
        if not isinstance(uid, int):
            return False
        i = bisect_right(self._starts, uid) - 1
        return i >= 0 and uid <= self._ends[i]

    def __bool__(self) -> bool:
        return bool(self._starts)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UidRanges) and self.as_list() == other.as_list()

    def __repr__(self) -> str:
        return f"UidRanges({self.as_list()!r})"

    def count(self) -> int:
        return sum(b - a + 1 for a, b in zip(self._starts, self._ends, strict=True))

    def as_list(self) -> list[list[int]]:
        return [[a, b] for a, b in zip(self._starts, self._ends, strict=True)]

    def union(self, other: Iterable[int] | UidRanges) -> UidRanges:
        return UidRanges(self.as_list() + UidRanges.of(other).as_list())

    def minus(self, other: Iterable[int] | UidRanges) -> UidRanges:
        cut = UidRanges.of(other)
        out: list[list[int]] = []
        j = 0
        cs, ce = cut._starts, cut._ends
        for a, b in zip(self._starts, self._ends, strict=True):
            while j < len(cs) and ce[j] < a:
                j += 1
            k = j
            while a <= b:
                if k >= len(cs) or cs[k] > b:
                    out.append([a, b])
                    break
                if cs[k] > a:
                    out.append([a, cs[k] - 1])
                a = max(a, ce[k] + 1)
                k += 1
        return UidRanges(out)
