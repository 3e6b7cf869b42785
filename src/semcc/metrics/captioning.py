"""Caption metrics of Sec. IV-B (BLEU-1..4, METEOR, ROUGE-L, CIDEr-D) computed by pycocoevalcap.

The protocol: lower-cased, whitespace-tokenised text with punctuation removed
(:func:`semcc.data.text.normalize_caption`), every reference of a pair, the whole split scored at once
(CIDEr's document frequencies depend on the whole split), predictions gathered from every rank and
de-duplicated by pair name (``DistributedSampler`` pads with repeats). Also reported: S*m =
(BLEU-4 + METEOR + ROUGE-L + CIDEr) / 4, the same metrics on the change / no-change subsets (a pair
is unchanged when its references are the LEVIR-CC no-change sentences) and, beyond the paper, how varied the
changed pairs' captions are (:func:`caption_diversity`).

Two options change how text reaches pycocoevalcap:

* ``tokenization="ptb"``: pycocoevalcap's PTB tokenizer (Stanford CoreNLP on Java) instead of the simple
  normalisation: the COCO captioning protocol.
* ``protocol="ids"``: every word is replaced by its id in a vocabulary (first-seen order over the training
  captions, unknown words one ``<unk>`` id), as published RSICC-family code scores strings of vocabulary ids.
  BLEU, ROUGE-L and CIDEr are unchanged by this; METEOR is not (its stemming and synonyms see words): on
  the real LEVIR-CC test split the constant caption gets METEOR 0.2777 on words and 0.2932 on ids (test words
  outside the training vocabulary share the <unk> id, which moves CIDEr in the fifth decimal there).

:class:`CaptionMetrics` is the torchmetrics form: it collects (name, prediction, references) strings,
gathers them from every rank with torchmetrics' own synchronisation (as UTF-8 bytes), drops duplicates by
pair name and scores the whole split once.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torchmetrics import Metric

from semcc.data.text import is_no_change, normalize_caption

__all__ = [
    "NO_CHANGE_PREDICTION",
    "PROTOCOLS",
    "TOKENIZATIONS",
    "CaptionMetrics",
    "build_id_vocabulary",
    "caption_diversity",
    "floor_predictions",
    "java_available",
    "meteor_unavailable_reason",
    "score_captions",
    "score_floors",
    "score_split",
]

#: The constant floor's caption (a LEVIR-CC no-change sentence).
NO_CHANGE_PREDICTION = "the scene is the same as before"
#: What the scored strings hold: words (default) or vocabulary ids (published RSICC-family code).
PROTOCOLS = ("words", "ids")
#: How captions are tokenised: the simple normalisation (default) or pycocoevalcap's PTB tokenizer.
TOKENIZATIONS = ("simple", "ptb")


def java_available() -> bool:
    """Whether a ``java`` executable is on PATH (METEOR and the PTB tokenizer run on Java)."""
    return shutil.which("java") is not None


def meteor_unavailable_reason() -> str | None:
    """Why METEOR cannot be computed here (``None`` when it can)."""
    if java_available():
        return None
    return "METEOR needs Java: no `java` executable on PATH (install a JRE, e.g. OpenJDK 11+); other metrics computed"


_METEOR = None


def _meteor():
    """One METEOR Java process per Python process, started on first use (a start costs seconds)."""
    global _METEOR
    if _METEOR is None or _METEOR.meteor_p.poll() is not None:
        from pycocoevalcap.meteor.meteor import Meteor

        _METEOR = Meteor()
    return _METEOR


def build_id_vocabulary(captions: Iterable[str]) -> dict[str, int]:
    """Word -> id (from 1) in first-seen order over normalised ``captions`` (RSICC-family word maps)."""
    vocabulary: dict[str, int] = {}
    for caption in captions:
        for word in normalize_caption(caption).split():
            vocabulary.setdefault(word, len(vocabulary) + 1)
    return vocabulary


def _check_options(protocol: str, tokenization: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown caption protocol {protocol!r}; choose from {PROTOCOLS}")
    if tokenization not in TOKENIZATIONS:
        raise ValueError(f"unknown tokenization {tokenization!r}; choose from {TOKENIZATIONS}")


def _ptb(texts: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    if not java_available():
        raise RuntimeError("the PTB tokenizer needs Java: no `java` executable on PATH (or use tokenization='simple')")
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    # PTBTokenizer splits its input on newlines: a caption must be one line.
    data = {k: [{"caption": " ".join(c.split())} for c in v] for k, v in texts.items()}
    return PTBTokenizer().tokenize(data)


def _prepare(
    predictions: Mapping[str, str],
    references: Mapping[str, Sequence[str]],
    protocol: str,
    tokenization: str,
    vocabulary: Mapping[str, int] | None,
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """The ``res`` / ``gts`` dicts pycocoevalcap scores: tokenised, then mapped to ids for ``protocol="ids"``."""
    _check_options(protocol, tokenization)
    if missing := sorted(set(predictions) - set(references)):
        raise KeyError(f"predictions without references: {missing[:5]}")
    if not predictions:
        raise ValueError("no predictions to score")
    names = sorted(predictions)
    if tokenization == "ptb":
        res = _ptb({k: [predictions[k]] for k in names})
        gts = _ptb({k: list(references[k]) for k in names})
    else:
        res = {k: [normalize_caption(predictions[k])] for k in names}
        gts = {k: [normalize_caption(r) for r in references[k]] for k in names}
    res = {k: [v[0] or "<empty>"] for k, v in res.items()}
    if protocol == "ids":
        vocab = dict(vocabulary) if vocabulary is not None else build_id_vocabulary(r for k in names for r in gts[k])
        unk = str(max(vocab.values(), default=0) + 1)

        def ids(text: str) -> str:
            return " ".join(str(vocab[w]) if w in vocab else unk for w in text.split())

        res = {k: [ids(v[0])] for k, v in res.items()}
        gts = {k: [ids(r) for r in v] for k, v in gts.items()}
    return res, gts


def _meteor_score(gts: dict[str, list[str]], res: dict[str, list[str]]) -> float:
    """METEOR of the split through the shared Java process; a process whose line protocol went out of step (it
    answered a score request with a statistics line) is replaced once and the split scored again."""
    global _METEOR
    try:
        return float(_meteor().compute_score(gts, res)[0])
    except (ValueError, BrokenPipeError) as err:
        warnings.warn(f"METEOR's Java process answered out of step ({err}); restarting it and scoring again",
                      stacklevel=3)
        stale, _METEOR = _METEOR, None
        if stale is not None:
            with contextlib.suppress(Exception):
                stale.lock.release()  # pycocoevalcap holds its lock when a read fails
            stale.meteor_p.kill()
        return float(_meteor().compute_score(gts, res)[0])


def _score(res: dict[str, list[str]], gts: dict[str, list[str]], meteor: bool) -> dict[str, float]:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    scores = {f"bleu_{i + 1}": float(b) for i, b in enumerate(bleu)}
    if meteor and (reason := meteor_unavailable_reason()) is None:
        scores["meteor"] = _meteor_score(gts, res)
    elif meteor:
        warnings.warn(reason, stacklevel=3)
    scores["rouge_l"] = float(Rouge().compute_score(gts, res)[0])
    scores["cider"] = float(Cider().compute_score(gts, res)[0])
    parts = [scores["bleu_4"], scores["rouge_l"], scores["cider"]] + ([scores["meteor"]] if "meteor" in scores else [])
    scores["s_m"] = sum(parts) / len(parts)
    return scores


def score_captions(
    predictions: Mapping[str, str],
    references: Mapping[str, Sequence[str]],
    *,
    meteor: bool = True,
    protocol: str = "words",
    tokenization: str = "simple",
    vocabulary: Mapping[str, int] | None = None,
) -> dict[str, float]:
    """Score ``predictions[name]`` against ``references[name]`` with pycocoevalcap.

    Returns ``bleu_1..4``, ``meteor`` (when ``meteor`` is set and Java is there; without Java a warning says
    METEOR needs it and the other metrics are still returned), ``rouge_l``, ``cider`` and ``s_m`` (the mean
    of BLEU-4, METEOR, ROUGE-L, CIDEr; without METEOR, of the other three). ``protocol`` / ``tokenization``:
    see the module docstring; ``vocabulary`` (``protocol="ids"``) defaults to the references' words.
    """
    res, gts = _prepare(predictions, references, protocol, tokenization, vocabulary)
    return _score(res, gts, meteor)


def caption_diversity(captions: Iterable[str]) -> dict[str, float]:
    """How varied a set of captions is (beyond the paper, issue 13: n-gram scores do not see a captioner that says
    one sentence for most pairs). ``distinct``: the number of different captions (after :func:`normalize_caption`)
    over the number of captions; ``top_share``: the share of captions that are the most frequent one. One sentence
    for every pair (the oracle-constant floor on the changed pairs) gives ``1 / n`` and 1; all different, 1 and
    ``1 / n``. Raises ``ValueError`` on no captions."""
    counts = Counter(normalize_caption(c) for c in captions)
    n = sum(counts.values())
    if not n:
        raise ValueError("caption_diversity needs at least one caption")
    return {"distinct": len(counts) / n, "top_share": max(counts.values()) / n}


def floor_predictions(references: Mapping[str, Sequence[str]], changed_caption: str) -> dict[str, dict[str, str]]:
    """The two floors every report shows, as predictions for the pairs of ``references``.

    ``constant``: "the scene is the same as before" for every pair. ``oracle_constant``: knows perfectly
    whether a pair changed; the no-change sentence for unchanged pairs and ``changed_caption`` (the most
    frequent training caption of changed pairs) for changed ones.
    """
    oracle = {
        k: NO_CHANGE_PREDICTION if all(is_no_change(r) for r in refs) else changed_caption
        for k, refs in references.items()
    }
    return {"constant": dict.fromkeys(references, NO_CHANGE_PREDICTION), "oracle_constant": oracle}


def score_floors(
    references: Mapping[str, Sequence[str]], changed_caption: str, **options: Any
) -> dict[str, dict[str, float]]:
    """:func:`score_split` of each of the two floors of :func:`floor_predictions` (``options``: its keywords), less
    the scores of the references themselves (``change_references_distinct``)."""
    return {name: {k: v for k, v in score_split(preds, references, **options).items() if "references" not in k}
            for name, preds in floor_predictions(references, changed_caption).items()}


def score_split(
    predictions: Mapping[str, str],
    references: Mapping[str, Sequence[str]],
    *,
    meteor: bool = True,
    subsets: bool = True,
    protocol: str = "words",
    tokenization: str = "simple",
    vocabulary: Mapping[str, int] | None = None,
) -> dict[str, float]:
    """:func:`score_captions` overall, plus ``change_*`` / ``nochange_*`` subsets (where both occur),
    ``change_accuracy``: the share of pairs whose caption is right about change vs no change, and, where there are
    changed pairs, their captions' :func:`caption_diversity` (``change_distinct``, ``change_top_share``) beside the
    references' (``change_references_distinct``: the distinct share of the changed pairs' k-th references, the mean
    over k, what one human-style caption per pair reaches).

    Text is tokenised (and mapped to ids) once; each subset is scored on its own (its own CIDEr document
    frequencies), as published subset tables are.
    """
    res, gts = _prepare(predictions, references, protocol, tokenization, vocabulary)
    scores = _score(res, gts, meteor)
    if subsets:
        unchanged = {k for k, r in references.items() if all(is_no_change(x) for x in r)}
        keys = set(predictions)
        changed = keys - unchanged
        for prefix, keep in (("nochange_", keys & unchanged), ("change_", changed)):
            if keep and len(keep) < len(keys):
                sub = _score({k: res[k] for k in keep}, {k: gts[k] for k in keep}, meteor)
                scores.update({prefix + k: v for k, v in sub.items()})
        correct = sum(is_no_change(p) == (k in unchanged) for k, p in predictions.items())
        scores["change_accuracy"] = correct / len(predictions)
        if changed:  # a changed pair has at least one reference (one without any counts as unchanged)
            diversity = caption_diversity(predictions[k] for k in changed)
            scores["change_distinct"], scores["change_top_share"] = diversity["distinct"], diversity["top_share"]
            per_k = [caption_diversity(references[k][i] for k in changed)["distinct"]
                     for i in range(min(len(references[k]) for k in changed))]
            scores["change_references_distinct"] = sum(per_k) / len(per_k)
    return scores


class CaptionMetrics(Metric):
    """torchmetrics form of :func:`score_split`: collects caption strings per pair, scores the whole split.

    ``update(names, predictions, references)`` stores each pair as one JSON line of UTF-8 bytes in a tensor
    state, so torchmetrics gathers them from every rank (uneven lengths included) under DDP; ``compute``
    keeps one prediction per pair name (``DistributedSampler`` pads the last batch with repeats) and scores
    the split once. After ``compute``, :attr:`items` holds the gathered ``{name: (prediction, references)}``.

    Args:
        meteor: compute METEOR (needs Java; without it the other metrics are computed and a warning says why).
        subsets: also score the change / no-change subsets and ``change_accuracy``.
        protocol, tokenization, vocabulary: see :func:`score_split`.
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(
        self,
        *,
        meteor: bool = True,
        subsets: bool = True,
        protocol: str = "words",
        tokenization: str = "simple",
        vocabulary: Mapping[str, int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _check_options(protocol, tokenization)
        self.meteor, self.subsets = meteor, subsets
        self.protocol, self.tokenization, self.vocabulary = protocol, tokenization, vocabulary
        self.items: dict[str, tuple[str, list[str]]] = {}
        self.add_state("records", default=[], dist_reduce_fx="cat")

    def update(self, names: Sequence[str], predictions: Sequence[str], references: Sequence[Sequence[str]]) -> None:
        if not len(names) == len(predictions) == len(references):
            raise ValueError(
                f"names, predictions and references differ in length: {len(names)}, {len(predictions)}, "
                f"{len(references)}"
            )
        lines = "".join(
            json.dumps([str(n), str(p), [str(r) for r in refs]]) + "\n"
            for n, p, refs in zip(names, predictions, references, strict=True)
        )
        data = torch.frombuffer(bytearray(lines.encode("utf-8")), dtype=torch.uint8)
        self.records.append(data.to(self.device))

    def _decode(self) -> dict[str, tuple[str, list[str]]]:
        records = self.records
        if isinstance(records, list):
            records = torch.cat(records) if records else torch.zeros(0, dtype=torch.uint8)
        items: dict[str, tuple[str, list[str]]] = {}
        for line in bytes(records.cpu().numpy().tobytes()).decode("utf-8").splitlines():
            name, prediction, references = json.loads(line)
            items.setdefault(name, (prediction, references))
        return dict(sorted(items.items()))

    @property
    def options(self) -> dict[str, Any]:
        """The scoring keywords of :func:`score_split` this metric uses (for scoring floors the same way)."""
        return {"meteor": self.meteor, "subsets": self.subsets, "protocol": self.protocol,
                "tokenization": self.tokenization, "vocabulary": self.vocabulary}

    def compute(self) -> dict[str, float]:
        self.items = self._decode()
        predictions = {k: v[0] for k, v in self.items.items()}
        references = {k: v[1] for k, v in self.items.items()}
        return score_split(predictions, references, **self.options)
