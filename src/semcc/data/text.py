"""Caption text: normalisation, the LEVIR-CC no-change sentences, instruction prompts, word tokenizer.

Used by the LEVIR readers, the metrics protocol (:func:`normalize_caption`: lower case, punctuation removed,
whitespace tokens) and the caption decoder of paper Eq. 7 (``P``, the task instructions of Sec. IV-C). The tiny
preset's LLM reads captions through a word-level tokenizer built here from the training captions with
the ``tokenizers`` library and saved as an ordinary Hugging Face tokenizer directory, so that the paper
preset (Vicuna's SentencePiece tokenizer) and the tiny one load through the same
``transformers.AutoTokenizer.from_pretrained(path)`` call.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = [
    "BOS_TOKEN",
    "EOS_TOKEN",
    "INSTRUCTIONS",
    "NO_CHANGE_SENTENCES",
    "PAD_TOKEN",
    "UNK_TOKEN",
    "build_word_tokenizer",
    "is_no_change",
    "load_tokenizer",
    "most_frequent_changed_caption",
    "normalize_caption",
    "tokenize_caption",
]

#: The five fixed sentences LEVIR-CC uses for every unchanged pair (in the order of the json file).
NO_CHANGE_SENTENCES: tuple[str, ...] = (
    "there is no difference",
    "the two scenes seem identical",
    "the scene is the same as before",
    "no change has occurred",
    "almost nothing has changed",
)

#: The four instruction prompts of the paper (Sec. IV-C), used in training and for the test-time ensemble.
INSTRUCTIONS: tuple[str, ...] = (
    "Describe the difference between the new remote sensing image and the old one in detail.",
    "What is the main change between the two remote sensing scenes? Describe it in detail.",
    "Please provide a detailed description of the difference between these two remote sensing pictures.",
    "Can you describe what has been changed between these two remote sensing pictures for me?",
)

PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"
BOS_TOKEN = "<s>"
EOS_TOKEN = "</s>"
#: Words of the MiniGPT-4 prompt template (``###Human: <Img><ImageHere></Img> ... ###Assistant:``) that the
#: word tokenizer keeps as single tokens so the tiny LLM sees the same template as Vicuna.
TEMPLATE_TOKENS: tuple[str, ...] = ("###", "Human:", "Assistant:", "<Img>", "</Img>", "<ImageHere>")

_PUNCT = re.compile(r"[^\w\s'-]|(?<!\w)['-]|['-](?!\w)")
_SPACE = re.compile(r"\s+")


def normalize_caption(text: str) -> str:
    """Lower-case ``text``, drop punctuation and collapse whitespace (the metrics protocol).

    Hyphens and apostrophes inside words are kept ("lower-right", "t-shaped" are LEVIR-CC words);
    every other punctuation mark becomes a space.
    """
    text = _PUNCT.sub(" ", text.lower())
    return _SPACE.sub(" ", text).strip()


def tokenize_caption(text: str) -> list[str]:
    """Whitespace tokens of the normalised caption."""
    return normalize_caption(text).split()


_NO_CHANGE = frozenset(NO_CHANGE_SENTENCES)


def is_no_change(caption: str) -> bool:
    """True when ``caption`` is one of the LEVIR-CC no-change sentences (after normalisation)."""
    return normalize_caption(caption) in _NO_CHANGE


def most_frequent_changed_caption(references: Sequence[Sequence[str]]) -> str:
    """The most frequent (normalised) caption among the pairs that changed (ties: alphabetical first)."""
    counts: dict[str, int] = {}
    for refs in references:
        if all(is_no_change(r) for r in refs):
            continue
        for r in refs:
            text = normalize_caption(r)
            counts[text] = counts.get(text, 0) + 1
    if not counts:
        raise ValueError("no changed pair among the references")
    return min(counts, key=lambda c: (-counts[c], c))


def build_word_tokenizer(
    captions: Iterable[str],
    out_dir: str | Path | None = None,
    *,
    min_freq: int = 1,
    extra_words: Iterable[str] = (),
):
    """Build a word-level Hugging Face tokenizer from training captions (for the tiny LLM).

    The vocabulary holds the special tokens, the MiniGPT-4 template words, the words of the instruction
    prompts and every caption word seen at least ``min_freq`` times, sorted by frequency then
    alphabetically (so the same captions always give the same ids). Text is normalised the way
    :func:`normalize_caption` does, except that the template markers survive. When ``out_dir`` is given,
    the tokenizer is saved there as a ``transformers`` tokenizer directory (``tokenizer.json`` +
    config) and can be reloaded with :func:`load_tokenizer`.

    Returns a ``transformers.PreTrainedTokenizerFast``.
    """
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    counts: Counter[str] = Counter()
    for caption in captions:
        counts.update(tokenize_caption(caption))
    for instruction in INSTRUCTIONS:
        counts.update(tokenize_caption(instruction))
    counts.update(tokenize_caption(" ".join(extra_words)))
    specials = [PAD_TOKEN, UNK_TOKEN, BOS_TOKEN, EOS_TOKEN, *TEMPLATE_TOKENS]
    words = sorted((w for w, n in counts.items() if n >= min_freq), key=lambda w: (-counts[w], w))
    vocab = {tok: i for i, tok in enumerate(specials)}
    for word in words:
        vocab.setdefault(word, len(vocab))

    tok = Tokenizer(WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    tok.normalizer = normalizers.Sequence(
        [normalizers.Lowercase(), normalizers.Replace(r"###human:", "### Human:"),
         normalizers.Replace("###assistant:", "### Assistant:"),
         normalizers.Replace("human:", "Human:"), normalizers.Replace("assistant:", "Assistant:"),
         normalizers.Replace("<img>", " <Img> "), normalizers.Replace("</img>", " </Img> "),
         normalizers.Replace("<imagehere>", " <ImageHere> ")]
    )
    # Split on whitespace, then split off punctuation except inside template markers.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(),
         pre_tokenizers.Split(Regex(r"###|Human:|Assistant:|<Img>|</Img>|<ImageHere>"), behavior="isolated"),
         pre_tokenizers.Split(Regex(r"[.,;!?\"()]|:(?<!n:)(?<!t:)"), behavior="removed")]
    )
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        padding_side="right",
        model_max_length=512,
    )
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        fast.save_pretrained(str(out_dir))
    return fast


def load_tokenizer(path: str | Path):
    """Load a tokenizer directory (the word-level one saved by :func:`build_word_tokenizer` or an LLM's).

    Raises ``FileNotFoundError`` naming the path when it holds no tokenizer files.
    """
    from transformers import AutoTokenizer

    path = Path(path)
    if not path.is_dir() or not any(
        (path / f).exists() for f in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")
    ):
        raise FileNotFoundError(
            f"{path}: no tokenizer here (expected tokenizer.json, tokenizer.model or tokenizer_config.json)"
        )
    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
