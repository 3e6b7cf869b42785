"""Random-weight stand-ins of the paper's pretrained files, in their real on-disk formats (``semcc shape-files``).

Semantic-CC (paper Eq. 1) starts from three pretrained parts: SAM's ViT-L image encoder (Sec. III-B,
``sam_vit_l_0b3195.pth``), MiniGPT-4's BLIP-2 Q-Former and ``llama_proj`` (Sec. III-E,
``blip2_pretrained_flant5xxl.pth``, ``pretrained_minigpt4.pth``) and Vicuna-7B (Sec. III-E, a Hugging Face
folder). None of them can be downloaded here, and at full depth they do not fit a small CPU machine.
:func:`write_paper_shape_checkpoints` writes files with the same formats, key names, dtypes and (with
``widths="paper"``) the same widths, but random weights and only a few layers, so that the paper config's
real loaders (:func:`semcc.models.encoder.load_sam_image_encoder`,
:func:`semcc.models.checkpoints.load_qformer_checkpoint`, :func:`semcc.models.checkpoints.load_llama_proj`,
``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained``) can be exercised on a CPU.
``widths="small"`` keeps the formats with narrow widths for unit tests. The widths of both sets are in
:data:`SHAPES`.

Files written to ``OUT``:

* ``sam_vit_l.pth``: a flat fp32 state dict of a whole ``segment_anything`` ``Sam`` (as the official
  ``sam_vit_l_0b3195.pth``): ``image_encoder.*`` (``ImageEncoderViT`` at the 1024 px pre-training size, so
  ``pos_embed`` is ``[1, 64, 64, C]`` and the global block's ``rel_pos_h/w`` ``[127, C/heads]``;
  ``global_attn_indexes = (vit_depth - 1,)``), ``prompt_encoder.*`` and ``mask_decoder.*``
  (``PromptEncoder``, ``MaskDecoder`` with a ``TwoWayTransformer``, built from ``segment_anything.modeling``
  without ``torchvision``, see :mod:`semcc.models._sam`).
* ``blip2_pretrained_flant5xxl.pth``: LAVIS format ``{"model": {...}}``: ``Qformer.bert.embeddings.*``
  (word / position embeddings, ``position_ids``, ``LayerNorm``), ``Qformer.bert.encoder.layer.N.*`` (self
  attention, cross attention to the 1408-wide vision features every 2nd layer, the query FFN
  ``intermediate_query`` / ``output_query`` and the text FFN ``intermediate`` / ``output``),
  ``Qformer.cls.predictions.*`` (decoder weight tied to the word embeddings, as in LAVIS),
  ``query_tokens`` and ``ln_vision``. The query-path keys are ``transformers.Blip2QFormerModel``'s state dict
  under LAVIS names (the inverse of :func:`semcc.models.checkpoints.map_lavis_qformer_keys`). The real file
  may hold further LAVIS parts (e.g. a ``t5_proj``) that semcc ignores; they are not written.
* ``pretrained_minigpt4.pth``: ``{"model": {"llama_proj.weight", "llama_proj.bias"}}`` (MiniGPT-4).
* ``vicuna-7b/``: a ``LlamaForCausalLM`` saved by ``save_pretrained`` (safetensors, float16 like Vicuna's
  stored weights; built directly in float16) and a byte-level BPE tokenizer trained here on a small corpus
  (instruction prompts, no-change sentences, the MiniGPT-4 template, LEVIR-like captions) with ``<unk>`` = 0,
  ``<s>`` = 1, ``</s>`` = 2, adding ``<s>`` in front like Llama's tokenizer; no text is ever out of
  vocabulary; ``"###"`` is one token. The corpus runs out of merges after a few hundred entries; the vocabulary
  is padded to the model's (32000 at paper widths) with filler words (``w0``, ``w1``, ...) that encoding never
  produces but decoding renders, so every id a random LLM generates decodes to a word.
* ``paper_shape.json``: the arguments, the widths and the file sizes, written last: a later call with the
  same arguments finds it and does nothing; an interrupted write (no ``paper_shape.json``) is redone.

Weights: each part is drawn from its own seed (``seed`` + part number), so changing one part's depth does
not change the others. SAM and Q-Former tensors are their modules' initialisation plus N(0, 0.02) noise
(no zero ``rel_pos`` / ``pos_embed``); the LLM uses ``transformers``' Llama initialisation.
"""

