"""Caption normalisation, no-change sentences, prompts and the word-level tokenizer."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from semcc.data.text import (
    INSTRUCTIONS,
    NO_CHANGE_SENTENCES,
    build_word_tokenizer,
    is_no_change,
    load_tokenizer,
    normalize_caption,
    tokenize_caption,
)


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("Two houses are built on the bareland at the bottom .", "two houses are built on the bareland at the bottom"),
        ("  A T-shaped road,  appears!\n", "a t-shaped road appears"),
        ("the lower-right corner's trees (removed).", "the lower-right corner's trees removed"),
        ("-- no  change --", "no change"),
    ],
)
def test_normalize_caption(raw: str, normalised: str) -> None:
    assert normalize_caption(raw) == normalised
    assert tokenize_caption(raw) == normalised.split()


def test_no_change_sentences_match_real_levir(real_levir_dir: Path) -> None:
    with gzip.open(real_levir_dir / "LevirCCcaptions.json.gz", "rt") as f:
        images = json.load(f)["images"]
    first_unchanged = next(e for e in images if e["sentences"][0]["tokens"] == ["there", "is", "no", "difference"])
    assert tuple(" ".join(s["tokens"]) for s in first_unchanged["sentences"]) == NO_CHANGE_SENTENCES
    assert all(is_no_change(s + " .") for s in NO_CHANGE_SENTENCES)
    assert not is_no_change("two houses are built")
    assert len(INSTRUCTIONS) == 4 and all(i.endswith((".", "?")) for i in INSTRUCTIONS)


def test_word_tokenizer_round_trip(tmp_path: Path) -> None:
    captions = ["Two houses are built on the bareland.", "the scene is the same as before", "two roads appear"]
    tok = build_word_tokenizer(captions, tmp_path / "tok")
    assert (tmp_path / "tok/tokenizer.json").is_file()
    loaded = load_tokenizer(tmp_path / "tok")
    assert loaded.get_vocab() == tok.get_vocab()
    ids = loaded("two houses are built, on the bareland .")["input_ids"]
    assert loaded.unk_token_id not in ids
    assert loaded.decode(ids) == "two houses are built on the bareland"
    # Frequency order: "the" (4x, counting the instructions) precedes "two" (2x) precedes "roads" (1x).
    vocab = loaded.get_vocab()
    assert vocab["the"] < vocab["two"] < vocab["roads"]
    # The MiniGPT-4 template survives as single tokens, the instruction words are known.
    prompt = f"###Human: <Img><ImageHere></Img> {INSTRUCTIONS[1]} ###Assistant: "
    tokens = loaded.convert_ids_to_tokens(loaded(prompt)["input_ids"])
    assert tokens[:5] == ["###", "Human:", "<Img>", "<ImageHere>", "</Img>"]
    assert tokens[-2:] == ["###", "Assistant:"] and "<unk>" not in tokens
    assert loaded.convert_ids_to_tokens(loaded("a lake")["input_ids"])[1] == "<unk>"
    for special in ("pad", "eos", "bos", "unk"):
        assert getattr(loaded, f"{special}_token_id") is not None


def test_same_captions_same_ids(tmp_path: Path) -> None:
    captions = ["b a c", "c a", "a"]
    one = build_word_tokenizer(captions, tmp_path / "one").get_vocab()
    two = build_word_tokenizer(list(reversed(captions)), tmp_path / "two").get_vocab()
    assert one == two


def test_load_tokenizer_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no tokenizer here"):
        load_tokenizer(tmp_path)
