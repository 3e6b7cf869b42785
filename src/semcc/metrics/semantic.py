"""Semantic caption claims: a rule parser for LEVIR-style change captions.

This module serves the semantic caption metrics of issue 13 ("1. Semantic caption metrics"). The paper's
Sec. IV-B scores captions with n-gram metrics only (BLEU, METEOR, ROUGE-L, CIDEr); checking *what* changed,
*how many* and *where* goes beyond the paper.

:func:`parse_caption` turns a caption into a :class:`CaptionClaim`: whether the scene changed, and for each
changed object its class, direction (added / removed / replaced / changed), count and places.
:func:`caption_coverage` measures how much of a caption set the rules understand; :mod:`semcc.metrics.claim_scores`
scores claims against ground truth.

Scope of the rule tables (:mod:`semcc.metrics.caption_rules`): the vocabulary of the LEVIR-CC captions (English,
lower case, punctuation dropped as in :func:`semcc.data.text.normalize_caption`). The parser is a longest-match phrase
lexicon plus a small clause model (subjects before a verb take its direction; after "replace" / "become" /
"by" the roles of old and new object swap; nouns after a place preposition are context, not changed objects).
It does not resolve negation beyond the fixed no-change sentences, nor long-range coreference. Words the
tables know but the claim does not model (colours, shapes, arrangement) are listed in :data:`DESCRIPTORS`;
any other content word ends up in :attr:`CaptionClaim.unparsed`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from semcc.data.text import NO_CHANGE_SENTENCES, is_no_change, normalize_caption
from semcc.metrics.caption_rules import (
    CLASS_WORDS,
    CLASSES,
    CONJUNCTIONS,
    COORDINATORS,
    COUNT_WORDS,
    DESCRIPTORS,
    DIRECTION_WORDS,
    FUNCTION_WORDS,
    NEAR_PREPOSITIONS,
    NO_CHANGE_EXTRA,
    ON_PREPOSITIONS,
    PLACE_WORDS,
    QUANTITY_NOUNS,
    REFERENCE_WORDS,
    ROLE_VERBS,
    UNCOUNTABLE,
    VAGUE_WORDS,
)

__all__ = [
    "CLASSES",
    "CaptionClaim",
    "ObjectClaim",
    "caption_coverage",
    "parse_caption",
]

# ------------------------------------------------------------------------------------------------ claims
@dataclass(frozen=True)
class ObjectClaim:
    """One changed object of a caption: class, direction, count (or vague ``count_word``) and places."""

    cls: str
    direction: str | None = None
    count: int | None = None
    count_word: str | None = None
    places: tuple[str, ...] = ()


@dataclass(frozen=True)
class CaptionClaim:
    """What a caption says: changed or not (None: nothing parseable), its objects, the words left unparsed."""

    changed: bool | None
    objects: tuple[ObjectClaim, ...] = ()
    unparsed: tuple[str, ...] = ()
    #: Ground truth only: classes a caption may name or leave out without error (the ground a change replaced;
    #: the classes a mask cannot tell). See :mod:`semcc.metrics.truth`.
    optional: frozenset[str] = frozenset()

    @property
    def classes(self) -> frozenset[str]:
        """The classes of the claimed changed objects."""
        return frozenset(o.cls for o in self.objects)

    @property
    def fully_parsed(self) -> bool:
        """``changed`` decided and no content word left unparsed."""
        return self.changed is not None and not self.unparsed


# ------------------------------------------------------------------------------------------------ lexicon
_KINDS: list[tuple[str, Iterable[str]]] = [
    ("class", CLASS_WORDS),
    ("role", ROLE_VERBS),
    ("dir", DIRECTION_WORDS),
    ("count", COUNT_WORDS),
    ("vague", VAGUE_WORDS),
    ("near", NEAR_PREPOSITIONS),
    ("on", ON_PREPOSITIONS),
    ("place", PLACE_WORDS),
    ("ref", REFERENCE_WORDS),
    ("conj", CONJUNCTIONS),
    ("coord", COORDINATORS),
    ("func", FUNCTION_WORDS),
    ("desc", DESCRIPTORS),
]


def _build_lexicon() -> dict[tuple[str, ...], str]:
    lexicon: dict[tuple[str, ...], str] = {}
    for kind, words in _KINDS:  # earlier tables win on a word listed twice
        for phrase in words:
            lexicon.setdefault(tuple(phrase.split()), kind)
    for noun in QUANTITY_NOUNS:  # "row of", "rows of" ... (the noun alone is a function word)
        lexicon[(noun, "of")] = "quant"
    return lexicon


_LEXICON = _build_lexicon()
_MAX_PHRASE = max(len(k) for k in _LEXICON)
_NO_CHANGE_TEXT = frozenset(normalize_caption(s) for s in (*NO_CHANGE_SENTENCES, *NO_CHANGE_EXTRA))
_DIGIT_LIMIT = 1000


def _tokens(text: str) -> list[tuple[str, str, str]]:
    """(kind, phrase, first word) by greedy longest match; unknown words get kind ``unknown``."""
    words = normalize_caption(text).split()
    out: list[tuple[str, str, str]] = []
    i = 0
    while i < len(words):
        for n in range(min(_MAX_PHRASE, len(words) - i), 0, -1):
            key = tuple(words[i:i + n])
            kind = _LEXICON.get(key)
            if kind is not None:
                out.append((kind, " ".join(key), words[i]))
                i += n
                break
        else:
            word = words[i]
            if word.isdigit() and 0 < int(word) < _DIGIT_LIMIT:
                out.append(("count", word, word))
            elif "-" in word and all((p,) in _LEXICON for p in word.split("-") if p):
                out.append(("desc", word, word))  # e.g. "two-storey", "lower-middle": known parts
            else:
                out.append(("unknown", word, word))
            i += 1
    return out


def _combine_places(parts: list[str]) -> list[str]:
    """``top`` + ``left`` -> ``top_left``; a lone ``corner`` stays; ``corner`` beside a side word is dropped."""
    vertical = [p for p in parts if p in ("top", "bottom")]
    horizontal = [p for p in parts if p in ("left", "right")]
    places: list[str] = [p for p in parts if "_" in p]  # "lower-right" -> bottom_right already
    rest = [p for p in parts if p not in ("top", "bottom", "left", "right", "corner") and "_" not in p]
    if len(vertical) == 1 and len(horizontal) == 1:
        places.append(f"{vertical[0]}_{horizontal[0]}")
    else:
        places.extend(vertical + horizontal)
    if "corner" in parts and not places:
        places.append("corner")
    return places + rest


class _Clause:
    """Objects, places and verb state of one clause while parsing."""

    def __init__(self) -> None:
        self.objects: list[dict] = []
        self.subjects: list[dict] = []
        self.after_verb: str | None = None  # direction for objects named after the verb
        self.role: tuple[str, bool] | None = None  # ("become" | "replace", passive)
        self.role_object = False
        self.places: list[str] = []
        self.verb = False


def parse_caption(text: str) -> CaptionClaim:
    """The :class:`CaptionClaim` of one LEVIR-style caption (see the rule tables at module top)."""
    if is_no_change(text) or normalize_caption(text) in _NO_CHANGE_TEXT:
        return CaptionClaim(changed=False)
    tokens = _tokens(text)
    objects: list[dict] = []
    unparsed: list[str] = []
    clause = _Clause()
    count: int | None = None
    count_text: str | None = None
    count_word: list[str] = []
    new = False
    context: str | None = None  # "near" / "on" after a preposition: the next noun is context
    agent = False
    place_parts: list[str] = []
    last_cls: str | None = None
    last_context: str | None = None  # the context of the last class noun (None: it was an object)
    named: list[str] = []  # every class named so far, objects and context, in order
    previous_subjects: list[str] = []  # the subject classes of the clause before
    saw_change_word = False

    def flush_places() -> None:
        nonlocal place_parts
        if place_parts:
            clause.places.extend(p for p in _combine_places(place_parts) if p not in clause.places)
            place_parts = []

    def end_clause() -> None:
        nonlocal clause, previous_subjects
        previous_subjects = [o["cls"] for o in clause.subjects]
        flush_places()
        if clause.role is not None and clause.role[0] == "become" and not clause.role_object:
            for o in clause.subjects:
                if o["direction"] == "replaced":
                    o["direction"] = "changed"
        for o in clause.objects:
            if o["direction"] is None and o["new"]:
                o["direction"] = "added"
            o["places"].extend(p for p in clause.places if p not in o["places"])
        if not clause.objects and clause.places and objects:
            last = objects[-1]
            last["places"].extend(p for p in clause.places if p not in last["places"])
        clause = _Clause()

    def verb(direction_subject: str | None, direction_after: str | None) -> None:
        nonlocal context, saw_change_word
        saw_change_word = True
        for o in clause.subjects:
            if o["direction"] is None or (direction_subject is not None and o["direction"] == "added"
                                          and direction_subject != "added" and clause.role is not None):
                o["direction"] = direction_subject
        clause.verb = True
        clause.after_verb = direction_after
        context = None

    for i, (kind, phrase, first) in enumerate(tokens):
        if kind != "place" and not (kind == "func" and place_parts) and kind != "near":
            flush_places()
        if kind == "class":
            cls = CLASS_WORDS[phrase]
            named.append(cls)
            if context is not None and not agent:
                place = f"along_{cls}" if (context == "near" and cls == "road") else f"{context}_{cls}"
                clause.places.append(place) if place not in clause.places else None
                last_context, context = context, None
                count, count_text, count_word, new = None, None, [], False
                last_cls = cls
                continue
            obj = {"cls": cls, "direction": None, "count": None, "count_word": None, "places": [], "new": new}
            if count_word:
                obj["count_word"] = " ".join(count_word)
            elif count is not None and not (cls in UNCOUNTABLE and count == 1):
                obj["count"] = count
            if clause.verb:
                obj["direction"] = clause.after_verb
                if clause.role is not None:
                    clause.role_object = True
            else:
                clause.subjects.append(obj)
            clause.objects.append(obj)
            objects.append(obj)
            count, count_text, count_word, new, agent, last_cls = None, None, [], False, False, cls
            last_context = None
        elif kind == "dir":
            direction = DIRECTION_WORDS[phrase]
            if first in ("new", "newly") and (i + 1 < len(tokens) and tokens[i + 1][0] in ("class", "desc",
                                                                                           "dir")):
                new = True
                saw_change_word = True
                continue
            if clause.verb and clause.role is not None:
                # "... replaced by houses built along the road": a participle after the object
                saw_change_word = True
                continue
            if clause.verb and clause.after_verb is not None and not clause.subjects:
                saw_change_word = True
                continue
            verb(direction, direction)
        elif kind == "role":
            role = ROLE_VERBS[phrase]
            previous = tokens[i - 1][1] if i else ""
            passive = role == "replace" and previous in ("is", "are", "was", "were", "be", "been", "being", "get",
                                                         "gets", "got")
            if clause.verb and clause.subjects and role == "replace" and previous == "to":
                passive = False  # "a road is built to replace the trees"
            clause.role = (role, passive)
            if role == "become" or passive:
                verb("replaced", "added")
            else:
                verb("added", "replaced")
        elif kind == "count":
            value = COUNT_WORDS.get(phrase)
            count, count_text, count_word = (value if value is not None else int(phrase)), phrase, []
        elif kind == "vague":
            if phrase == "more" and count is not None:
                continue  # "two more houses"
            count, count_text, count_word = None, None, [phrase]
        elif kind == "quant":  # "a row of", "two rows of", "lots of"
            prefix = count_text if count is not None else " ".join(count_word)
            count, count_text, count_word = None, None, [f"{prefix} {phrase}".strip()]
        elif kind == "near":
            if phrase == "by" and clause.role is not None and clause.verb and not clause.role_object:
                agent, context = True, None  # "replaced by houses": the newcomer follows
                continue
            context = "near"
            if phrase in ("in the middle of", "the middle of", "middle of"):
                place_parts.append("centre")
            elif "corner" in phrase:
                place_parts.append("corner")
            elif "right" in phrase or "left" in phrase:
                place_parts.append("right" if "right" in phrase else "left")
        elif kind == "on":
            if agent:
                continue
            if phrase == "by" or (phrase in ("of",) and context == "near"):
                continue
            if phrase in ("to",) and clause.role is not None:
                continue
            context = "on" if phrase != "of" else context
            if phrase in ("into",) and clause.role is not None:
                context = None
        elif kind == "place":
            place_parts.append(PLACE_WORDS[phrase])
            if context is not None and phrase in ("corner", "corners", "edge", "edges"):
                pass
        elif kind == "ref":
            own = {o["cls"] for o in clause.subjects}
            referent = next((c for c in previous_subjects if c not in own), None)  # "a road ... villas near it"
            referent = referent or next((c for c in reversed(named) if c not in own), last_cls)
            if context is not None and referent is not None and phrase in ("it", "them", "its", "their"):
                place = f"along_{referent}" if (context == "near" and referent == "road") else f"{context}_{referent}"
                if place not in clause.places:
                    clause.places.append(place)
                context = None
        elif kind == "conj":
            ahead = [k for k, _, _ in tokens[i + 1:]]
            ahead = ahead[:ahead.index("conj")] if "conj" in ahead else ahead
            if clause.verb and ("dir" in ahead or "role" in ahead):
                end_clause()
                context = None
            else:  # "on both sides of the road and the intersection": the coordination goes on
                context = last_context
            count, count_text, count_word = None, None, []
        elif kind == "coord":
            context = None
        elif kind == "func" or kind == "desc":
            if first == "by" and clause.role is not None:
                agent = True
        else:
            unparsed.append(phrase)
        if kind == "on" and phrase == "by" and clause.role is not None:
            agent = True
            context = None
    end_clause()
    claims = tuple(
        ObjectClaim(cls=o["cls"], direction=o["direction"], count=o["count"], count_word=o["count_word"],
                    places=tuple(o["places"]))
        for o in objects
    )
    changed = True if (claims or saw_change_word) else None
    return CaptionClaim(changed=changed, objects=claims, unparsed=tuple(unparsed))



# ------------------------------------------------------------------------------------------------ coverage
def caption_coverage(captions: Iterable[str], top: int = 20) -> dict:
    """How much of ``captions`` the rules understand.

    Returns ``captions`` (how many), ``fully_parsed`` (share with ``changed`` decided and no unparsed word),
    ``changed_decided`` (share with ``changed`` not None), ``no_change`` (share parsed as no change) and
    ``unparsed_top`` (the ``top`` most frequent unparsed words with their counts, most frequent first).
    """
    total = full = decided = unchanged = 0
    missing: Counter[str] = Counter()
    for caption in captions:
        claim = parse_caption(caption)
        total += 1
        full += claim.fully_parsed
        decided += claim.changed is not None
        unchanged += claim.changed is False
        missing.update(claim.unparsed)
    share = (lambda n: n / total) if total else (lambda n: math.nan)
    return {"captions": total, "fully_parsed": share(full), "changed_decided": share(decided),
            "no_change": share(unchanged), "unparsed_top": missing.most_common(top)}
