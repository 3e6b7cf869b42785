"""semcc.models on the mini preset (64 px, CPU): shapes, gradients, ablations, generation, meta-size count."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from semcc.data.text import INSTRUCTIONS, build_word_tokenizer
from semcc.models import BiTemporalSAMEncoder, ChangeCaptionHead, ChangeDetectionHead, MultiTaskNeck
from semcc.models.cc_head import DEFAULT_INSTRUCTIONS
from semcc.models.ensemble import caption_similarity, consensus_index
from semcc.models.presets import build_semantic_cc, preset_kwargs
from semcc.models.semantic_cc import SemanticCC, SemanticCCOutput

CAPTIONS = [
    "a new road is built on the left",
    "there is no difference",
    "two houses appear at the top of the scene",
    "the scene is the same as before",
    "many buildings are constructed along the road",
]
PAPER_FREEZING = {"qformer": {"freeze": True}, "llm": {"finetune": "lora"}}
IMG = 64


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tok") / "tok"
    build_word_tokenizer(CAPTIONS, path)
    return path


def mini(tok_dir: Path, **overrides) -> SemanticCC:
    torch.manual_seed(0)
    return build_semantic_cc("mini", img_size=IMG, tokenizer=str(tok_dir), **overrides)


def images(b: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, IMG, IMG, generator=g), torch.randn(b, 3, IMG, IMG, generator=g)


def test_default_instructions_equal_data_text() -> None:
    assert DEFAULT_INSTRUCTIONS == INSTRUCTIONS


@pytest.mark.parametrize("b", [1, 2])
def test_forward_shapes(tok_dir: Path, b: int) -> None:
    model = mini(tok_dir)
    a, c = images(b)
    out = model(a, c, captions=CAPTIONS[:b], instructions=list(INSTRUCTIONS[:b]))
    assert isinstance(out, SemanticCCOutput)
    assert out.mask_logits is not None and out.mask_logits.shape == (b, 1, IMG, IMG)
    assert out.cc_loss is not None and out.cc_loss.ndim == 0 and torch.isfinite(out.cc_loss)
    vocab = model.cc_head.llm.config.vocab_size
    assert out.cc_logits is not None and out.cc_logits.shape[0] == b and out.cc_logits.shape[2] == vocab
    # labels: -100 except the caption tokens and the end marker
    tok = model.cc_head.tokenizer
    for i in range(b):
        kept = out.cc_labels[i][out.cc_labels[i] != -100].tolist()
        assert kept == [*tok(CAPTIONS[i], add_special_tokens=False).input_ids, tok.eos_token_id]
    feats = model.encoder(a, c)
    assert feats.cd_1.shape == (b, 64, IMG // 16, IMG // 16)
    assert feats.cc_2.shape == (b, 64, IMG // 16, IMG // 16)


def test_cd_only_skips_llm(tok_dir: Path) -> None:
    model = mini(tok_dir)
    calls = []
    model.cc_head.llm.register_forward_hook(lambda *args: calls.append(1))
    model.cc_head.qformer.register_forward_hook(lambda *args: calls.append(1))
    out = model(*images(2), tasks=("cd",))
    assert out.mask_logits is not None and out.cc_loss is None and out.cc_logits is None
    assert calls == []
    with pytest.raises(ValueError, match="no captions"):
        model(*images(2), tasks=("cc",))
    with pytest.raises(ValueError, match="unknown task"):
        model(*images(2), tasks=("seg",))


def test_backward_trains_lora_and_new_modules_only(tok_dir: Path) -> None:
    model = mini(tok_dir, cc_head=PAPER_FREEZING)
    a, c = images(2)
    out = model(a, c, captions=CAPTIONS[:2])
    (out.cc_loss + 0.5 * out.mask_logits.float().mean()).backward()
    named = dict(model.named_parameters())
    trainable = {n for n, p in named.items() if p.requires_grad}
    for name in trainable:
        assert named[name].grad is not None, f"trainable {name} got no gradient"
    for name, p in named.items():
        if not p.requires_grad:
            assert p.grad is None, f"frozen {name} got a gradient"
    # what is trainable (Sec. IV-C): LoRA (encoder, LLM), BCSF, neck, CD head, vision_proj/ln_vision,
    # enhancer, llama_proj; frozen: SAM ViT + neck, Q-Former + query tokens, the LLM base.
    prefixes = ("encoder.bcsf.", "neck.", "cd_head.", "cc_head.vision_proj.", "cc_head.ln_vision.",
                "cc_head.enhancer.", "cc_head.llama_proj.")
    for name in named:
        is_lora = "lora_" in name
        assert (name in trainable) == (is_lora or name.startswith(prefixes)), name
    assert any(n.startswith("encoder.vit.") and "lora_" in n for n in trainable)
    assert any(n.startswith("cc_head.llm.") and "lora_" in n for n in trainable)
    assert not named["encoder.vit.blocks.0.attn.qkv.base_layer.weight"].requires_grad
    assert not named["cc_head.query_tokens"].requires_grad
    assert not named["cc_head.llm.model.embed_tokens.weight"].requires_grad
    # LoRA B starts at zero, so LoRA A's first gradient is zero; B's is not.
    grads = [named[n].grad.abs().sum() for n in trainable if "lora_B" in n]
    assert all(g > 0 for g in grads)
    share = sum(named[n].numel() for n in trainable) / sum(p.numel() for p in named.values())
    print(f"mini (paper freezing): trainable share {share:.1%}")


def test_mini_preset_trains_qformer_and_llm(tok_dir: Path) -> None:
    model = mini(tok_dir)
    assert model.cc_head.query_tokens.requires_grad
    assert model.cc_head.llm.model.embed_tokens.weight.requires_grad
    assert not any("lora_" in n for n, _ in model.cc_head.llm.named_parameters())
    assert not model.encoder.vit.patch_embed.proj.weight.requires_grad


def test_train_vit_makes_every_sam_weight_trainable(tok_dir: Path) -> None:
    from semcc.models import BiTemporalSAMEncoder

    vit = {"embed_dim": 32, "depth": 2, "num_heads": 2, "window_size": 2, "global_attn_indexes": (1,), "out_chans": 16}
    enc = BiTemporalSAMEncoder(img_size=64, vit=vit, lora={"r": 4}, train_vit=True)
    assert all(p.requires_grad for p in enc.vit.parameters())
    x = torch.randn(1, 3, 64, 64)
    f = enc(x, x.flip(-1))
    (f.cd_1.sum() + f.cc_2.sum()).backward()
    assert enc.vit.patch_embed.proj.weight.grad is not None and enc.vit.neck[0].weight.grad is not None
    frozen = BiTemporalSAMEncoder(img_size=64, vit=vit, lora={"r": 4})
    assert not any(p.requires_grad for n, p in frozen.vit.named_parameters() if "lora_" not in n)


ABLATIONS = [
    pytest.param({"encoder": {"bcsf_blocks": "global"}}, id="bcsf-global"),
    pytest.param({"encoder": {"bcsf_blocks": "window"}}, id="bcsf-window"),
    pytest.param({"encoder": {"bcsf_blocks": "none"}}, id="bcsf-off"),
    pytest.param({"encoder": {"bcsf_blocks": [0, 2], "lora": {"r": 0}}}, id="bcsf-list-no-lora"),
    pytest.param({"neck": False}, id="neck-none"),
    pytest.param({"neck": {"inter": "cross"}}, id="neck-cross"),
    pytest.param({"neck": {"inter": "bilinear", "num_units": 3}}, id="neck-bilinear"),
    pytest.param({"neck": {"normalize_similarity": True}}, id="neck-normalized-similarity"),
    pytest.param({"cc_head": {"enhancer": {"position": "none"}}}, id="enh-none"),
    *[
        pytest.param({"cc_head": {"enhancer": {"position": pos, "mode": mode}}}, id=f"enh-{pos}-{mode}")
        for pos in ("before", "after")
        for mode in ("activation", "subtraction", "both")
    ],
    pytest.param({"cc_head": {"enhancer": {"concat": "token"}}}, id="enh-token-concat"),
    pytest.param({"cd_head": {"num_classes": 3}}, id="cd-3-classes"),
    pytest.param({"cd_head": {"fusion": "cat_diff"}}, id="cd-cat-diff"),
    pytest.param({"cd_head": False}, id="cc-only"),
    pytest.param({"cc_head": False}, id="cd-only"),
]


@pytest.mark.parametrize("overrides", ABLATIONS)
def test_ablation_switches_build_and_run(tok_dir: Path, overrides: dict) -> None:
    model = mini(tok_dir, **overrides)
    tasks = model.tasks
    out = model(*images(2), captions=CAPTIONS[:2] if "cc" in tasks else None, tasks=tasks)
    if "cd" in tasks:
        k = overrides.get("cd_head", {}).get("num_classes", 1) if overrides.get("cd_head") else 1
        assert out.mask_logits.shape == (2, k, IMG, IMG)
    if "cc" in tasks:
        assert torch.isfinite(out.cc_loss)
        out.cc_loss.backward()
        enhancer = model.cc_head.enhancer
        if enhancer is not None:
            assert all(p.grad is not None for p in enhancer.parameters())


def test_sdpa_attention_equals_sam_attention() -> None:
    from semcc.models.encoder import BiTemporalSAMEncoder

    kw = {"img_size": IMG, "vit": {"patch_size": 16, "embed_dim": 32, "depth": 2, "num_heads": 2, "window_size": 2,
                                   "global_attn_indexes": (1,), "out_chans": 16}, "lora": {"r": 4}}
    torch.manual_seed(0)
    sdpa = BiTemporalSAMEncoder(**kw, attn_impl="sdpa")
    eager = BiTemporalSAMEncoder(**kw, attn_impl="eager")
    with torch.no_grad():
        for name, p in sdpa.named_parameters():
            if "rel_pos" in name:  # SAM zero-initialises them: give them values so the bias matters
                p.normal_(std=0.3)
    assert eager.load_state_dict(sdpa.state_dict()) is not None
    a, c = images(2)
    out, ref = sdpa.eval()(a, c), eager.eval()(a, c)  # eval: no LoRA dropout
    for field in ("cd_1", "cc_2"):
        torch.testing.assert_close(getattr(out, field), getattr(ref, field), atol=1e-5, rtol=1e-5)
    out.cc_1.sum().backward()
    ref.cc_1.sum().backward()
    for (name, p), (_, q) in zip(sdpa.named_parameters(), eager.named_parameters(), strict=True):
        if p.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, atol=1e-4, rtol=1e-4, msg=name)
    with pytest.raises(ValueError, match="attn_impl must be one of"):
        BiTemporalSAMEncoder(**kw, attn_impl="flash")


def test_caption_loss_of_a_padded_batch_equals_one_pair_at_a_time(tok_dir: Path) -> None:
    head = mini(tok_dir).cc_head.eval()
    g = torch.Generator().manual_seed(3)
    f1, f2 = torch.randn(3, 64, 4, 4, generator=g), torch.randn(3, 64, 4, 4, generator=g)
    prompts = ["Describe it.", INSTRUCTIONS[2], INSTRUCTIONS[1]]  # rows of different lengths: right padding
    batch = head(f1, f2, captions=CAPTIONS[:3], instructions=prompts)
    total, tokens = 0.0, 0
    for i in range(3):
        one = head(f1[i : i + 1], f2[i : i + 1], captions=CAPTIONS[i : i + 1], instructions=prompts[i : i + 1])
        n = int((one.labels[:, 1:] != -100).sum())
        total, tokens = total + one.loss.item() * n, tokens + n
    assert batch.loss.item() == pytest.approx(total / tokens, rel=1e-5)


def test_change_loss_is_the_weighted_cross_entropy_of_a_classifier_on_the_queries(tok_dir: Path) -> None:
    """change_loss_weight (beyond the paper): a linear change classifier on the mean of the Q-Former's outputs;
    its loss, times the weight, reaches the queries and the Q-Former (and F_cc unless ``change_loss_detach``), and
    leaves the caption loss alone."""
    assert mini(tok_dir).cc_head.change_classifier is None  # the paper: no classifier, no extra weights
    plain = mini(tok_dir).cc_head.eval()  # no dropout: the two passes below see the same queries
    head = mini(tok_dir, cc_head={"change_loss_weight": 0.5}).cc_head.eval()
    head.load_state_dict(plain.state_dict(), strict=False)  # the same weights but the classifier
    g = torch.Generator().manual_seed(4)
    f1, f2 = torch.randn(3, 64, 4, 4, generator=g), torch.randn(3, 64, 4, 4, generator=g)
    f1.requires_grad_(True)  # stands for the neck's F_cc
    changed = torch.tensor([True, False, True])
    out = head(f1, f2, captions=CAPTIONS[:3], changed=changed)
    q = head.query_features(f1, f2)
    logit = head.change_classifier(q.mean(dim=1)).squeeze(-1)
    expected = 0.5 * torch.nn.functional.binary_cross_entropy_with_logits(logit, changed.float())
    assert out.change_loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert out.loss.item() == pytest.approx(plain(f1, f2, captions=CAPTIONS[:3]).loss.item(), rel=1e-6)
    assert head(f1, f2, captions=CAPTIONS[:3]).change_loss is None  # no labels, no loss
    out.change_loss.backward()
    assert head.query_tokens.grad.abs().sum() > 0 and head.vision_proj.weight.grad.abs().sum() > 0
    assert head.llm.get_input_embeddings().weight.grad is None  # the LLM is not on its path
    assert f1.grad.abs().sum() > 0  # the neck before the head is (default: the caption's own pass)
    detached = mini(tok_dir, cc_head={"change_loss_weight": 0.5, "change_loss_detach": True}).cc_head.eval()
    detached.load_state_dict(head.state_dict())
    f1.grad = None
    out_detached = detached(f1, f2, captions=CAPTIONS[:3], changed=changed)
    assert out_detached.change_loss.item() == pytest.approx(expected.item(), rel=1e-6)  # the same pass, in eval
    out_detached.change_loss.backward()
    assert detached.query_tokens.grad.abs().sum() > 0 and f1.grad is None  # F_cc detached: the head learns alone
    out_detached.loss.backward()
    assert f1.grad.abs().sum() > 0  # the caption loss still reaches the neck
    with pytest.raises(ValueError, match="changed has shape"):
        head(f1, f2, captions=CAPTIONS[:3], changed=changed[:2])
    with pytest.raises(ValueError, match="change_loss_weight must be >= 0"):
        mini(tok_dir, cc_head={"change_loss_weight": -1.0})


def test_generate_batch_equals_loop(tok_dir: Path) -> None:
    model = mini(tok_dir).eval()
    a, c = images(3, seed=1)
    prompts = ["Describe it.", INSTRUCTIONS[2], INSTRUCTIONS[1]]  # different prompt lengths
    batched = model.generate(a, c, instructions=prompts, max_new_tokens=12)
    assert len(batched) == 3 and all(isinstance(s, str) for s in batched)
    loop = [model.generate(a[i : i + 1], c[i : i + 1], instructions=[prompts[i]], max_new_tokens=12)[0]
            for i in range(3)]
    assert batched == loop
    mask, caps = model.predict(a, c, instructions=prompts, max_new_tokens=12)
    assert mask.shape == (3, 1, IMG, IMG) and caps == batched


def test_generation_stops_at_end_marker(tok_dir: Path) -> None:
    model = mini(tok_dir, cc_head={"end_marker": "### Assistant:"}).eval()
    head = model.cc_head
    assert len(head.end_marker_ids) == 2  # multi-token marker: stopping criterion + cut
    out = model(*images(2), captions=CAPTIONS[:2])
    assert torch.isfinite(out.cc_loss)
    caps = model.generate(*images(2), max_new_tokens=6)
    assert all(isinstance(s, str) for s in caps)
    # a model that emits "### Assistant: a a ..." stops after the marker and returns an empty caption
    ids = [*head.end_marker_ids, head.tokenizer.convert_tokens_to_ids("a")]
    calls = []

    def force(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        forced = torch.full_like(output, -1e4)
        forced[..., ids[min(len(calls), 2)]] = 1e4
        calls.append(1)
        return forced

    head.llm.lm_head.register_forward_hook(force)
    assert model.generate(*images(2), max_new_tokens=6) == ["", ""]
    assert len(calls) == 2  # stopped right after the two marker tokens


def test_ensemble_returns_a_candidate(tok_dir: Path) -> None:
    model = mini(tok_dir).eval()
    a, c = images(2, seed=3)
    _, cc = model.features(a, c)
    candidates = model.cc_head.generate_candidates(*cc, max_new_tokens=8)
    assert len(candidates) == 2 and all(len(cands) == len(INSTRUCTIONS) for cands in candidates)
    chosen = model.generate(a, c, ensemble=True, max_new_tokens=8)
    for pick, cands in zip(chosen, candidates, strict=True):
        assert pick in cands
        assert pick == cands[consensus_index(cands)]


def test_consensus_and_similarity() -> None:
    assert caption_similarity("a b c", "a b c") == 1.0
    assert caption_similarity("", "") == 1.0
    assert caption_similarity("a b", "c d") == 0.0
    cands = ["a road is built", "a new road is built", "houses appear", "a road is built here"]
    assert consensus_index(cands) in (0, 1, 3)
    assert consensus_index(["x y", "p q", "u v"]) == 0  # tie -> first prompt
    assert consensus_index(["p q", "a b c", "a b c"]) == 1


def test_paper_preset_on_meta_device() -> None:
    with torch.device("meta"):
        model = build_semantic_cc("paper")
        vit_1024 = build_semantic_cc("paper", img_size=1024, neck=False, cc_head=False).encoder.vit
    params = list(model.parameters())
    assert all(p.is_meta for p in params)  # nothing allocated
    llm = dict(model.cc_head.llm.named_parameters())  # frozen Vicuna in bf16, its LoRA adapters fp32 master weights
    assert {p.dtype for n, p in llm.items() if "lora_" not in n} == {torch.bfloat16}
    assert {p.dtype for n, p in llm.items() if "lora_" in n} == {torch.float32}

    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for n, p in module.named_parameters() if "lora_" not in n)

    sam_256, sam_1024 = count(model.encoder.vit), count(vit_1024)
    llm = count(model.cc_head.llm)
    assert abs(sam_1024 - 308.3e6) / 308.3e6 < 0.01  # the official ViT-L image encoder (1024 px)
    assert abs(sam_256 - 308e6) / 308e6 < 0.03  # built at 256 px: smaller pos_embed / rel_pos tables
    assert abs(llm - 6.74e9) / 6.74e9 < 0.01
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    print(
        f"paper preset: SAM ViT-L {sam_256 / 1e6:.1f}M at 256 px ({sam_1024 / 1e6:.1f}M at 1024 px), "
        f"LLM {llm / 1e9:.3f}B, Q-Former {count(model.cc_head.qformer) / 1e6:.1f}M, total {total / 1e9:.3f}B, "
        f"trainable {trainable / 1e6:.1f}M ({trainable / total:.2%})"
    )
    assert 0.005 < trainable / total < 0.03


def test_models_package_imports_neither_lightning_nor_data() -> None:
    src = Path(__file__).resolve().parents[1] / "src" / "semcc" / "models"
    for path in src.glob("*.py"):
        imports = [line.strip() for line in path.read_text().splitlines()
                   if line.strip().startswith(("import ", "from "))]
        for line in imports:
            module = line.split()[1]
            assert not module.startswith(("lightning", "semcc.data", "semcc.tasks", "torchvision")), line


def test_parts_build_from_class_path_config(tok_dir: Path) -> None:
    from jsonargparse import ArgumentParser

    parts = {
        "encoder": ("BiTemporalSAMEncoder", {"img_size": IMG, "vit": {"embed_dim": 32, "depth": 2, "num_heads": 2,
                                                                      "window_size": 2, "global_attn_indexes": [1],
                                                                      "out_chans": 16},
                                             "bcsf_blocks": [0, 1]}),
        "neck": ("MultiTaskNeck", {"cd_dim": 16, "cc_dim": 32, "num_units": 1, "num_heads": 2, "inter": "cross"}),
        "cd_head": ("ChangeDetectionHead", {"in_channels": 16, "fpn_channels": 8, "num_classes": 3}),
        "cc_head": ("ChangeCaptionHead", {"vision_width": 32, "tokenizer": str(tok_dir),
                                          "llm": {"hidden_size": 32, "layers": 1, "heads": 2, "intermediate_size": 64},
                                          "qformer": {"hidden_size": 32, "layers": 1, "heads": 2,
                                                      "intermediate_size": 64, "encoder_width": 32,
                                                      "num_query_tokens": 4},
                                          "lora": {"targets": ["q_proj", "v_proj"]}}),
    }
    config = {"model": {k: {"class_path": f"semcc.models.{cls}", "init_args": args}
                        for k, (cls, args) in parts.items()}}
    parser = ArgumentParser()
    parser.add_class_arguments(SemanticCC, "model")
    namespace = parser.parse_object(config)
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes
    model = instantiate(namespace).model
    assert isinstance(model, SemanticCC) and model.encoder.bcsf_block_ids == (0, 1)
    assert model.cc_head.lora_config.targets == ("q_proj", "v_proj")  # the YAML list, merged onto the default LoRA
    lora_layers = {n.rsplit(".lora_A", 1)[0].rsplit(".", 1)[1] for n, _ in model.cc_head.llm.named_parameters()
                   if ".lora_A" in n}
    assert lora_layers == {"q_proj", "v_proj"}
    out = model(*images(1), captions=CAPTIONS[:1])
    assert out.mask_logits.shape == (1, 3, IMG, IMG) and torch.isfinite(out.cc_loss)


def test_cd_head_difference_fusion() -> None:
    """``fusion="cat_diff"``: the absolute difference of the two dates' maps reaches the SimpleFPN through a 1x1
    projection to the width of two maps; with that projection's weights on the raw maps zeroed the head sees only
    ``|F_cd^1 - F_cd^2|`` and gives the same mask for either order of the dates, which Eq. 6's concatenation does
    not."""
    from semcc.models.cd_head import ChangeDetectionHead

    torch.manual_seed(0)
    f1, f2 = torch.randn(2, 8, 4, 4), torch.randn(2, 8, 4, 4)
    head = ChangeDetectionHead(in_channels=8, fpn_channels=8, patch_size=16, fusion="cat_diff")
    assert head.diff_proj.weight.shape == (16, 24, 1, 1) and head.fpn.to_8.in_channels == 16  # the FPN of "cat"
    out = head(f1, f2)
    assert out.shape == (2, 1, 64, 64)
    out.sum().backward()
    assert head.diff_proj.weight.grad is not None and head.diff_proj.weight.grad[:, 16:].abs().sum() > 0
    with torch.no_grad():
        head.diff_proj.weight[:, :16] = 0
        assert torch.allclose(head(f1, f2), head(f2, f1), atol=1e-5)
        cat = ChangeDetectionHead(in_channels=8, fpn_channels=8, patch_size=16)
        assert cat.diff_proj is None and not torch.allclose(cat(f1, f2), cat(f2, f1), atol=1e-3)
    with pytest.raises(ValueError, match="fusion"):
        ChangeDetectionHead(in_channels=8, fusion="sum")


def test_cd_head_image_detail_marks_a_change_inside_one_patch() -> None:
    """``image_detail``: the stride-4 stem lets the mask follow the pixels inside one 16-px patch. With the dates'
    F_cd maps equal and flat, a head without it gives the same mask whatever the pixels; with it, an 8-px square
    that differs between the dates moves the logits around the square and leaves pixels far from it untouched."""
    torch.manual_seed(0)
    f = torch.randn(1, 8, 1, 1).expand(1, 8, 8, 8).contiguous()  # a flat F_cd, the same for both dates
    image_a = torch.randn(1, 3, 128, 128)
    image_b = image_a.clone()
    image_b[..., 60:68, 60:68] += 2.0  # an 8-px change inside the patch at (3, 3)
    head = ChangeDetectionHead(in_channels=8, fpn_channels=8, patch_size=16, image_detail=4)
    assert head.detail is not None and head.refine is not None and head.proj.in_channels == 4 * 8
    with torch.no_grad():  # the refinement starts at zero: the head's mask is Eq. 6's until it learns
        assert torch.equal(head(f, f, images=(image_a, image_b)), head(f, f, images=(image_a, image_a)))
        torch.nn.init.normal_(head.refine[-1].weight)
    moved = (head(f, f, images=(image_a, image_b)) - head(f, f, images=(image_a, image_a)))[0, 0].abs()
    assert moved.shape == (128, 128)
    assert moved[60:68, 60:68].min() > 0 and moved[:32, :32].max() == 0 and moved[100:, 100:].max() == 0
    head(f, f, images=(image_a, image_b)).sum().backward()
    assert head.detail[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="images=\\(image_a, image_b\\)"):
        head(f, f)
    with pytest.raises(ValueError, match="do not fit F_cd"):
        head(f, f, images=(image_a[..., :64, :64], image_b[..., :64, :64]))
    with pytest.raises(ValueError, match="image_detail must be >= 0"):
        ChangeDetectionHead(in_channels=8, image_detail=-1)
    plain = ChangeDetectionHead(in_channels=8, fpn_channels=8, patch_size=16)
    with torch.no_grad():
        assert plain.detail is None and torch.equal(plain(f, f), plain(f, f, images=(image_a, image_b)))


def test_mask_logits_give_the_cd_head_the_pair_the_encoder_read() -> None:
    """``SemanticCC.mask_logits``: a CD head with ``image_detail`` reads the pair as the encoder reads it: radiometry
    matched when the encoder matches (``BiTemporalSAMEncoder.prepare``), as they are when it does not; ``forward``,
    ``predict`` and the sliding window all give that mask."""
    from semcc.models.radiometry import match_radiometry, matching
    from semcc.windows import cd_window_logits

    torch.manual_seed(0)
    model = build_semantic_cc("tiny", img_size=64, cd_head={"image_detail": 4}, cc_head=False).eval()
    torch.nn.init.normal_(model.cd_head.refine[-1].weight)  # as if trained: the pixels move the mask
    a = torch.randn(2, 3, 64, 64)
    b = 1.7 * a + 0.4  # a global gain and offset: matching removes it
    b[..., 20:30, 20:30] = -1.0
    with torch.no_grad():
        cd, _ = model.features(a, b)
        raw = model.cd_head(*cd, images=(a, b))
        assert torch.equal(model.mask_logits(cd, a, b), raw)
        with matching(model.encoder, True):
            cd_m, _ = model.features(a, b)
            matched = model.mask_logits(cd_m, a, b)
            share = model.encoder.invariant_share
            assert torch.equal(matched, model.cd_head(*cd_m, images=match_radiometry(a, b, share)))
            assert not torch.allclose(matched, model.cd_head(*cd_m, images=(a, b)))
            assert torch.equal(model(a, b, tasks=("cd",)).mask_logits, matched)
            assert torch.equal(model.predict(a, b)[0], matched)
            assert torch.allclose(cd_window_logits(model, a, b), matched)


@pytest.mark.parametrize(("shape", "size"), [((2, 3, 4, 4), (64, 64)), ((1, 1, 16, 16), (256, 256)),
                                             ((2, 2, 5, 7), (13, 3)), ((1, 4, 32, 32), (8, 8))])
def test_resize_bilinear_is_interpolate(shape: tuple[int, ...], size: tuple[int, int]) -> None:
    """The CD head's matrix resize gives ``F.interpolate(bilinear, align_corners=False)``'s values and gradients, up and
    down, for square and oblong maps."""
    import torch.nn.functional as F

    from semcc.models.cd_head import resize_bilinear

    torch.manual_seed(0)
    x = torch.randn(*shape, requires_grad=True)
    ref = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    out = resize_bilinear(x, size)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(ref)
    (grad_ref,) = torch.autograd.grad(ref, x, g)
    (grad,) = torch.autograd.grad(out, x, g)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-5, atol=1e-5)


def test_channel_layer_norm_is_sams() -> None:
    """``ChannelLayerNorm`` loads SAM's ``LayerNorm2d`` weights (same keys) and gives its values and gradients."""
    from semcc.models._sam import LayerNorm2d
    from semcc.models.cd_head import ChannelLayerNorm

    torch.manual_seed(0)
    sam, fast = LayerNorm2d(6), ChannelLayerNorm(6)
    with torch.no_grad():
        sam.weight.normal_(), sam.bias.normal_()
    fast.load_state_dict(sam.state_dict())
    x = torch.randn(2, 6, 5, 3, requires_grad=True)
    torch.testing.assert_close(fast(x), sam(x), rtol=1e-5, atol=1e-5)
    g = torch.randn(2, 6, 5, 3)
    grads_sam = torch.autograd.grad(sam(x), (x, sam.weight, sam.bias), g)
    grads_fast = torch.autograd.grad(fast(x), (x, fast.weight, fast.bias), g)
    for a, b in zip(grads_fast, grads_sam, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_normalized_similarity_does_not_grow_with_the_features() -> None:
    from semcc.models.neck import InterTaskAttention

    torch.manual_seed(0)
    x1, x2 = torch.randn(2, 5, 16), torch.randn(2, 5, 8)
    raw, normalized = InterTaskAttention(16, 8), InterTaskAttention(16, 8, normalize=True)
    normalized.load_state_dict(raw.state_dict())  # no parameters of its own: the same W
    # Eq. 5 as written: S scales with the norms of both features (the saturation benchmarks/neck_gates.py shows)
    torch.testing.assert_close(raw.similarity(10 * x1, 10 * x2), 100 * raw.similarity(x1, x2))
    # normalised: S is the same for features ten times larger, and about unit-sized at init
    torch.testing.assert_close(normalized.similarity(10 * x1, 10 * x2), normalized.similarity(x1, x2), rtol=1e-4,
                               atol=1e-4)  # up to layer_norm's eps
    assert normalized.similarity(10 * x1, 10 * x2).abs().max() < 5
    assert not torch.allclose(normalized.similarity(x1, x2), raw.similarity(x1, x2))


def test_match_radiometry_removes_a_global_gain_and_offset_but_not_a_change() -> None:
    """Relative radiometric normalisation: a date that is the other under a per-channel gain and offset (illumination,
    haze, a sensor shift) is matched to it exactly, a local change survives, a large change does not shift the
    background's matching (the pseudo-invariant pass), the dtype is kept and a flat band stays finite; with
    ``match_radiometry`` the encoder sees no difference between such dates, without it it does."""
    from semcc.models.radiometry import match_radiometry

    a, _ = images(2)
    gain, offset = torch.tensor([1.6, 0.7, 1.2]).view(1, 3, 1, 1), torch.tensor([0.5, -0.3, 0.1]).view(1, 3, 1, 1)
    b = a * gain + offset
    for share in (1.0, 0.8):  # one pass on all pixels; two, on the pseudo-invariant ones (the default)
        ma, mb = match_radiometry(a, b, invariant_share=share)
        assert torch.allclose(ma, mb, atol=1e-5) and not torch.allclose(a, b, atol=0.1)
    ma, mb = match_radiometry(a, b, invariant_share=1.0)
    both = torch.stack([ma, mb]).flatten(-2)
    assert torch.allclose(both.mean(-1), ((a.flatten(-2).mean(-1) + b.flatten(-2).mean(-1)) / 2).expand_as(
        both.mean(-1)), atol=1e-5)  # the pair's average mean per channel
    changed = b.clone()
    changed[..., 10:20, 10:20] += 3.0  # a bright new roof in the second date
    ma, mb = match_radiometry(a, changed)
    diff = (ma - mb).abs().sum(1)
    assert diff[..., 10:20, 10:20].mean() > 10 * diff[..., 30:, 30:].mean()
    # a change over 15% of the pixels shifts one pass's statistics, so the background no longer matches; the second
    # pass measures them on the 80% of pixels that agree best, which leaves the change out: the background matches
    changed = b.clone()
    changed[..., :, :10] += 3.0
    background = {}
    for share in (1.0, 0.8):
        ma, mb = match_radiometry(a, changed, share)
        background[share] = (ma - mb)[..., 30:].abs().mean()
    assert background[1.0] > 0.1 and background[0.8] < 1e-4
    with pytest.raises(ValueError, match="invariant_share"):
        match_radiometry(a, b, invariant_share=0)
    flat = torch.zeros(1, 3, 8, 8)
    fa, fb = match_radiometry(flat, flat + 1)
    assert torch.isfinite(fa).all() and torch.isfinite(fb).all()
    ha, hb = match_radiometry(a.bfloat16(), b.bfloat16())
    assert ha.dtype == hb.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="differ"):
        match_radiometry(a, b[:1])

    from semcc.models.encoder import BiTemporalSAMEncoder

    vit = {"patch_size": 16, "embed_dim": 32, "depth": 2, "num_heads": 2, "window_size": 2,
           "global_attn_indexes": [1], "out_chans": 32}
    torch.manual_seed(0)
    plain = BiTemporalSAMEncoder(img_size=IMG, vit=vit, lora={"r": 0}).eval()
    matched = BiTemporalSAMEncoder(img_size=IMG, vit=vit, lora={"r": 0}, match_radiometry=True).eval()
    matched.load_state_dict(plain.state_dict())  # the option adds no weights
    with torch.no_grad():
        f, g = matched(a, changed), plain(*match_radiometry(a, changed))
        assert all(torch.equal(x, y) for x, y in zip(f.__dict__.values(), g.__dict__.values(), strict=True))
        assert matched.invariant_share == 0.8
        matched.invariant_share = 1.0  # one pass on all pixels (0.12.0's): another input, other features
        one_pass = matched(a, changed)
        assert torch.equal(one_pass.cd_2, plain(*match_radiometry(a, changed, invariant_share=1.0)).cd_2)
        assert not torch.allclose(one_pass.cd_2, f.cd_2, atol=1e-4)
        with pytest.raises(ValueError, match="invariant_share"):
            BiTemporalSAMEncoder(img_size=IMG, vit=vit, lora={"r": 0}, invariant_share=1.5)
        assert not torch.allclose(plain(a, changed).cd_2, f.cd_2, atol=1e-2)
        # without the BCSF (which gives the dates different roles) the two dates' features are the same
        symmetric = BiTemporalSAMEncoder(img_size=IMG, vit=vit, lora={"r": 0}, bcsf_blocks="none",
                                         match_radiometry=True).eval()
        f = symmetric(a, b)
        assert torch.allclose(f.cd_1, f.cd_2, atol=1e-4) and torch.allclose(f.cc_1, f.cc_2, atol=1e-4)
        symmetric.match_radiometry = False
        g = symmetric(a, b)
        assert not torch.allclose(g.cd_1, g.cd_2, atol=1e-2)