from __future__ import annotations

import copy
import json
import os
import random
import shutil
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "FILE_NAMES",
    "MARKER",
    "SHAPES",
    "cc_head_kwargs",
    "file_size",
    "is_written",
    "sam_encoder_kwargs",
    "tokenizer_corpus",
    "write_paper_shape_checkpoints",
]

#: Widths of the paper's parts (``"paper"``: SAM ViT-L, BLIP-2 / MiniGPT-4 Q-Former on BERT-base, Vicuna-7B)
#: and of a narrow set with the same formats for unit tests (``"small"``). Depths are arguments.
SHAPES: dict[str, dict[str, dict[str, Any]]] = {
    "paper": {
        "sam": {
            "img_size": 1024, "patch_size": 16, "embed_dim": 1024, "num_heads": 16, "mlp_ratio": 4.0,
            "window_size": 14, "out_chans": 256, "mask_in_chans": 16, "decoder_depth": 2, "decoder_mlp_dim": 2048,
            "decoder_heads": 8, "num_multimask_outputs": 3, "iou_head_depth": 3, "iou_head_hidden_dim": 256,
        },
        "qformer": {
            "hidden_size": 768, "num_heads": 12, "intermediate_size": 3072, "encoder_width": 1408,
            "num_query_tokens": 32, "cross_attention_frequency": 2, "vocab_size": 30523,
            "max_position_embeddings": 512,
        },
        "llm": {
            "hidden_size": 4096, "num_heads": 32, "num_kv_heads": 32, "intermediate_size": 11008,
            "vocab_size": 32000, "max_position_embeddings": 2048, "rms_norm_eps": 1e-6,
        },
    },
}
#: The narrow set: the paper's formats and every other setting, these widths.
SHAPES["small"] = {
    part: {**SHAPES["paper"][part], **narrow}
    for part, narrow in {
        "sam": {"embed_dim": 64, "num_heads": 4, "out_chans": 32, "mask_in_chans": 4, "decoder_mlp_dim": 64,
                "decoder_heads": 2, "iou_head_hidden_dim": 32},
        "qformer": {"hidden_size": 64, "num_heads": 4, "intermediate_size": 128, "encoder_width": 96,
                    "vocab_size": 512},
        "llm": {"hidden_size": 64, "num_heads": 4, "num_kv_heads": 4, "intermediate_size": 128, "vocab_size": 512},
    }.items()
}

#: File (or folder) names under ``OUT``, as the paper config names them (``sam_vit_l.pth`` stands for
#: ``sam_vit_l_0b3195.pth``, whose suffix is the real file's hash).
FILE_NAMES: dict[str, str] = {
    "sam": "sam_vit_l.pth",
    "qformer": "blip2_pretrained_flant5xxl.pth",
    "llama_proj": "pretrained_minigpt4.pth",
    "llm": "vicuna-7b",
}
MARKER = "paper_shape.json"
_PARTIAL = ".paper_shape.writing"
_FORMAT = 2
_NOISE = 0.02
_UNK, _BOS, _EOS = "<unk>", "<s>", "</s>"


# ------------------------------------------------------------------------------------------- kwargs


def sam_encoder_kwargs(widths: str = "paper", vit_depth: int = 2) -> dict[str, Any]:
    """Keyword arguments of :class:`~semcc.models.encoder.BiTemporalSAMEncoder` matching ``sam_vit_l.pth``
    (the ``vit`` sizes; all but ``img_size``, which is the input size: the loader resizes the 1024 px grids to it)."""
    s = SHAPES[_check_widths(widths)]["sam"]
    return {"vit": {
        "patch_size": s["patch_size"], "embed_dim": s["embed_dim"], "depth": vit_depth, "num_heads": s["num_heads"],
        "mlp_ratio": s["mlp_ratio"], "window_size": s["window_size"], "global_attn_indexes": (vit_depth - 1,),
        "out_chans": s["out_chans"],
    }}


