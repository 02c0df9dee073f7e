"""Channel ranges and their sizes, shared by lowering, the concat planner and the memory model.

Every byte figure netdsl reports (parameters in the limit messages, feature maps, concat buffers)
is for float32 values: :data:`DTYPE_BYTES` is that size, in one place.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import TypeVar

DTYPE_BYTES = 4  # float32

K = TypeVar("K", bound=Hashable)
S = TypeVar("S", bound=int | None)  # a channel index, or None for a whole tensor


def merge_runs(pieces: Iterable[tuple[K, S, S]]) -> list[tuple[K, S, S]]:
    """``(source, start, stop)`` channel ranges in order, with each range that continues the one
    before it (same source, starting where it stopped) joined to it. A piece whose start is None
    stands for a whole tensor and is never joined.

    >>> merge_runs([("a", 0, 4), ("a", 4, 8), ("b", 0, 2), ("a", 8, 9), ("c", None, None), ("c", None, None)])
    [('a', 0, 8), ('b', 0, 2), ('a', 8, 9), ('c', None, None), ('c', None, None)]
    """
    runs: list[tuple[K, S, S]] = []
    for source, start, stop in pieces:
        if start is not None and runs and runs[-1][0] == source and runs[-1][2] == start:
            runs[-1] = (source, runs[-1][1], stop)
        else:
            runs.append((source, start, stop))
    return runs
