"""Checkpoint loading through the real code: SAM .pth, LAVIS Q-Former, MiniGPT-4 llama_proj, HF LLM dir."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from semcc.data.text import build_word_tokenizer
from semcc.models._sam import ImageEncoderViT
from semcc.models.cc_head import ChangeCaptionHead
from semcc.models.checkpoints import CheckpointError
from semcc.models.encoder import BiTemporalSAMEncoder
from semcc.models.presets import build_semantic_cc

CAPTIONS = ["a new road is built", "there is no difference", "two houses appear at the top"]
SAM_KW = {"patch_size": 16, "embed_dim": 32, "depth": 4, "num_heads": 2, "window_size": 2,
          "global_attn_indexes": (1, 3), "out_chans": 16}
QFORMER_KW = {"hidden_size": 32, "layers": 2, "heads": 2, "intermediate_size": 64, "encoder_width": 48,
              "num_query_tokens": 4}
HEAD_KW = {"vision_width": 32, "qformer": QFORMER_KW,
           "llm": {"hidden_size": 32, "layers": 1, "heads": 2, "intermediate_size": 64}}


def head_kw(**qformer: object) -> dict:
    """``HEAD_KW`` with Q-Former fields changed (e.g. ``checkpoint``)."""
    return {**HEAD_KW, "qformer": {**QFORMER_KW, **qformer}}


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tok") / "tok"
    build_word_tokenizer(CAPTIONS, path)
    return path


def randomize(module: torch.nn.Module) -> None:
    torch.manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.1)


def save_official_sam(path: Path, img_size: int = 128, **kw) -> ImageEncoderViT:
    """A random SAM ViT saved the way ``sam_vit_*.pth`` is: ``image_encoder.*`` + the other SAM parts."""
    vit = ImageEncoderViT(img_size=img_size, use_rel_pos=True, **{**SAM_KW, **kw})
    randomize(vit)
    state = {f"image_encoder.{k}": v for k, v in vit.state_dict().items()}
    state["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"] = torch.randn(2, 128)
    state["mask_decoder.iou_token.weight"] = torch.randn(1, 256)
    torch.save(state, path)
    return vit


# ------------------------------------------------------------------------------------------------ SAM


def test_sam_checkpoint_resized_and_loaded(tmp_path: Path) -> None:
    path = tmp_path / "sam_vit_tiny.pth"
    saved = save_official_sam(path, img_size=128)  # grid 8; the encoder below is built at 64 px (grid 4)
    enc = BiTemporalSAMEncoder(img_size=64, checkpoint=str(path), vit=SAM_KW)
    vit = enc.vit
    expected_pos = F.interpolate(saved.pos_embed.permute(0, 3, 1, 2), size=(4, 4), mode="bicubic",
                                 align_corners=False).permute(0, 2, 3, 1)
    torch.testing.assert_close(vit.pos_embed, expected_pos)
    for i in (1, 3):  # global blocks: rel_pos 2*8-1 = 15 -> 2*4-1 = 7 rows, linear
        src = saved.blocks[i].attn.rel_pos_h
        expected = F.interpolate(src.t()[None], size=7, mode="linear", align_corners=False)[0].t()
        torch.testing.assert_close(vit.blocks[i].attn.rel_pos_h, expected)
        assert vit.blocks[i].attn.rel_pos_w.shape == (7, SAM_KW["embed_dim"] // SAM_KW["num_heads"])
    torch.testing.assert_close(vit.blocks[0].attn.rel_pos_w, saved.blocks[0].attn.rel_pos_w)  # windowed
    torch.testing.assert_close(vit.blocks[2].attn.qkv.base_layer.weight, saved.blocks[2].attn.qkv.weight)
    torch.testing.assert_close(vit.neck[2].weight, saved.neck[2].weight)
    assert any("lora_" in n for n, _ in vit.named_parameters())  # LoRA injected after loading


def test_sam_checkpoint_same_size_reproduces_sam(tmp_path: Path) -> None:
    path = tmp_path / "sam.pth"
    saved = save_official_sam(path, img_size=64).eval()
    enc = BiTemporalSAMEncoder(img_size=64, checkpoint=str(path), bcsf_blocks="none", vit=SAM_KW).eval()
    a, b = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        f = enc(a, b)
        torch.testing.assert_close(f.cd_1, saved(a))  # LoRA B = 0: the pretrained SAM exactly
        torch.testing.assert_close(f.cd_2, saved(b))


def test_sam_checkpoint_errors_name_file_and_keys(tmp_path: Path) -> None:
    good = tmp_path / "sam.pth"
    save_official_sam(good)
    state = torch.load(good, weights_only=True)

    missing = tmp_path / "missing.pth"
    torch.save({k: v for k, v in state.items() if k != "image_encoder.blocks.2.mlp.lin1.weight"}, missing)
    with pytest.raises(CheckpointError, match=r"missing keys: image_encoder\.blocks\.2\.mlp\.lin1\.weight") as err:
        BiTemporalSAMEncoder(img_size=64, checkpoint=str(missing), vit=SAM_KW)
    assert str(missing) in str(err.value)

    wide = tmp_path / "wide.pth"
    save_official_sam(wide, embed_dim=64)
    with pytest.raises(CheckpointError, match=r"mismatched shapes: .*image_encoder\.") as err:
        BiTemporalSAMEncoder(img_size=64, checkpoint=str(wide), vit=SAM_KW)
    assert str(wide) in str(err.value)

    deep = tmp_path / "deep.pth"
    save_official_sam(deep, depth=5)
    with pytest.raises(CheckpointError, match=r"unexpected keys: image_encoder\.blocks\.4\."):
        BiTemporalSAMEncoder(img_size=64, checkpoint=str(deep), vit=SAM_KW)

    other = tmp_path / "not_sam.pth"
    torch.save({"model": {"layer.weight": torch.zeros(2)}}, other)
    with pytest.raises(CheckpointError, match=r"not_sam\.pth: no 'image_encoder\.\*' keys"):
        BiTemporalSAMEncoder(img_size=64, checkpoint=str(other), vit=SAM_KW)

    with pytest.raises(CheckpointError, match="not found"):
        BiTemporalSAMEncoder(img_size=64, checkpoint=str(tmp_path / "nope.pth"), vit=SAM_KW)

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"garbage\.pth: cannot read"):
        BiTemporalSAMEncoder(img_size=64, checkpoint=str(garbage), vit=SAM_KW)


# ------------------------------------------------------------------------------------------- Q-Former


def lavis_qformer_state(head: ChangeCaptionHead) -> dict[str, torch.Tensor]:
    """``head``'s Q-Former under LAVIS BLIP-2 names, plus the text branch and other parts LAVIS files hold."""
    state: dict[str, torch.Tensor] = {}
    for key, value in head.qformer.state_dict().items():
        if key.startswith("layernorm."):
            lavis = "Qformer.bert.embeddings.LayerNorm." + key.split(".")[-1]
        else:  # encoder.layer.N.(attention|crossattention).attention.* -> ...self.*
            lavis = "Qformer.bert." + key.replace("attention.attention.", "attention.self.")
        state[lavis] = value.clone()
    state["query_tokens"] = head.query_tokens.detach().clone()
    state["ln_vision.weight"] = head.ln_vision.weight.detach().clone()
    state["ln_vision.bias"] = head.ln_vision.bias.detach().clone()
    h = head.qformer.config.hidden_size
    state["Qformer.bert.embeddings.word_embeddings.weight"] = torch.randn(30523, 4)
    state["Qformer.bert.embeddings.position_embeddings.weight"] = torch.randn(512, h)
    state["Qformer.bert.embeddings.position_ids"] = torch.arange(512)[None]
    state["Qformer.bert.encoder.layer.0.intermediate.dense.weight"] = torch.randn(2 * h, h)
    state["Qformer.bert.encoder.layer.0.output.dense.weight"] = torch.randn(h, 2 * h)
    state["Qformer.cls.predictions.bias"] = torch.randn(4)
    state["visual_encoder.blocks.0.norm1.weight"] = torch.randn(4)
    state["llama_proj.weight"] = torch.randn(4, h)
    return state