def cc_head_kwargs(widths: str = "paper", qformer_layers: int = 2, qformer_checkpoint: str | None = None
                   ) -> dict[str, Any]:
    """Keyword arguments of :class:`~semcc.models.cc_head.ChangeCaptionHead` matching
    ``blip2_pretrained_flant5xxl.pth`` and ``pretrained_minigpt4.pth``: ``vision_width`` (SAM's width) and the
    ``qformer`` sizes, reading ``qformer_checkpoint`` when given."""
    shapes = SHAPES[_check_widths(widths)]
    q = shapes["qformer"]
    return {
        "vision_width": shapes["sam"]["embed_dim"],
        "qformer": {
            "hidden_size": q["hidden_size"], "layers": qformer_layers, "heads": q["num_heads"],
            "intermediate_size": q["intermediate_size"], "encoder_width": q["encoder_width"],
            "num_query_tokens": q["num_query_tokens"], "cross_attention_frequency": q["cross_attention_frequency"],
            "checkpoint": qformer_checkpoint,
        },
    }


def _check_widths(widths: str) -> str:
    if widths not in SHAPES:
        raise ValueError(f"widths must be one of {sorted(SHAPES)}, got {widths!r}")
    return widths


# ------------------------------------------------------------------------------------------- parts


def _perturb(module: nn.Module) -> None:
    """Add N(0, 0.02) to every floating parameter (no zero-initialised tensors left)."""
    with torch.no_grad():
        for p in module.parameters():
            if p.is_floating_point():
                p.add_(torch.randn_like(p) * _NOISE)


def _sam_state(widths: str, vit_depth: int) -> dict[str, torch.Tensor]:
    """A whole random ``Sam`` (image encoder, prompt encoder, mask decoder) as ``sam_vit_l_0b3195.pth``."""
    from semcc.models._sam import load_sam_modeling

    load_sam_modeling()  # registers segment_anything without its torchvision-importing __init__
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    s = SHAPES[widths]["sam"]
    grid = s["img_size"] // s["patch_size"]
    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=s["img_size"], patch_size=s["patch_size"], in_chans=3, embed_dim=s["embed_dim"],
            depth=vit_depth, num_heads=s["num_heads"], mlp_ratio=s["mlp_ratio"], out_chans=s["out_chans"],
            qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6), act_layer=nn.GELU, use_abs_pos=True,
            use_rel_pos=True, rel_pos_zero_init=True, window_size=s["window_size"],
            global_attn_indexes=(vit_depth - 1,),
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=s["out_chans"], image_embedding_size=(grid, grid),
            input_image_size=(s["img_size"], s["img_size"]), mask_in_chans=s["mask_in_chans"],
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=s["num_multimask_outputs"],
            transformer=TwoWayTransformer(
                depth=s["decoder_depth"], embedding_dim=s["out_chans"], mlp_dim=s["decoder_mlp_dim"],
                num_heads=s["decoder_heads"],
            ),
            transformer_dim=s["out_chans"], iou_head_depth=s["iou_head_depth"],
            iou_head_hidden_dim=s["iou_head_hidden_dim"],
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    _perturb(sam)
    return {k: v.detach().clone().contiguous() for k, v in sam.state_dict().items()}


def _lavis_name(key: str) -> str:
    """``Blip2QFormerModel`` state-dict name -> LAVIS ``Qformer.bert.*`` name (inverse of semcc's mapping)."""
    if key.startswith("layernorm."):
        return "Qformer.bert.embeddings.LayerNorm." + key.rsplit(".", 1)[1]
    if not key.startswith("encoder."):
        raise ValueError(f"unexpected Blip2QFormerModel key {key!r}")
    key = key.replace(".attention.attention.", ".attention.self.")
    key = key.replace(".crossattention.attention.", ".crossattention.self.")
    return "Qformer.bert." + key