def test_widths_that_do_not_fit_are_named_when_the_model_is_built(tok_dir: Path) -> None:
    kw = preset_kwargs("mini", img_size=IMG, tokenizer=str(tok_dir), encoder={"vit": {"out_chans": 32}})
    encoder = BiTemporalSAMEncoder(**kw["encoder"])
    cd_width, cc_width = encoder.out_chans, encoder.embed_dim
    assert cd_width != cc_width  # so that a swapped width is caught
    fits = {"neck": MultiTaskNeck(**kw["neck"]), "cd_head": ChangeDetectionHead(**kw["cd_head"]),
            "cc_head": ChangeCaptionHead(**kw["cc_head"])}
    SemanticCC(encoder, **fits)  # the preset's widths fit
    wrong_neck = MultiTaskNeck(**{**kw["neck"], "cc_dim": cd_width})
    with pytest.raises(ValueError, match=rf"neck\.cc_dim is {cd_width} but the encoder's F_cc .* is {cc_width}"):
        SemanticCC(encoder, **{**fits, "neck": wrong_neck})
    wrong_cc = ChangeCaptionHead(**{**kw["cc_head"], "vision_width": cc_width + 8})
    wrong_cd = ChangeDetectionHead(**{**kw["cd_head"], "in_channels": cd_width + 8, "patch_size": 8})
    with pytest.raises(ValueError) as info:  # every misfit in one message, also without a neck
        SemanticCC(encoder, None, wrong_cd, wrong_cc)
    message = str(info.value)
    assert f"cd_head.in_channels is {cd_width + 8}" in message and f"cc_head.vision_width is {cc_width + 8}" in message
    assert "cd_head.patch_size is 8" in message and "neck" not in message