def test_qformer_lavis_checkpoint_loads(tmp_path: Path, tok_dir: Path) -> None:
    torch.manual_seed(0)
    source = ChangeCaptionHead(tokenizer=str(tok_dir), **HEAD_KW).eval()
    randomize(source.qformer)
    with torch.no_grad():
        source.query_tokens.normal_()
        source.ln_vision.weight.normal_()
    path = tmp_path / "blip2_pretrained.pth"
    torch.save({"model": lavis_qformer_state(source)}, path)
    torch.manual_seed(5)
    head = ChangeCaptionHead(tokenizer=str(tok_dir), **head_kw(checkpoint=str(path))).eval()
    saved = torch.load(path, weights_only=True)["model"]
    q = head.qformer.encoder.layer
    torch.testing.assert_close(q[0].attention.attention.query.weight,
                               saved["Qformer.bert.encoder.layer.0.attention.self.query.weight"])
    torch.testing.assert_close(q[0].crossattention.attention.key.weight,
                               saved["Qformer.bert.encoder.layer.0.crossattention.self.key.weight"])
    torch.testing.assert_close(q[1].output_query.LayerNorm.bias,
                               saved["Qformer.bert.encoder.layer.1.output_query.LayerNorm.bias"])
    torch.testing.assert_close(head.qformer.layernorm.weight, saved["Qformer.bert.embeddings.LayerNorm.weight"])
    torch.testing.assert_close(head.query_tokens, saved["query_tokens"])
    torch.testing.assert_close(head.ln_vision.weight, saved["ln_vision.weight"])
    x = torch.randn(2, 16, QFORMER_KW["encoder_width"])
    with torch.no_grad():
        torch.testing.assert_close(head._qformer(x), source._qformer(x))
    assert not head.query_tokens.requires_grad  # frozen after loading (Sec. IV-C)


