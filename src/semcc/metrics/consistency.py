"""Caption-mask consistency: does the caption (paper Eq. 7) say what the change mask (Eq. 6) shows?

Beyond the paper (issue 13, "2. Caption-mask consistency at inference"): Semantic-CC computes both outputs from
one encoder, but nothing checks one against the other. :func:`check_consistency` parses the caption into a claim
(:func:`semcc.metrics.semantic.parse_caption`), summarises the mask (:func:`semcc.metrics.truth.summarize_mask`:
components per class, share of the pixels, place) and lists the disagreements, in words, each of one kind:

* ``change``: the caption says no change while the mask marks at least
  :data:`~semcc.metrics.truth.MASK_CHANGE_SHARE` of the pixels, or describes a change the mask does not show; an
  unreadable caption is one too;
* ``class``: a class the mask marks apart (a building-change mask: building; a LEVIR-MCI class mask: building
  and road) that the caption names while the mask does not mark it, or that the mask marks with object-sized
  components the caption leaves out;
* ``count``: the caption's number (or vague word) for a class against the mask's components of it (a mask of
  any change: of all change, compared when the caption names a single countable class);
* ``place``: the caption's place for a class against the place of the mask's pixels of it.

A building-change mask summarised with ``road_shapes`` (0.17) counts its road-shaped components apart
(:func:`semcc.metrics.truth.road_shaped`): they are neither buildings a caption must mention nor a count it must
match, so the model's caption of a new road is not outranked by "a house is built" where the mask marks the road.

A mask tells only about the classes it marks (:attr:`MaskSummary.classes <semcc.metrics.truth.MaskSummary>`):
a caption that names only other changes (trees removed, over a building-change mask) can be neither confirmed
nor contradicted by it, so it gets no ``change`` disagreement where the mask is empty; where the mask marks
building components, leaving them out is a ``class`` disagreement. Likewise an empty mask of some classes does not
confirm a caption of no change (since 0.15.0): it says that no building changed, not that no road or tree did, so
over it the model's own caption about a road or trees and the no-change sentence tie, and the candidates' order (the
greedy caption first) or the samples decide.

:func:`consistency_rank` orders candidate captions by their disagreements with one mask, the kinds weighed in
that order (a caption wrong about change loses to one wrong about the class, which loses to one wrong about the
count or the place): consistency-aware decoding (``Predictor(decoding="consistent")``) takes the first. With captions
sampled from the model (``samples``), :func:`choose_consistent` breaks ties among the captions the mask confirms
equally well by minimum Bayes risk (:func:`expected_similarity` to the samples): greedy and beam search return the
model's most probable sentence, which can be one generic caption for many pairs while the samples name what changed.
:func:`mask_prefixes` (0.16) lets the mask write the opening of more candidates, its count and class ("two houses"),
which the model continues (``SemanticCC.prefixed_captions``): the change detection of Eq. 6 guides the caption of
Eq. 7. With ``first_clauses`` (:func:`with_first_clauses`) each candidate's words before its first "and" join the
candidates just before it, so that a caption of two events, whose second the mask cannot tell from the first, does
not outrank its own first clause.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from semcc.data.levir import MCI_CLASSES
from semcc.metrics.claim_scores import _class_counts, _class_places, _counts_agree, _places_agree
from semcc.metrics.semantic import CaptionClaim, parse_caption
from semcc.metrics.truth import MaskSummary, RegionSummary

__all__ = [
    "KINDS",
    "ConsistencyReport",
    "binary_mask_name",
    "check_consistency",
    "choose_consistent",
    "claim_to_dict",
    "consistency_rank",
    "expected_similarity",
    "first_clause",
    "mask_class_names",
    "mask_prefixes",
    "with_first_clauses",
]

#: Claim classes whose changed pixels a change mask marks (what a caption's count and place can be checked on).
MASKED_CLASSES = frozenset({"building", "road"})
#: Disagreement kinds, most serious first (the order :func:`consistency_rank` weighs them in).
KINDS = ("change", "class", "count", "place")
#: The name of a binary mask that marks any change (building and road together).
ANY_CHANGE = "change"
#: The nouns of :func:`mask_prefixes` per masked class, (singular, plural), most frequent in LEVIR-CC first.
PREFIX_NOUNS: dict[str, tuple[tuple[str, str], ...]] = {
    "building": (("house", "houses"), ("building", "buildings")),
    "road": (("new road", "roads"),),
}
_PLURAL = {"building": "buildings", "road": "roads", "vegetation": "vegetation", "bareland": "bare land",
           "water": "water", "parking": "parking", "other": "other objects"}
#: The class's noun for a count of exactly one ("the caption says 1 building").
_SINGULAR = {"building": "building", "road": "road", "vegetation": "vegetation", "bareland": "bare land",
             "water": "water", "parking": "parking", "other": "other object"}


@dataclass(frozen=True)
class ConsistencyReport:
    """A caption's claim, the mask's summary and their disagreements (empty: consistent)."""

    caption: str
    claim: CaptionClaim
    mask: MaskSummary
    disagreements: tuple[str, ...]
    #: How many things were compared (change, and each class, count and place checked); ``checks -
    #: len(disagreements)`` agree.
    checks: int = 0
    #: The kind of each disagreement (one of :data:`KINDS`), in the same order.
    kinds: tuple[str, ...] = ()
    #: Whether the mask could check the caption's change or no change (false where the caption names only changes
    #: the mask does not mark and the mask is empty).
    change_checked: bool = True

    @property
    def change_confirmed(self) -> bool:
        """The mask confirms the caption's change or no change (checked, and no ``change`` disagreement)."""
        return self.change_checked and "change" not in self.kinds

    @property
    def consistent(self) -> bool:
        """No disagreement."""
        return not self.disagreements

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``claim``, ``mask``, ``disagreements``, ``disagreement_kinds``, ``consistent``, ``checks``."""
        return {"claim": claim_to_dict(self.claim), "mask": self.mask.to_dict(),
                "disagreements": list(self.disagreements), "disagreement_kinds": list(self.kinds),
                "consistent": self.consistent, "checks": self.checks}

    def severity(self) -> tuple[int, int, int]:
        """Disagreements per kind, ``change``, ``class``, then ``count`` and ``place`` together: what
        :func:`consistency_rank` sorts by (fewer first) before the agreements."""
        n = {k: self.kinds.count(k) for k in KINDS}
        return n["change"], n["class"], n["count"] + n["place"]


def claim_to_dict(claim: CaptionClaim) -> dict[str, Any]:
    """A claim as JSON: ``changed`` and per object its class, direction, count or count word, places."""
    objects = []
    for o in claim.objects:
        item: dict[str, Any] = {"class": o.cls, "direction": o.direction}
        if o.count is not None:
            item["count"] = o.count
        if o.count_word is not None:
            item["count_word"] = o.count_word
        item["places"] = list(o.places)
        objects.append(item)
    out: dict[str, Any] = {"changed": claim.changed, "objects": objects}
    if claim.unparsed:
        out["unparsed"] = list(claim.unparsed)
    return out


def _span_text(span: tuple[int, int | None]) -> str:
    lo, hi = span
    return str(lo) if hi == lo else (f"{lo} or more" if hi is None else f"{lo} to {hi}")


def _place_text(place: str) -> str:
    return {"centre": "the centre", "everywhere": "everywhere"}.get(place, "the " + place.replace("_", " "))


def check_consistency(caption: str, mask: MaskSummary) -> ConsistencyReport:
    """The disagreements between ``caption`` and a predicted mask's summary (see the module doc).

    The mask's classes (``mask.classes``) are claim classes it marks apart (``building``; ``building`` and
    ``road`` for a LEVIR-MCI class mask) or ``change`` (a binary mask of any change: counts and places compare
    with all of its change).
    """
    claim = parse_caption(caption)
    notes: list[tuple[str, str]] = []
    checks = [1]
    covered = _covered(mask)
    visible = MASKED_CLASSES if covered is None else covered
    share = f"{mask.changed_share:.1%}" if mask.changed_share >= 0.001 else f"{mask.changed_share:.2%}"
    if claim.changed is None:
        notes.append(("change", "the caption says neither change nor no change that the parser can read"))
    elif not claim.changed and mask.changed:
        notes.append(("change", f"the caption says no change; the mask marks {share} of the pixels"))
    elif not claim.changed and covered is not None:
        checks[0] = 0  # an empty mask of some classes (buildings): no change of those, nothing about the rest
    elif claim.changed and not mask.changed:
        if not claim.classes or claim.classes & visible:
            named = ", ".join(_PLURAL[c] for c in sorted(claim.classes)) or "something"
            notes.append(("change", f"the caption says {named} changed; the mask marks {share} of the pixels "
                                    "(no change)"))
        else:
            checks[0] = 0  # only changes the mask does not mark: it can neither confirm nor contradict them
    if claim.changed and mask.changed:
        notes += _object_notes(claim, mask, covered, checks)
    return ConsistencyReport(caption=caption, claim=claim, mask=mask, disagreements=tuple(t for _, t in notes),
                             checks=sum(checks), kinds=tuple(k for k, _ in notes), change_checked=bool(checks[0]))


def _covered(mask: MaskSummary) -> frozenset[str] | None:
    """The claim classes ``mask`` marks apart, or ``None`` for a binary mask of any change (building and road
    together). A summary without ``classes`` is read from its regions (an empty one as any change)."""
    names = set(mask.classes) or {r.cls for r in mask.regions} or {ANY_CHANGE}
    if ANY_CHANGE in names:
        return None
    return frozenset(names) & MASKED_CLASSES


def _object_notes(claim: CaptionClaim, mask: MaskSummary, covered: frozenset[str] | None, checks: list[int],
                  ) -> list[tuple[str, str]]:
    regions = {r.cls: r for r in mask.regions}
    counts, places = _class_counts(claim), _class_places(claim)
    notes: list[tuple[str, str]] = []
    if covered is None:
        change = regions.get(ANY_CHANGE)
        countable = sorted(claim.classes & MASKED_CLASSES)
        if change is not None and len(countable) == 1:
            notes += _compare(countable[0], ANY_CHANGE, change, counts, places, checks)
        return notes
    for cls in sorted(claim.classes & covered):
        checks.append(1)
        region = regions.get(cls)
        if region is None or region.components == 0:
            roads = f" (its {region.road_shaped} component(s) shaped like a road are not counted)" if (
                region is not None and region.road_shaped) else ""
            notes.append(("class", f"the caption names a change of {_PLURAL[cls]}; the mask marks no {cls} "
                                   f"change{roads}"))
        else:
            notes += _compare(cls, cls, region, counts, places, checks)
    for cls in sorted(covered - claim.classes):
        region = regions.get(cls)
        if region is not None and region.components > 0:
            checks.append(1)
            notes.append(("class", f"the mask has {region.components} {cls} component(s) that the caption does not "
                                   "mention"))
    return notes


def _compare(cls: str, mask_cls: str, region: RegionSummary, counts: Mapping[str, Any],
             places: Mapping[str, set[str]], checks: list[int]) -> list[tuple[str, str]]:
    notes = []
    span = counts.get(cls)
    checks.append(int(span is not None))
    if span is not None and not _counts_agree(span, (region.components, region.components)):
        noun = _SINGULAR[cls] if span == (1, 1) else _PLURAL[cls]
        notes.append(("count", f"the caption says {_span_text(span)} {noun}; the mask has "
                               f"{region.components} {mask_cls} component(s)"))
    said_places = {p for p in places.get(cls, ()) if _is_map_place(p)}
    checks.append(int(bool(said_places) and region.place is not None))
    if said_places and region.place is not None and not _places_agree(said_places, {region.place}):
        said = " / ".join(_place_text(p) for p in sorted(said_places))
        notes.append(("place", f"the caption places the {_PLURAL[cls]} at {said}; the mask's {mask_cls} lies at "
                               f"{_place_text(region.place)}"))
    return notes


def _is_map_place(place: str) -> bool:
    """A place on the image (a side, corner, the centre), not one relative to an object ("along the road")."""
    return place in ("centre", "everywhere") or set(place.split("_")) <= {"top", "bottom", "left", "right"}


def consistency_rank(candidates: Sequence[str], mask: MaskSummary, utility: Sequence[float] | None = None) -> list[int]:
    """Indices of ``candidates`` from most to least consistent with ``mask``: fewest ``change`` disagreements
    first, then fewest ``class`` disagreements, then fewest ``count`` and ``place`` ones
    (:meth:`ConsistencyReport.severity`), then most agreements (a caption whose count and place the mask confirms
    beats one that says neither); remaining ties keep the candidates' order.

    The kinds are weighed in turn, not summed: a caption that names the class the mask marks but misses its count
    and place beats one that leaves the marked class out and so has nothing else to get wrong.

    ``utility`` (one value per candidate, higher is better; :func:`expected_similarity` to sampled captions) replaces
    the agreements: after the disagreements per kind, a caption whose change or no change the mask confirms comes
    first (over an empty mask of any change, the no-change sentence before a caption about trees; an empty building
    mask confirms neither), then the candidates are ordered by the utility, then by their order."""
    reports = [check_consistency(c, mask) for c in candidates]
    # Without a utility the confirmed change never decides: a caption the mask cannot check has no agreement at all.
    score = utility if utility is not None else [r.checks - len(r.disagreements) for r in reports]
    key = [(*r.severity(), -r.change_confirmed, -score[i], i) for i, r in enumerate(reports)]
    return sorted(range(len(candidates)), key=lambda i: key[i])


def _count_words(n: int) -> tuple[str, ...]:
    """The count words of a prefix for ``n`` objects, as LEVIR-CC's captions and the count scores use them
    (:data:`semcc.metrics.caption_rules.VAGUE_COUNTS`): a, two, three, several / some (4 or 5), many (6 or more)."""
    return {1: ("a",), 2: ("two",), 3: ("three",)}.get(n, ("several", "some") if n <= 5 else ("many",))


def mask_prefixes(mask: MaskSummary) -> list[str]:
    """Caption openings that say what a predicted mask shows: the count and class of each class it marks apart
    (:data:`PREFIX_NOUNS`: building, road) with components, e.g. ``["two houses", "two buildings"]`` for a
    building-change mask with two components, ``["several houses", "some buildings"]`` for four.

    Beyond the paper (issue 13): mask-guided candidates for consistency-aware decoding (``mask_prefixes`` of the
    evaluation settings and of :class:`semcc.inference.Predictor`). The model writes the rest of each caption (the
    direction, the place, what stood there before) from the same visual tokens as its free caption
    (``SemanticCC.prefixed_captions``), so that the change detection of Eq. 6 guides the caption of Eq. 7 where
    a random-init caption head says one frequent sentence whatever changed. Empty for a mask that shows no change
    and for a binary mask of any change (its class is unknown); one count and noun each in turn, up to two per
    class."""
    if not mask.changed or _covered(mask) is None:
        return []
    out: list[str] = []
    for region in mask.regions:
        if region.cls not in PREFIX_NOUNS or region.components < 1:
            continue
        words = _count_words(region.components)
        nouns = PREFIX_NOUNS[region.cls]
        for i in range(max(len(words), len(nouns))):
            word, (one, many) = words[i % len(words)], nouns[i % len(nouns)]
            out.append(f"{word} {one if region.components == 1 else many}")
    return list(dict.fromkeys(out))


def binary_mask_name(binary: str | None) -> str:
    """The class a binary mask marks: ``binary`` (``"change"`` for any change, or a class of
    :data:`MASKED_CLASSES`, e.g. ``"building"`` for a head trained on building-change labels) checked, or
    ``"change"`` when ``None`` (unknown)."""
    if binary is None:
        return ANY_CHANGE
    if binary != ANY_CHANGE and binary not in MASKED_CLASSES:
        raise ValueError(f"binary mask class must be {ANY_CHANGE!r} or one of {sorted(MASKED_CLASSES)}, got {binary!r}")
    return binary


def mask_class_names(num_classes: int, binary: str | None = None) -> dict[int, str]:
    """What a CD head's mask values mean for the report: ``{1: binary_mask_name(binary)}`` for a binary head (1 or
    2 classes), the LEVIR-MCI classes (``{1: "road", 2: "building"}``) for a three-class one, ``class{i}``
    otherwise."""
    binary = binary_mask_name(binary)
    if num_classes <= 2:
        return {1: binary}
    if num_classes == len(MCI_CLASSES):
        return {i: c for i, c in enumerate(MCI_CLASSES) if i}
    return {i: f"class{i}" for i in range(1, num_classes)}


def expected_similarity(candidates: Sequence[str], samples: Sequence[str]) -> list[float]:
    """Each candidate's mean :func:`~semcc.models.ensemble.caption_similarity` (the paper's ensemble consensus
    measure) to ``samples``, captions drawn from the model: the expected utility of minimum-Bayes-risk decoding, with
    the samples standing in for the model's distribution of captions (repeats count as often as they were drawn)."""
    from semcc.models.ensemble import caption_similarity

    if not samples:
        raise ValueError("expected similarity to no samples")
    return [sum(caption_similarity(c, s) for s in samples) / len(samples) for c in candidates]