def _qformer_state(widths: str, qformer_layers: int) -> dict[str, torch.Tensor]:
    """BLIP-2's Q-Former under LAVIS names, with the text branch, ``query_tokens`` and ``ln_vision``."""
    from transformers import Blip2QFormerConfig, Blip2QFormerModel

    q = SHAPES[widths]["qformer"]
    h, inter, vocab, positions = q["hidden_size"], q["intermediate_size"], q["vocab_size"], q["max_position_embeddings"]
    config = Blip2QFormerConfig(  # as ChangeCaptionHead builds it
        hidden_size=h, num_hidden_layers=qformer_layers, num_attention_heads=q["num_heads"],
        intermediate_size=inter, encoder_hidden_size=q["encoder_width"],
        cross_attention_frequency=q["cross_attention_frequency"], use_qformer_text_input=False,
        vocab_size=vocab, max_position_embeddings=positions,
    )
    model = Blip2QFormerModel(config)
    _perturb(model)
    query = {_lavis_name(k): v.detach().clone() for k, v in model.state_dict().items()}

    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(*shape) * _NOISE

    def layer_norm(prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}.weight": 1 + normal(h), f"{prefix}.bias": normal(h)}

    emb = "Qformer.bert.embeddings"
    word = normal(vocab, h)
    state: dict[str, torch.Tensor] = {
        f"{emb}.position_ids": torch.arange(positions).unsqueeze(0),
        f"{emb}.word_embeddings.weight": word,
        f"{emb}.position_embeddings.weight": normal(positions, h),
        f"{emb}.LayerNorm.weight": query.pop(f"{emb}.LayerNorm.weight"),
        f"{emb}.LayerNorm.bias": query.pop(f"{emb}.LayerNorm.bias"),
    }
    for i in range(qformer_layers):
        layer = f"Qformer.bert.encoder.layer.{i}"
        state.update({k: query.pop(k) for k in [k for k in query if k.startswith(layer + ".")]})
        state.update({  # the text FFN (LAVIS copies the query FFN from it; random here)
            f"{layer}.intermediate.dense.weight": normal(inter, h), f"{layer}.intermediate.dense.bias": normal(inter),
            f"{layer}.output.dense.weight": normal(h, inter), f"{layer}.output.dense.bias": normal(h),
            **layer_norm(f"{layer}.output.LayerNorm"),
        })
    if query:
        raise RuntimeError(f"Q-Former keys left unplaced: {sorted(query)}")
    bias = normal(vocab)
    state.update({
        "Qformer.cls.predictions.bias": bias,
        "Qformer.cls.predictions.transform.dense.weight": normal(h, h),
        "Qformer.cls.predictions.transform.dense.bias": normal(h),
        **layer_norm("Qformer.cls.predictions.transform.LayerNorm"),
        "Qformer.cls.predictions.decoder.weight": word,  # tied to the word embeddings, as in LAVIS
        "Qformer.cls.predictions.decoder.bias": bias,
        "query_tokens": normal(1, q["num_query_tokens"], h),
        "ln_vision.weight": 1 + normal(q["encoder_width"]),
        "ln_vision.bias": normal(q["encoder_width"]),
    })
    return state


def _llama_proj_state(widths: str) -> dict[str, torch.Tensor]:
    """MiniGPT-4's ``llama_proj``: ``Linear(qformer_hidden -> llm_hidden)``."""
    shapes = SHAPES[widths]
    proj = nn.Linear(shapes["qformer"]["hidden_size"], shapes["llm"]["hidden_size"])
    return {f"llama_proj.{k}": v.detach().clone() for k, v in proj.state_dict().items()}


_CAPTION_PARTS = {
    "subject": (
        "a house", "a building", "two houses", "three buildings", "many houses", "several villas", "some buildings",
        "a large building", "rows of houses", "a road", "a new road", "two roads", "a curved road", "some trees",
        "a parking lot", "a swimming pool", "a playground", "the bareland", "the vegetation", "a few small houses",
    ),
    "verb": (
        "is built", "are built", "appears", "appear", "has been constructed", "have been constructed",
        "is removed", "are removed", "disappears", "has been demolished", "is replaced by a road",
        "are replaced by houses", "emerges", "is extended", "is widened",
    ),
    "place": (
        "at the top", "at the bottom", "on the left", "on the right", "in the center", "in the top left corner",
        "in the top right corner", "in the bottom left corner", "in the bottom right corner", "along the road",
        "beside the river", "near the woods", "on the bareland", "in the middle of the scene", "",
    ),
}