def test_qformer_checkpoint_errors(tmp_path: Path, tok_dir: Path) -> None:
    source = ChangeCaptionHead(tokenizer=str(tok_dir), **HEAD_KW)
    state = lavis_qformer_state(source)
    gone = "Qformer.bert.encoder.layer.1.attention.self.value.bias"
    bad = tmp_path / "bad_qformer.pth"
    torch.save({k: v for k, v in state.items() if k != gone}, bad)
    with pytest.raises(CheckpointError, match=r"missing keys: qformer\.encoder\.layer\.1\.attention\.attention"
                       r"\.value\.bias") as err:
        ChangeCaptionHead(tokenizer=str(tok_dir), **head_kw(checkpoint=str(bad)))
    assert str(bad) in str(err.value)
    three = ChangeCaptionHead(tokenizer=str(tok_dir), **head_kw(layers=3))
    extra = tmp_path / "three_layers.pth"
    torch.save(lavis_qformer_state(three), extra)
    with pytest.raises(CheckpointError, match=r"unexpected keys: qformer\.encoder\.layer\.2\."):
        ChangeCaptionHead(tokenizer=str(tok_dir), **head_kw(checkpoint=str(extra)))
    proj_only = tmp_path / "minigpt4_proj_only.pth"
    torch.save({"model": {"llama_proj.weight": torch.zeros(2, 2)}}, proj_only)
    with pytest.raises(CheckpointError, match="no LAVIS Q-Former keys"):
        ChangeCaptionHead(tokenizer=str(tok_dir), **head_kw(checkpoint=str(proj_only)))


# ------------------------------------------------------------------------------------------ llama_proj


def test_llama_proj_checkpoint(tmp_path: Path, tok_dir: Path) -> None:
    weight, bias = torch.randn(32, 32), torch.randn(32)
    path = tmp_path / "prerained_minigpt4_7b.pth"
    torch.save({"model": {"llama_proj.weight": weight, "llama_proj.bias": bias}}, path)
    head = ChangeCaptionHead(tokenizer=str(tok_dir), llama_proj_checkpoint=str(path), **HEAD_KW)
    torch.testing.assert_close(head.llama_proj.weight, weight)
    torch.testing.assert_close(head.llama_proj.bias, bias)
    assert head.llama_proj.weight.requires_grad
    wrong = tmp_path / "wrong_proj.pth"
    torch.save({"model": {"llama_proj.weight": torch.randn(64, 32), "llama_proj.bias": bias}}, wrong)
    with pytest.raises(CheckpointError, match=r"wrong_proj\.pth.*mismatched shapes: llama_proj\.weight"):
        ChangeCaptionHead(tokenizer=str(tok_dir), llama_proj_checkpoint=str(wrong), **HEAD_KW)


# ---------------------------------------------------------------------------------- LLM directory + all


def test_llm_directory_and_full_model_from_checkpoints(tmp_path: Path, tok_dir: Path) -> None:
    tok = build_word_tokenizer(CAPTIONS)
    llm_dir = tmp_path / "vicuna-tiny"
    torch.manual_seed(3)
    llm = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
    ))
    llm.save_pretrained(llm_dir)
    tok.save_pretrained(llm_dir)

    sam = tmp_path / "sam.pth"
    save_official_sam(sam, img_size=128)
    model = build_semantic_cc(
        "mini",
        img_size=64,
        encoder={"vit": SAM_KW, "checkpoint": str(sam)},
        neck={"num_heads": 2},
        cc_head={"vision_width": 32, "qformer": {**QFORMER_KW, "freeze": True},
                 "llm": {"path": str(llm_dir), "finetune": "lora"}},
    ).eval()
    head = model.cc_head
    assert head.tokenizer is not None and len(head.tokenizer) == len(tok)  # tokenizer from the LLM dir
    torch.testing.assert_close(head.llm.model.embed_tokens.weight, llm.model.embed_tokens.weight)
    torch.testing.assert_close(head.llm.model.layers[0].self_attn.q_proj.base_layer.weight,
                               llm.model.layers[0].self_attn.q_proj.weight)
    assert not head.llm.model.embed_tokens.weight.requires_grad
    a, b = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    out = model(a, b, captions=CAPTIONS[:2])
    assert torch.isfinite(out.cc_loss) and out.mask_logits.shape == (2, 1, 64, 64)
    caps = model.generate(a, b, max_new_tokens=5)
    assert len(caps) == 2 and all(isinstance(c, str) for c in caps)
    with pytest.raises(FileNotFoundError, match="missing-dir"):
        ChangeCaptionHead(tokenizer=str(tmp_path / "missing-dir"), **HEAD_KW)


def test_llm_device_resolution(monkeypatch) -> None:
    from semcc.models.llm import _llm_device

    monkeypatch.setenv("LOCAL_RANK", "3")
    assert _llm_device(None) is None and _llm_device("cpu") is None and _llm_device("cuda:1") == "cuda:1"
    assert _llm_device("local_rank") == ("cuda:3" if torch.cuda.is_available() else None)