def first_clause(caption: str) -> str:
    """The words of ``caption`` before its first `` and `` (the caption itself when it has none): "a new road is
    built on the right and a house is built along it" -> "a new road is built on the right"."""
    return caption.split(" and ", 1)[0].strip() or caption


def with_first_clauses(captions: Sequence[str]) -> list[str]:
    """``captions`` with each one's :func:`first_clause` just before it, where it differs (see
    :func:`choose_consistent`'s ``first_clauses``)."""
    return [c for caption in captions for c in dict.fromkeys([first_clause(caption), caption])]


def choose_consistent(
    first: str, candidates: Sequence[str], mask: MaskSummary, *, no_change: Sequence[str] = (),
    samples: Sequence[str] = (), first_clauses: bool = False,
) -> tuple[str, list[str]]:
    """Consistency-aware decoding for one pair: ``(chosen caption, candidates ranked)``. The candidates are ``first``
    (the greedy caption, which wins ties), ``candidates`` and, only where the mask shows no change
    (``mask.changed`` false), the ``no_change`` sentences, without repeats; ``mask`` summarises the pair's predicted
    mask (:func:`~semcc.metrics.truth.summarize_mask` with :func:`mask_class_names`). Where the mask marks a change
    a no-change sentence would contradict it, so it is not offered there (the model's own candidates still may
    say no change).

    ``samples`` (captions drawn from the model, ``SemanticCC.caption_samples``) join the candidates, and the order
    changes: by the disagreements per kind (:meth:`ConsistencyReport.severity`), then the captions whose change or no
    change the mask confirms (over an empty mask of any change, the no-change sentence before a sampled caption about
    trees, which such a mask does not mark; an empty building mask confirms neither), then by
    :func:`expected_similarity` to the samples, highest first (minimum-Bayes-risk decoding among the captions the
    mask confirms equally well), then the candidates' order. The agreements are not counted there: they favour long
    captions that state a count and a place, which lowers BLEU (``benchmarks/README.md``, "Sampled candidates").

    ``first_clauses`` (beyond the paper): each candidate's first clause (:func:`first_clause`, the words before its
    first "and") joins the candidates just before it, the greedy caption's first of all. A caption of two events
    ("many houses are built on the right and a house is demolished at the bottom") then wins only where the mask
    confirms more of it than of its first clause alone: a building mask cannot tell the second event from the first,
    so it does not add an agreement, and the shorter claim wins the tie (``benchmarks/README.md``, "First clauses")."""
    heads = with_first_clauses([first, *candidates]) if first_clauses else [first, *candidates]
    pool = list(dict.fromkeys([*heads, *samples, *(() if mask.changed else no_change)]))
    utility = expected_similarity(pool, samples) if samples else None
    ranked = [pool[i] for i in consistency_rank(pool, mask, utility)]
    return ranked[0], ranked