def tokenizer_corpus() -> list[str]:
    """Text the byte-level BPE is trained on: prompts, template, no-change sentences and LEVIR-like captions."""
    from semcc.data.text import INSTRUCTIONS, NO_CHANGE_SENTENCES
    from semcc.models.cc_head import PROMPT_TEMPLATE

    rng = random.Random(0)
    captions = set()
    while len(captions) < 400:
        subject, verb, place = (rng.choice(_CAPTION_PARTS[k]) for k in ("subject", "verb", "place"))
        captions.add(" ".join(f"{subject} {verb} {place}".split()))
    corpus = [*INSTRUCTIONS, *NO_CHANGE_SENTENCES]
    corpus += [PROMPT_TEMPLATE.format(instruction=ins) + "there is no difference###" for ins in INSTRUCTIONS]
    corpus += sorted(captions)
    corpus += [c.capitalize() + "." for c in sorted(captions)[:50]]
    return corpus


def _write_tokenizer(directory: Path, vocab_size: int, model_max_length: int) -> int:
    """Train a byte-level BPE on :func:`tokenizer_corpus` and save it as a ``transformers`` tokenizer folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[_UNK, _BOS, _EOS], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(tokenizer_corpus(), trainer)
    if [tok.token_to_id(t) for t in (_UNK, _BOS, _EOS)] != [0, 1, 2]:
        raise RuntimeError("special tokens did not get ids 0, 1, 2")
    # Pad the vocabulary to the model's with filler words ("Ġw123": decoded as " w123", never produced by
    # encoding), so that every id a random LLM generates decodes to a word, as with Vicuna's 32,000 pieces.
    data = json.loads(tok.to_str())
    vocab = data["model"]["vocab"]
    for i in range(vocab_size - len(vocab)):
        vocab[f"\u0120w{i}"] = len(vocab)
    tok = Tokenizer.from_str(json.dumps(data))
    tok.post_processor = processors.TemplateProcessing(  # Llama adds <s> in front (add_bos_token)
        single=f"{_BOS} $A", pair=f"{_BOS} $A {_BOS} $B", special_tokens=[(_BOS, 1)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=_BOS, eos_token=_EOS, unk_token=_UNK, model_max_length=model_max_length
    )
    fast.save_pretrained(str(directory))
    return len(fast)


def _write_llm(directory: Path, widths: str, llm_layers: int) -> int:
    """Vicuna-7B's architecture with ``llm_layers`` layers, built and saved in float16; plus the tokenizer."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    s = SHAPES[widths]["llm"]
    config = LlamaConfig(
        vocab_size=s["vocab_size"], hidden_size=s["hidden_size"], intermediate_size=s["intermediate_size"],
        num_hidden_layers=llm_layers, num_attention_heads=s["num_heads"], num_key_value_heads=s["num_kv_heads"],
        max_position_embeddings=s["max_position_embeddings"], rms_norm_eps=s["rms_norm_eps"], hidden_act="silu",
        initializer_range=0.02, tie_word_embeddings=False, pad_token_id=0, bos_token_id=1, eos_token_id=2,
    )
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float16)  # allocated in float16 once
    model.save_pretrained(str(directory))
    del model
    return _write_tokenizer(directory, s["vocab_size"], s["max_position_embeddings"])


# -------------------------------------------------------------------------------------------- files


