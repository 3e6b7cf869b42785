"""``semcc.paper_shape``: random checkpoints in the paper's real formats load through semcc's real loaders."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from transformers import AutoTokenizer

from semcc import paper_shape
from semcc.main import main
from semcc.models.cc_head import ChangeCaptionHead
from semcc.models.checkpoints import map_lavis_qformer_keys
from semcc.models.encoder import BiTemporalSAMEncoder
from semcc.paper_shape import (
    MARKER,
    SHAPES,
    cc_head_kwargs,
    file_size,
    sam_encoder_kwargs,
    write_paper_shape_checkpoints,
)

DEPTHS = {"vit_depth": 2, "qformer_layers": 2, "llm_layers": 2}
CAPTION = "Two new houses are built at the top-right, near the 3 trees!"


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_paper_shape_checkpoints(tmp_path_factory.mktemp("shape") / "ckpt", widths="small", **DEPTHS)


def llm_tensor(folder: Path, key: str) -> torch.Tensor:
    with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
        return f.get_tensor(key)


def mtimes(out: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}


def test_sam_file_format_and_loader(small: dict[str, Path]) -> None:
    s = SHAPES["small"]["sam"]
    state = torch.load(small["sam"], weights_only=True)
    assert all(isinstance(v, torch.Tensor) and (v.dtype == torch.float32) for v in state.values())
    head_dim = s["embed_dim"] // s["num_heads"]
    assert state["image_encoder.pos_embed"].shape == (1, 64, 64, s["embed_dim"])  # the 1024 px grid
    assert state["image_encoder.blocks.1.attn.rel_pos_h"].shape == (127, head_dim)  # global block
    assert state["image_encoder.blocks.0.attn.rel_pos_w"].shape == (2 * s["window_size"] - 1, head_dim)
    assert "image_encoder.blocks.2.attn.qkv.weight" not in state
    assert state["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"].shape == (2, s["out_chans"] // 2)
    assert state["mask_decoder.iou_token.weight"].shape == (1, s["out_chans"])
    assert any(k.startswith("mask_decoder.transformer.layers.1.") for k in state)
    assert not any(k.startswith("pixel_") for k in state)  # non-persistent in SAM, absent from the real file

    enc = BiTemporalSAMEncoder(img_size=256, checkpoint=str(small["sam"]), **sam_encoder_kwargs("small", 2))
    vit = enc.vit
    expected = F.interpolate(state["image_encoder.pos_embed"].permute(0, 3, 1, 2), size=(16, 16), mode="bicubic",
                             align_corners=False).permute(0, 2, 3, 1)
    torch.testing.assert_close(vit.pos_embed, expected)
    assert vit.blocks[1].attn.rel_pos_h.shape == (31, head_dim)  # 127 -> 2 * 16 - 1
    torch.testing.assert_close(vit.blocks[0].attn.rel_pos_w, state["image_encoder.blocks.0.attn.rel_pos_w"])
    qkv = state["image_encoder.blocks.1.attn.qkv.weight"]
    torch.testing.assert_close(vit.blocks[1].attn.qkv.base_layer.weight, qkv)
    torch.testing.assert_close(vit.neck[0].weight, state["image_encoder.neck.0.weight"])


def test_qformer_llama_proj_llm_load_through_head(small: dict[str, Path]) -> None:
    q = SHAPES["small"]["qformer"]
    lavis = torch.load(small["qformer"], weights_only=True)
    assert set(lavis) == {"model"}
    qf = lavis["model"]
    layer = "Qformer.bert.encoder.layer"
    assert qf[f"{layer}.0.crossattention.self.key.weight"].shape == (q["hidden_size"], q["encoder_width"])
    assert not any(k.startswith(f"{layer}.1.crossattention.") for k in qf)  # every 2nd layer
    assert qf["query_tokens"].shape == (1, 32, q["hidden_size"])
    assert qf["ln_vision.weight"].shape == (q["encoder_width"],)
    assert qf["Qformer.bert.embeddings.word_embeddings.weight"].shape == (q["vocab_size"], q["hidden_size"])
    assert qf["Qformer.bert.embeddings.position_ids"].shape == (1, q["max_position_embeddings"])
    for key in (f"{layer}.1.intermediate.dense.weight", f"{layer}.1.output.LayerNorm.bias",
                "Qformer.cls.predictions.decoder.weight", "Qformer.cls.predictions.transform.dense.weight"):
        assert key in qf
    mapped, unused = map_lavis_qformer_keys(qf)
    assert not unused and "qformer.encoder.layer.1.output_query.LayerNorm.weight" in mapped
    proj = torch.load(small["llama_proj"], weights_only=True)["model"]
    assert set(proj) == {"llama_proj.weight", "llama_proj.bias"}

    head = ChangeCaptionHead(
        llm={"path": str(small["llm"])}, llama_proj_checkpoint=str(small["llama_proj"]), end_marker="###",
        **cc_head_kwargs("small", 2, qformer_checkpoint=str(small["qformer"])),
    )
    torch.testing.assert_close(head.qformer.encoder.layer[0].crossattention.attention.value.weight,
                               qf[f"{layer}.0.crossattention.self.value.weight"])
    torch.testing.assert_close(head.qformer.layernorm.bias, qf["Qformer.bert.embeddings.LayerNorm.bias"])
    torch.testing.assert_close(head.query_tokens, qf["query_tokens"])
    torch.testing.assert_close(head.ln_vision.weight, qf["ln_vision.weight"])
    torch.testing.assert_close(head.llama_proj.weight, proj["llama_proj.weight"])
    dtype = head.llm.get_input_embeddings().weight.dtype
    assert dtype == torch.float32  # llm.dtype unset: float32 as documented, whatever the stored dtype
    saved = llm_tensor(small["llm"], "model.layers.1.self_attn.q_proj.weight")
    assert saved.dtype == torch.float16
    torch.testing.assert_close(head.llm.model.layers[1].self_attn.q_proj.base_layer.weight, saved.to(dtype))
    torch.testing.assert_close(head.llm.lm_head.weight, llm_tensor(small["llm"], "lm_head.weight").to(dtype))
    cfg = head.llm.config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.vocab_size) == (64, 2, SHAPES["small"]["llm"]["vocab_size"])
    assert head.end_marker_ids and len(head.tokenizer) <= cfg.vocab_size


def test_tokenizer(small: dict[str, Path]) -> None:
    tok = AutoTokenizer.from_pretrained(str(small["llm"]), local_files_only=True)
    assert len(tok) == SHAPES["small"]["llm"]["vocab_size"]  # trained (and padded if need be) to the model's
    assert (tok.unk_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    ids = tok(CAPTION).input_ids
    assert ids[0] == tok.bos_token_id and tok.unk_token_id not in ids  # Llama-style BOS, byte level: no OOV
    assert tok.decode(ids, skip_special_tokens=True) == CAPTION
    marker = tok("###", add_special_tokens=False).input_ids
    assert marker and tok.decode(marker) == "###"
    text = "###Human: <Img><ImageHere></Img> Describe it. ###Assistant: ünïcode ✓"
    assert tok.decode(tok(text, add_special_tokens=False).input_ids) == text


def test_second_call_is_a_noop_and_args_change_rewrites(small: dict[str, Path]) -> None:
    out = small["sam"].parent
    before = mtimes(out)
    again = write_paper_shape_checkpoints(out, widths="small", **DEPTHS)
    assert again == small and mtimes(out) == before
    recorded = json.loads((out / MARKER).read_text())
    assert recorded["arguments"]["widths"] == "small" and recorded["files"]["sam"]["bytes"] == file_size(small["sam"])

    other = out.parent / "seed1"
    a = write_paper_shape_checkpoints(other, widths="small", seed=1, **DEPTHS)
    sam_1 = torch.load(a["sam"], weights_only=True)["image_encoder.blocks.0.attn.qkv.weight"]
    write_paper_shape_checkpoints(other, widths="small", seed=0, **DEPTHS)  # other arguments: rewritten
    sam_0 = torch.load(a["sam"], weights_only=True)["image_encoder.blocks.0.attn.qkv.weight"]
    assert not torch.equal(sam_0, sam_1)
    reference = torch.load(small["sam"], weights_only=True)["image_encoder.blocks.0.attn.qkv.weight"]
    torch.testing.assert_close(sam_0, reference)  # same seed, same tensors


def test_interrupted_write_is_redone_and_foreign_files_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "ckpt"
    kw = {"widths": "small", "vit_depth": 1, "qformer_layers": 1, "llm_layers": 1}

    def interrupted(*args: object) -> int:
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(paper_shape, "_write_llm", interrupted)
        with pytest.raises(KeyboardInterrupt):
            write_paper_shape_checkpoints(out, **kw)
    assert (out / "sam_vit_l.pth").is_file() and not (out / MARKER).exists()
    paths = write_paper_shape_checkpoints(out, **kw)  # detected (no marker) and redone
    assert (out / MARKER).is_file() and (paths["llm"] / "model.safetensors").is_file()
    assert sorted(p.name for p in out.iterdir()) == sorted([*(p.name for p in paths.values()), MARKER])

    foreign = tmp_path / "real"
    foreign.mkdir()
    (foreign / "sam_vit_l.pth").write_bytes(b"someone else's file")
    with pytest.raises(FileExistsError, match=r"sam_vit_l\.pth"):
        write_paper_shape_checkpoints(foreign, widths="small")
    assert (foreign / "sam_vit_l.pth").read_bytes() == b"someone else's file"


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    argv = ["shape-files", "--out", str(out), "--widths", "small", "--llm-layers", "1", "--seed", "3"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    for name in ("sam_vit_l.pth", "blip2_pretrained_flant5xxl.pth", "pretrained_minigpt4.pth", "vicuna-7b", MARKER):
        assert str(out / name) in text
    recorded = json.loads((out / MARKER).read_text())["arguments"]
    assert (recorded["llm_layers"], recorded["seed"], recorded["vit_depth"]) == (1, 3, 2)
    assert main(argv) == 0
    assert "already complete" in capsys.readouterr().out
    assert main([]) == 0
    assert "shape-files" in capsys.readouterr().out


@pytest.mark.slow
def test_paper_widths(tmp_path: Path) -> None:
    start = time.perf_counter()
    paths = write_paper_shape_checkpoints(tmp_path / "paper", widths="paper", **DEPTHS)
    seconds = time.perf_counter() - start
    sizes = {k: file_size(p) for k, p in paths.items()}
    print(f"paper-width write: {seconds:.1f}s, sizes {sizes}")
    sam = torch.load(paths["sam"], weights_only=True, mmap=True)
    assert sam["image_encoder.pos_embed"].shape == (1, 64, 64, 1024)
    assert sam["image_encoder.blocks.1.attn.rel_pos_h"].shape == (127, 64)
    assert sam["image_encoder.blocks.0.attn.rel_pos_h"].shape == (27, 64)
    assert sam["image_encoder.neck.0.weight"].shape == (256, 1024, 1, 1)
    assert sam["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape == (2048, 256)
    qf = torch.load(paths["qformer"], weights_only=True, mmap=True)["model"]
    assert qf["Qformer.bert.encoder.layer.0.crossattention.self.key.weight"].shape == (768, 1408)
    assert qf["Qformer.bert.encoder.layer.1.intermediate_query.dense.weight"].shape == (3072, 768)
    assert qf["Qformer.bert.embeddings.word_embeddings.weight"].shape == (30523, 768)
    assert qf["query_tokens"].shape == (1, 32, 768) and qf["ln_vision.bias"].shape == (1408,)
    proj = torch.load(paths["llama_proj"], weights_only=True)["model"]
    assert proj["llama_proj.weight"].shape == (4096, 768) and proj["llama_proj.bias"].shape == (4096,)
    config = json.loads((paths["llm"] / "config.json").read_text())
    assert (config["hidden_size"], config["vocab_size"], config["num_attention_heads"]) == (4096, 32000, 32)
    assert (config["intermediate_size"], config["num_hidden_layers"], config["dtype"]) == (11008, 2, "float16")
    with safe_open(str(paths["llm"] / "model.safetensors"), framework="pt") as f:
        assert f.get_slice("model.embed_tokens.weight").get_shape() == [32000, 4096]
        assert f.get_slice("model.layers.1.mlp.down_proj.weight").get_shape() == [4096, 11008]
    tok = AutoTokenizer.from_pretrained(str(paths["llm"]), local_files_only=True)
    assert len(tok) == 32000 and tok.decode([31999]).strip().startswith("w")  # filler words pad the vocabulary

    # the paper config's loaders at paper widths: SAM ViT-L (2 blocks) at 256 px, Q-Former, llama_proj, Vicuna
    enc = BiTemporalSAMEncoder(img_size=256, checkpoint=str(paths["sam"]), **sam_encoder_kwargs("paper", 2))
    head = ChangeCaptionHead(
        llm={"path": str(paths["llm"]), "dtype": "bfloat16"}, llama_proj_checkpoint=str(paths["llama_proj"]),
        end_marker="###", **cc_head_kwargs("paper", 2, qformer_checkpoint=str(paths["qformer"])),
    )
    torch.testing.assert_close(head.llama_proj.weight, proj["llama_proj.weight"])
    with torch.no_grad():
        feats = enc(torch.randn(1, 3, 256, 256), torch.randn(1, 3, 256, 256))
        assert feats.cc_1.shape == (1, 1024, 16, 16)
        out = head(feats.cc_1, feats.cc_2, ["two houses are built at the top"])
    assert torch.isfinite(out.loss)