@pytest.mark.parametrize("tta", ["flips", "d4"])
def test_mask_tta_averages_views_mapped_back_to_the_pair(tok_dir: Path, tta: str) -> None:
    """``mask_logits_tta``: the mean of each view's logits mapped back (so it is equivariant under the views: the
    pair flipped gets the mask flipped), ``none`` is the plain mask, the pair's own logits can be passed in."""
    from semcc.models.tta import MASK_TTA, invert_view, view

    model = mini(tok_dir).eval()
    a, b = images(2, seed=3)
    with torch.no_grad():
        plain = model.mask_logits(model.features(a, b)[0], a, b)
        assert torch.allclose(model.mask_logits_tta(a, b, "none"), plain)
        tta_logits = model.mask_logits_tta(a, b, tta)
        by_hand = torch.stack([invert_view(model.mask_logits(model.features(view(a, v), view(b, v))[0],
                                                             view(a, v), view(b, v)), v)
                               for v in MASK_TTA[tta]]).mean(0)
        assert torch.allclose(tta_logits, by_hand, atol=1e-5)
        assert not torch.allclose(tta_logits, plain, atol=1e-3)  # the views do differ on a random-init model
        assert torch.allclose(model.mask_logits_tta(a, b, tta, logits=plain), tta_logits, atol=1e-5)
        for v in MASK_TTA[tta]:  # equivariance: each view of the pair gets that view of the averaged mask
            assert torch.allclose(model.mask_logits_tta(view(a, v), view(b, v), tta), view(tta_logits, v), atol=1e-4)


def test_mask_tta_rejects_unknown_settings_and_d4_on_a_rectangle(tok_dir: Path) -> None:
    from semcc.tasks.evaluator import EvalConfig

    model = mini(tok_dir).eval()
    a, b = images(1)
    with pytest.raises(ValueError, match="mask_tta must be one of"):
        model.mask_logits_tta(a, b, "rotations")
    with pytest.raises(ValueError, match=r"evaluation\.mask_tta"):
        EvalConfig(mask_tta="flip")
    with pytest.raises(ValueError, match="needs square images"):
        model.mask_logits_tta(a[..., :48], b[..., :48], "d4")
    from semcc.commands.caption import build_parser  # its choices are written out (no torch for --help)
    from semcc.models.tta import MASK_TTA

    tta_option = next(a for a in build_parser()._actions if a.dest == "mask_tta")
    assert list(tta_option.choices) == sorted(MASK_TTA)
