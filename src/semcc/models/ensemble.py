"""Test-time multi-output ensemble of the caption head, paper Sec. IV-C (after Eq. 7-8).

One greedy caption is generated per instruction prompt (the four of Sec. IV-C by default); the consensus is
the candidate with the highest mean :func:`caption_similarity` to the other candidates (ties: the earliest
prompt). :meth:`semcc.models.cc_head.ChangeCaptionHead.generate_ensemble` applies it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

__all__ = ["caption_similarity", "consensus_index"]


def _ngrams(tokens: list[str], n: int) -> Counter:
    """The multiset of the ``n``-grams of ``tokens``."""
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def caption_similarity(a: str, b: str) -> float:
    """Mean of the unigram and bigram F1 between two captions (lower-cased whitespace tokens).

    F1 of n-grams = ``2 * |common n-grams (multiset)| / (|n-grams of a| + |n-grams of b|)``; bigrams are
    left out when neither caption has one. Two empty captions are identical (1.0).
    """
    ta, tb = a.lower().split(), b.lower().split()
    scores = []
    for n in (1, 2):
        ga, gb = _ngrams(ta, n), _ngrams(tb, n)
        total = sum(ga.values()) + sum(gb.values())
        if total == 0:
            if n == 1:
                scores.append(1.0)
            continue
        scores.append(2.0 * sum((ga & gb).values()) / total)
    return sum(scores) / len(scores)


def consensus_index(candidates: Sequence[str]) -> int:
    """Index of the candidate with the highest mean :func:`caption_similarity` to the others (ties: first)."""
    if not candidates:
        raise ValueError("consensus of no candidates")
    if len(candidates) == 1:
        return 0
    best, best_score = 0, float("-inf")
    for i, ci in enumerate(candidates):
        score = sum(caption_similarity(ci, cj) for j, cj in enumerate(candidates) if j != i)
        score /= len(candidates) - 1
        if score > best_score + 1e-12:
            best, best_score = i, score
    return best