def file_size(path: str | Path) -> int:
    """Bytes of a file, or of all files under a folder."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _save(state: dict[str, Any], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _paths(out: Path) -> dict[str, Path]:
    return {part: out / name for part, name in FILE_NAMES.items()}


def _arguments(vit_depth: int, qformer_layers: int, llm_layers: int, widths: str, seed: int) -> dict[str, Any]:
    return {"format": _FORMAT, "vit_depth": int(vit_depth), "qformer_layers": int(qformer_layers),
            "llm_layers": int(llm_layers), "widths": widths, "seed": int(seed)}


def _is_complete(out: Path, arguments: dict[str, Any], paths: dict[str, Path]) -> bool:
    marker = out / MARKER
    if not marker.is_file() or (out / _PARTIAL).exists():
        return False
    try:
        recorded = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return recorded.get("arguments") == arguments and all(p.exists() for p in paths.values())


def is_written(out: str | Path, *, vit_depth: int = 2, qformer_layers: int = 2, llm_layers: int = 2,
               widths: str = "paper", seed: int = 0) -> bool:
    """Whether ``out`` holds a complete copy written with these arguments (a write would do nothing)."""
    out = Path(out).expanduser()
    return _is_complete(out, _arguments(vit_depth, qformer_layers, llm_layers, widths, seed), _paths(out))


def write_paper_shape_checkpoints(
    out: str | Path,
    *,
    vit_depth: int = 2,
    qformer_layers: int = 2,
    llm_layers: int = 2,
    widths: str = "paper",
    seed: int = 0,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write random checkpoints of SAM ViT-L, the BLIP-2 Q-Former, ``llama_proj`` and Vicuna-7B to ``out``.

    Real formats and key names (see the module docstring); ``widths`` ``"paper"`` (real widths) or
    ``"small"`` (:data:`SHAPES`); ``vit_depth`` SAM blocks (the last one global), ``qformer_layers`` Q-Former
    layers, ``llm_layers`` Llama layers. Returns ``{"sam", "qformer", "llama_proj", "llm"}`` -> path (the LLM
    is a folder holding the tokenizer too).

    Nothing is written when ``out/paper_shape.json`` records the same arguments and ``overwrite`` is false.
    Files of another origin (``out`` without this function's marker) are never replaced unless
    ``overwrite``: :class:`FileExistsError` names them. With ``overwrite`` the ``vicuna-7b`` folder is
    replaced as a whole.
    """
    _check_widths(widths)
    for name, value in (("vit_depth", vit_depth), ("qformer_layers", qformer_layers), ("llm_layers", llm_layers)):
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    out = Path(out)
    paths = _paths(out)
    arguments = _arguments(vit_depth, qformer_layers, llm_layers, widths, seed)
    if not overwrite and _is_complete(out, arguments, paths):
        return paths
    marker, partial_marker = out / MARKER, out / _PARTIAL
    ours = marker.exists() or partial_marker.exists()
    foreign = [str(p) for p in paths.values() if p.exists()]
    if foreign and not ours and not overwrite:
        raise FileExistsError(f"{out} holds files not written by semcc shape-files (pass overwrite=True to "
                              f"replace them): {', '.join(foreign)}")
    out.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    partial_marker.write_text(json.dumps(arguments))
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        _save(_sam_state(widths, vit_depth), paths["sam"])
        torch.manual_seed(seed + 1)
        _save({"model": _qformer_state(widths, qformer_layers)}, paths["qformer"])
        torch.manual_seed(seed + 2)
        _save({"model": _llama_proj_state(widths)}, paths["llama_proj"])
        torch.manual_seed(seed + 3)
        tmp_dir = out / (FILE_NAMES["llm"] + ".tmp")
        shutil.rmtree(tmp_dir, ignore_errors=True)
        tokenizer_size = _write_llm(tmp_dir, widths, llm_layers)
        shutil.rmtree(paths["llm"], ignore_errors=True)
        os.replace(tmp_dir, paths["llm"])
    summary = {
        "what": "random-weight checkpoints of Semantic-CC's pretrained parts in their real formats (semcc.paper_shape)",
        "arguments": arguments,
        "shapes": copy.deepcopy(SHAPES[widths]),
        "global_attn_indexes": [vit_depth - 1],
        "tokenizer_vocab_size": tokenizer_size,
        "files": {part: {"path": FILE_NAMES[part], "bytes": file_size(p)} for part, p in paths.items()},
        "seconds": round(time.perf_counter() - start, 2),
    }
    marker.write_text(json.dumps(summary, indent=2) + "\n")  # last: its presence means the write finished
    partial_marker.unlink()
    return paths
