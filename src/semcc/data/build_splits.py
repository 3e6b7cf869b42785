"""Split assignment of :mod:`semcc.data.build`: which pairs of a user's data set go to train / val / test.

Beyond the paper (issue 14, "2. Their own data sets"): the split names, the ``--split-ratio`` parsing and the
seeded split of the pairs whose split the captions file does not give, stratified by changed / unchanged
(:func:`assign_splits`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from semcc.data.images import LevirDataError

__all__ = ["SPLITS", "assign_splits"]

SPLITS: tuple[str, ...] = ("train", "val", "test")


def _split_counts(n: int, ratio: Sequence[float]) -> list[int]:
    """``n`` items shared by ``ratio`` (largest remainders); each split with a share gets one when ``n`` allows."""
    total = sum(ratio)
    exact = [n * r / total for r in ratio]
    counts = [int(e) for e in exact]
    for i in sorted(range(len(ratio)), key=lambda i: (counts[i] - exact[i], i))[: n - sum(counts)]:
        counts[i] += 1
    wanted = [i for i, r in enumerate(ratio) if r > 0]
    if n >= len(wanted):
        for i in wanted:
            if counts[i] == 0:
                donor = max(range(len(counts)), key=lambda j: counts[j])
                counts[donor] -= 1
                counts[i] = 1
    return counts


def assign_splits(changed: dict[str, bool], ratio: Sequence[float] = (0.8, 0.1, 0.1),
                  seed: int = 0) -> dict[str, str]:
    """Split pairs ``{name: changed}`` into train / val / test by ``ratio``, stratified by changed / unchanged.

    Deterministic: each group is sorted and shuffled with ``random.Random(seed)``, the two groups are interleaved
    in proportion and the interleaved list is cut into consecutive runs, so each split holds about the same share
    of changed pairs. Each split with a positive share gets at least one pair when there are enough pairs.
    """
    if len(ratio) != len(SPLITS) or any(r < 0 for r in ratio) or sum(ratio) <= 0:
        raise ValueError(f"split ratio must be three non-negative numbers (train, val, test), not all 0: {ratio}")
    rng = random.Random(seed)
    groups = [sorted(n for n, c in changed.items() if c), sorted(n for n, c in changed.items() if not c)]
    for group in groups:
        rng.shuffle(group)
    order = [name for _, _, name in sorted(
        ((i + 0.5) / len(group), g, name) for g, group in enumerate(groups) for i, name in enumerate(group))]
    out: dict[str, str] = {}
    start = 0
    for split, count in zip(SPLITS, _split_counts(len(order), ratio), strict=True):
        out.update({name: split for name in order[start:start + count]})
        start += count
    return out


def _parse_ratio(ratio: Sequence[float] | str) -> tuple[float, float, float]:
    try:
        values = [float(v) for v in (ratio.split(",") if isinstance(ratio, str) else ratio)]
    except ValueError:
        values = []
    if len(values) != 3 or any(not v >= 0 for v in values) or sum(values) <= 0:
        raise LevirDataError(f"--split-ratio {ratio!r}: expected three non-negative numbers train,val,test "
                             "(e.g. 0.8,0.1,0.1), not all 0")
    return values[0], values[1], values[2]
