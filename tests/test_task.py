"""SemanticCCTask: strategies, exact per-phase freezing, checkpoints without frozen weights, resume."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from semcc.data.datamodule import SemanticCCDataModule
from semcc.data.options import CDCropConfig, EvalDataConfig
from semcc.data.text import NO_CHANGE_SENTENCES, is_no_change
from semcc.models import build_semantic_cc
from semcc.strategies import PHASES
from semcc.tasks.evaluator import EvalConfig
from semcc.tasks.module import SemanticCCTask
from semcc.tasks.schedule import OptimConfig

HERE = Path(__file__).resolve().parent


def _data(synth_root: Path, synth_config, tmp_path: Path, **kw) -> SemanticCCDataModule:
    kw.setdefault("batch_size", 4)
    return SemanticCCDataModule(
        synth_root=str(synth_root), synth=synth_config, tokenizer_dir=str(tmp_path / "tok"),
        cd=CDCropConfig(crop_size=64, samples_per_tile=2), **kw,
    )


def _task(dm: SemanticCCDataModule, strategy: str = "three_stage", optim: dict | None = None,
          evaluation: dict | None = None, **kw) -> SemanticCCTask:
    torch.manual_seed(0)
    model = build_semantic_cc("mini", img_size=64, tokenizer=dm.tokenizer_path, cc_head={"max_new_tokens": 6})
    return SemanticCCTask(model, strategy=strategy, optim=OptimConfig(lr=1e-3, **(optim or {})),
                          evaluation=EvalConfig(log_samples=0, **(evaluation or {})), **kw)


def _trainer(tmp_path: Path, **kw) -> L.Trainer:
    kw.setdefault("max_epochs", 1)
    return L.Trainer(
        accelerator="cpu", devices=1, default_root_dir=str(tmp_path), logger=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, use_distributed_sampler=False, **kw,
    )


class PhaseRecorder(L.Callback):
    """Snapshots the weights at every phase boundary and records the batches seen."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, str, tuple[str, ...]]] = []
        self.boundaries: list[tuple[str, dict[str, torch.Tensor]]] = []

    def _snapshot(self, module: SemanticCCTask) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in module.model.named_parameters()}

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        phase = batch["phase"]
        if not self.boundaries or self.boundaries[-1][0] != phase:
            self.boundaries.append((phase, self._snapshot(module)))
        self.batches.append((phase, batch["source"], tuple(batch["name"])))

    def on_train_end(self, trainer, module) -> None:
        self.boundaries.append(("end", self._snapshot(module)))


@pytest.mark.parametrize("strategy", ["three_stage", "two_stage", "one_stage"])
def test_fast_dev_run_each_strategy(synth_root: Path, synth_config, tmp_path: Path, strategy: str) -> None:
    dm = _data(synth_root, synth_config, tmp_path, strategy=strategy)
    task = _task(dm, strategy)
    trainer = _trainer(tmp_path, fast_dev_run=True)
    trainer.fit(task, datamodule=dm)
    assert trainer.state.finished and trainer.global_step == 1
    assert torch.isfinite(trainer.callback_metrics["train/loss"])


@pytest.mark.parametrize("fused", [None, True])
def test_phases_freeze_exactly_and_train_their_parts(synth_root: Path, synth_config, tmp_path: Path,
                                                     fused: bool | None) -> None:
    dm = _data(synth_root, synth_config, tmp_path)
    task = _task(dm, optim={"weight_decay": 0.1, "fused": fused})
    recorder = PhaseRecorder()
    trainer = _trainer(tmp_path, callbacks=[recorder], limit_val_batches=0)
    trainer.fit(task, datamodule=dm)
    assert bool(trainer.optimizers[0].defaults["fused"]) is bool(fused)  # fused AdamW skips frozen parts too
    phases = [p for p, _ in recorder.boundaries[:-1]]
    assert phases == ["cd", "cc", "joint"]
    trainable = task.trainable
    for (phase, before), (_, after) in zip(recorder.boundaries, recorder.boundaries[1:], strict=False):
        parts = set(PHASES[phase].parts)
        for name, value in before.items():
            changed = not torch.equal(value, after[name])
            trains = name in trainable and name.split(".", 1)[0] in parts
            if not trains:
                assert not changed, f"{name} moved during phase {phase} although it is frozen there"
        moved = {n.split(".", 1)[0] for n, v in before.items() if not torch.equal(v, after[n])}
        assert moved == parts, f"phase {phase} moved {moved}, expected {parts}"
    # The frozen base weights never move (e.g. SAM's ViT under LoRA).
    base = [n for n in recorder.boundaries[0][1] if n not in trainable]
    assert base and all(torch.equal(recorder.boundaries[0][1][n], recorder.boundaries[-1][1][n]) for n in base)


def test_checkpoint_holds_no_frozen_weights_and_resumes_at_same_step(
    synth_root: Path, synth_config, tmp_path: Path
) -> None:
    dm = _data(synth_root, synth_config, tmp_path)
    reference = PhaseRecorder()
    _trainer(tmp_path / "a", max_epochs=2, callbacks=[reference], limit_val_batches=0).fit(_task(dm), datamodule=dm)
    per_epoch = len(reference.batches) // 2
    stop = 3  # inside phase ii (cd has 1 batch, cc 3, joint 3)
    assert reference.batches[stop][0] == "cc"

    # A mid-epoch checkpoint, as ModelCheckpoint(every_n_train_steps=...) writes it during training.
    saver = ModelCheckpoint(dirpath=tmp_path / "ckpts", every_n_train_steps=stop, save_top_k=-1, filename="{step}")
    first = _trainer(tmp_path / "b", max_epochs=1, callbacks=[saver], limit_val_batches=0)
    task = _task(dm)
    first.fit(task, datamodule=dm)
    ckpt = tmp_path / "ckpts" / f"step={stop}.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    keys = set(state["state_dict"])
    assert keys == task.trainable_parameter_names()
    assert not any("base_layer" in k for k in keys)  # LoRA's frozen base weights stay out
    frozen = {f"model.{n}" for n, _ in task.model.named_parameters()} - keys
    assert frozen and state["semcc"]["batches"] == stop and state["semcc"]["phase"] == "cc"
    full = torch.load(tmp_path / "ckpts" / f"step={2 * stop}.ckpt", map_location="cpu", weights_only=False)
    assert set(full["state_dict"]) == keys

    resumed = PhaseRecorder()
    dm2 = _data(synth_root, synth_config, tmp_path)
    second = _trainer(tmp_path / "c", max_epochs=2, callbacks=[resumed], limit_val_batches=0)
    second.fit(_task(dm2), datamodule=dm2, ckpt_path=str(ckpt))
    assert resumed.batches == reference.batches[stop:]  # same phase, same step, same samples
    assert second.global_step == 2 * per_epoch


def test_checkpoint_with_other_frozen_weights_is_refused(synth_root: Path, synth_config, tmp_path: Path) -> None:
    dm = _data(synth_root, synth_config, tmp_path)
    trainer = _trainer(tmp_path, max_steps=1, limit_val_batches=0)
    trainer.fit(_task(dm), datamodule=dm)
    trainer.save_checkpoint(tmp_path / "x.ckpt")
    torch.manual_seed(123)  # a different random base
    other = SemanticCCTask(build_semantic_cc("mini", img_size=64, tokenizer=dm.tokenizer_path))
    with pytest.raises(ValueError, match="frozen base weights differ"):
        _trainer(tmp_path, max_steps=2).fit(other, datamodule=dm, ckpt_path=str(tmp_path / "x.ckpt"))


def test_checkpoint_without_the_change_classifier_names_the_setting(synth_root: Path, synth_config,
                                                                     tmp_path: Path) -> None:
    """A checkpoint trained without the auxiliary change loss (before 0.14.0) or with Eq. 6's CD head (before 0.15.0)
    under a config that sets them: the error names the settings to use."""
    dm = _data(synth_root, synth_config, tmp_path)
    trainer = _trainer(tmp_path, max_steps=1, limit_val_batches=0)
    trainer.fit(_task(dm), datamodule=dm)
    trainer.save_checkpoint(tmp_path / "x.ckpt")
    torch.manual_seed(0)  # the same random base, and a classifier
    model = build_semantic_cc("mini", img_size=64, tokenizer=dm.tokenizer_path, cc_head={"max_new_tokens": 6,
                                                                                         "change_loss_weight": 0.5})
    with pytest.raises(KeyError, match=r"change_classifier.*change_loss_weight 0"):
        _trainer(tmp_path).validate(SemanticCCTask(model), datamodule=dm, ckpt_path=str(tmp_path / "x.ckpt"))
    # 0.14.0's tiny under 0.15.0's: the CD head's difference projection is missing too; both settings are named
    torch.manual_seed(0)
    model = build_semantic_cc("mini", img_size=64, tokenizer=dm.tokenizer_path, cd_head={"fusion": "cat_diff"},
                              cc_head={"max_new_tokens": 6, "change_loss_weight": 0.5})
    with pytest.raises(KeyError, match=r"diff_proj.*change_loss_weight 0; .*cd_head.init_args.fusion cat\b"):
        _trainer(tmp_path).validate(SemanticCCTask(model), datamodule=dm, ckpt_path=str(tmp_path / "x.ckpt"))


def test_validation_logs_cd_and_caption_metrics(synth_root: Path, synth_config, tmp_path: Path) -> None:
    dm = _data(synth_root, synth_config, tmp_path, eval_data=EvalDataConfig(batch_size=3))
    task = _task(dm)
    trainer = _trainer(tmp_path, max_steps=2)
    trainer.validate(task, datamodule=dm)
    metrics = trainer.callback_metrics
    for key in ("val/cd_f1", "val/cd_iou", "val/cd_oa", "val/cc_bleu_4", "val/cc_cider", "val/cc_s_m",
                "val/cc_change_accuracy", "val/floor_constant_bleu_4", "val/floor_oracle_constant_cider",
                "val/floor_oracle_constant_change_cider", "val/cc_nll", "val/cc_change_nll"):
        assert key in metrics, key
    assert 0.0 <= float(metrics["val/cd_oa"]) <= 1.0
    assert 0.0 < float(metrics["val/cc_nll"]) < 20.0  # a random-init model: a few nats per token


def test_reference_nll_is_the_caption_loss_of_each_pairs_references(synth_root: Path, synth_config,
                                                                     tmp_path: Path) -> None:
    """A pair's reference NLL is the teacher-forced L_cc of Eq. 9 of its references (their mean); an unchanged pair is
    scored on ``no_change_caption``, as it is trained."""
    dm = _data(synth_root, synth_config, tmp_path)
    fixed = "the scene is the same as before"
    task = _task(dm, no_change_caption=fixed).eval()
    images = torch.rand(2, 2, 3, 64, 64)
    changed = ["two houses are built on the bareland", "a road appears at the top"]
    batch = {"image_a": images[0], "image_b": images[1], "captions": [changed, list(NO_CHANGE_SENTENCES)]}
    nll, is_changed = task.reference_nll(batch)
    assert is_changed.tolist() == [True, False]

    @torch.no_grad()
    def loss(i: int, caption: str) -> float:
        out = task.model(images[0][i:i + 1], images[1][i:i + 1], captions=[caption],
                         instructions=[task.instructions[0]], tasks=("cc",))
        return float(out.cc_loss)

    assert float(nll[0]) == pytest.approx((loss(0, changed[0]) + loss(0, changed[1])) / 2, rel=1e-4)
    assert float(nll[1]) == pytest.approx(loss(1, fixed), rel=1e-4)
    # One encoder pass shared by the evaluation step: the same NLL from the batch's encoder output, also when a pair
    # without references is left out, and the same captions and masks.
    with_empty = {"image_a": torch.cat([images[0], images[0][:1]]), "image_b": torch.cat([images[1], images[1][:1]]),
                  "captions": [changed, list(NO_CHANGE_SENTENCES), []]}
    encoded = task.model.encode(with_empty["image_a"], with_empty["image_b"])
    shared, _ = task.reference_nll(with_empty, encoded)
    assert torch.allclose(shared, nll, rtol=1e-5)
    encoded = task.model.encode(batch["image_a"], batch["image_b"])
    masks, captions = task.predict_pairs(batch, encoded)
    masks_alone, captions_alone = task.predict_pairs(batch)
    assert captions == captions_alone and torch.allclose(masks, masks_alone, atol=1e-6)
    other = _task(dm).eval()  # no fixed sentence: the pair's own five references
    other.model.load_state_dict(task.model.state_dict())
    plain, _ = other.reference_nll(batch)
    assert float(plain[1]) == pytest.approx(sum(loss(1, r) for r in NO_CHANGE_SENTENCES) / 5, rel=1e-4)


def test_consistent_decoding_with_samples_chooses_among_them(synth_root: Path, synth_config, tmp_path: Path) -> None:
    """``evaluation.samples``: the evaluation step's caption is, for each pair, the first of ``choose_consistent``'s
    ranking of the greedy caption, the beams and the captions sampled with the configured seed and temperature."""
    from semcc.metrics.consistency import choose_consistent
    from semcc.metrics.truth import summarize_mask
    from semcc.models.cd_head import class_mask

    dm = _data(synth_root, synth_config, tmp_path)
    task = _task(dm, evaluation={"decoding": "consistent", "samples": 4, "temperature": 1.0, "sample_seed": 3}).eval()
    images = torch.rand(2, 3, 3, 64, 64)
    batch = {"image_a": images[0], "image_b": images[1]}
    masks, captions = task.predict_pairs(batch)
    model, prompts = task.model, task.instructions
    with torch.no_grad():
        greedy = model.generate(images[0], images[1], instructions=[prompts[0]] * 3, max_new_tokens=32)
    beams = model.caption_candidates(images[0], images[1], instructions=prompts, max_new_tokens=32, beams=2)
    drawn = model.caption_samples(images[0], images[1], instructions=prompts, samples=4, temperature=1.0,
                                  max_new_tokens=32, seed=3)
    assert all(len(d) == 4 for d in drawn)
    for i, caption in enumerate(captions):
        summary = summarize_mask(class_mask(masks[i : i + 1])[0].numpy(), task.mask_classes)
        assert caption == choose_consistent(greedy[i], beams[i], summary, samples=drawn[i])[0]


def test_consistent_decoding_with_mask_guided_candidates(synth_root: Path, synth_config, tmp_path: Path) -> None:
    """``evaluation.mask_prefixes``: the evaluation step's caption is, for each pair, the first of
    ``choose_consistent``'s ranking of the greedy caption, the beams and the captions continued from the prefixes of
    the pair's own mask (``mask_prefixes``); the setting is stored with the checkpoint's evaluation settings."""
    from semcc.metrics.consistency import choose_consistent, mask_prefixes
    from semcc.metrics.truth import summarize_mask
    from semcc.models.cd_head import class_mask
    from semcc.tasks.evaluator import EvalConfig

    assert "mask_prefixes" in EvalConfig.STORED and "road_shapes" in EvalConfig.STORED
    dm = _data(synth_root, synth_config, tmp_path)
    task = _task(dm, evaluation={"decoding": "consistent", "mask_prefixes": True}, binary_mask_class="building").eval()
    with torch.no_grad():  # a random CD head marks nothing: shift its logits so that every mask marks a building
        task.model.cd_head.proj.bias.add_(50.0)
    torch.manual_seed(0)
    images = torch.rand(2, 3, 3, 64, 64)
    batch = {"image_a": images[0], "image_b": images[1]}
    masks, captions = task.predict_pairs(batch)
    model, prompts = task.model, task.instructions
    summaries = [summarize_mask(class_mask(masks[i : i + 1])[0].numpy(), task.mask_classes) for i in range(3)]
    prefixes = [mask_prefixes(s) for s in summaries]
    assert prefixes == [["a house", "a building"]] * 3  # one component, the whole image
    with torch.no_grad():
        greedy = model.generate(images[0], images[1], instructions=[prompts[0]] * 3, max_new_tokens=32)
    beams = model.caption_candidates(images[0], images[1], instructions=prompts, max_new_tokens=32, beams=2)
    guided = model.prefixed_captions(images[0], images[1], prefixes, instruction=prompts[0], max_new_tokens=32)
    assert all(guided), "the test vocabulary has neither 'house' nor 'building'"
    extra = task.no_change_candidates()
    for i, caption in enumerate(captions):
        assert caption == choose_consistent(greedy[i], [*beams[i], *guided[i]], summaries[i], no_change=extra)[0]


@pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="needs the gloo backend")
def test_freezing_is_exact_under_two_process_ddp(run_two_process_script, tmp_path: Path) -> None:
    report = run_two_process_script("ddp_freeze_check.py", tmp_path)
    assert report["world_size"] == 2 and report["phases"] == ["cd", "cc", "joint"]
    assert report["frozen_moved"] == [], report["frozen_moved"]
    for phase, parts in report["moved_parts"].items():
        assert set(parts) == set(PHASES[phase].parts), (phase, parts)
    assert report["ranks_agree"], "the two ranks ended with different weights"


def test_predict_writes_captions_and_masks(synth_root: Path, synth_config, tmp_path: Path) -> None:
    from PIL import Image

    from semcc.tasks.writer import CaptionMaskWriter

    dm = _data(synth_root, synth_config, tmp_path, eval_data=EvalDataConfig(batch_size=4))
    writer = CaptionMaskWriter(str(tmp_path / "pred"))
    trainer = _trainer(tmp_path, callbacks=[writer])
    trainer.predict(_task(dm), datamodule=dm, return_predictions=False)
    items = json.loads((tmp_path / "pred" / "captions.json").read_text())
    names = [i["name"] for i in items]
    assert names == sorted(dm.dataset("joint", "test").names) and len(names) == 6
    assert all(isinstance(i["prediction"], str) and len(i["references"]) == 5 for i in items)
    for name in names:
        mask = Image.open(tmp_path / "pred" / "masks" / name)
        assert mask.size == (64, 64) and mask.mode == "L"
        assert set(mask.getdata()) <= {0, 255}


def test_evaluation_matches_the_radiometry_and_training_does_not(synth_root: Path, synth_config,
                                                                 tmp_path: Path) -> None:
    """``evaluation.match_radiometry``: the pairs the encoder reads in validation have the two dates' per-channel
    means matched (:func:`semcc.models.radiometry.match_radiometry`), those of a training step do not, and the
    encoder's own option is left off after either."""
    dm = _data(synth_root, synth_config, tmp_path)
    task = _task(dm, evaluation={"match_radiometry": True})
    task.model.encoder.invariant_share = 1.0  # statistics over all pixels, so that the whole images' means match
    seen: list[tuple[bool, float]] = []

    def record(module, args) -> None:  # the encoder feeds both dates to the patch embedding as one batch
        x = args[0]
        half = x.shape[0] // 2
        gap = (x[:half].mean((-2, -1)) - x[half:].mean((-2, -1))).abs().max().item()
        seen.append((torch.is_grad_enabled(), gap))

    task.model.encoder.vit.patch_embed.register_forward_pre_hook(record)
    _trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(task, datamodule=dm)
    training = [gap for grad, gap in seen if grad]
    assert training and min(training) > 1e-3  # phase i's crops as they are (SynthLEVIR's nuisance, augmentations)
    assert task.model.encoder.match_radiometry is False
    seen.clear()
    _trainer(tmp_path, limit_val_batches=2).validate(task, datamodule=dm)
    assert seen and all(not grad and gap < 1e-4 for grad, gap in seen)
    assert task.model.encoder.match_radiometry is False


def test_cached_frozen_features_match_the_encoder(synth_root: Path, synth_config, tmp_path: Path) -> None:
    dm = _data(synth_root, synth_config, tmp_path)
    dm.setup("fit")
    task = _task(dm, cache_frozen_features=True)
    task.model.eval()  # no LoRA dropout: cached and fresh outputs must agree
    batch = next(iter(dm.dataloader("cc", "train", shuffle=False)))
    task.set_phase("cc")
    first = task.feature_cache.encode(task.model.encoder, batch)
    assert len(task.feature_cache) == len(batch["name"])
    with torch.no_grad():
        fresh = task.model.encoder(batch["image_a"], batch["image_b"])
    again = task.feature_cache.encode(task.model.encoder, batch)
    for tier in ("cd_1", "cd_2", "cc_1", "cc_2"):
        assert torch.allclose(getattr(first, tier), getattr(fresh, tier), atol=1e-6)
        assert torch.equal(getattr(first, tier), getattr(again, tier))
    # The same name with other pixels is another entry; a phase that trains the encoder empties the cache.
    flipped = dict(batch, image_a=batch["image_a"].flip(-1))
    task.feature_cache.encode(task.model.encoder, flipped)
    assert len(task.feature_cache) == 2 * len(batch["name"])
    task.set_phase("cd")
    assert len(task.feature_cache) == 0
    task.model.train()
    trainer = _trainer(tmp_path, limit_val_batches=0)
    trainer.fit(task, datamodule=dm)
    assert trainer.state.finished


def test_lr_scale_gives_parts_their_own_learning_rate(synth_root: Path, synth_config, tmp_path: Path) -> None:
    dm = _data(synth_root, synth_config, tmp_path)
    task = _task(dm, optim={"lr_scale": {"cc_head": 4.0}})
    trainer = _trainer(tmp_path, fast_dev_run=True)
    trainer.fit(task, datamodule=dm)
    groups = trainer.optimizers[0].param_groups
    ids = {id(p): n.split(".", 1)[0] for n, p in task.model.named_parameters()}
    for g in groups:
        parts = {ids[id(p)] for p in g["params"]}
        assert g["initial_lr"] == pytest.approx(1e-3 * (4.0 if parts == {"cc_head"} else 1.0))
        assert parts == {"cc_head"} or "cc_head" not in parts
    plain = _task(dm)
    trainer = _trainer(tmp_path, fast_dev_run=True)
    trainer.fit(plain, datamodule=dm)
    assert [g["weight_decay"] for g in trainer.optimizers[0].param_groups] == [0.01, 0.0]
    with pytest.raises(ValueError, match="lr_scale names parts the model lacks"):
        _task(dm, optim={"lr_scale": {"decoder": 2.0}})


def test_bce_dice_loss_adds_a_dice_term(synth_root: Path, synth_config, tmp_path: Path) -> None:
    dm = _data(synth_root, synth_config, tmp_path)
    logits = torch.randn(2, 1, 8, 8)
    mask = (torch.rand(2, 8, 8) > 0.7).long()
    bce = _task(dm).mask_loss(logits, mask)
    both = _task(dm, cd_loss="bce_dice").mask_loss(logits, mask)
    assert 0 < (both - bce).item() < 1
    with pytest.raises(ValueError, match="cd_loss must be"):
        _task(dm, cd_loss="focal")


def test_no_change_caption_fixes_the_target_of_unchanged_pairs(synth_root: Path, synth_config, tmp_path: Path) -> None:
    dm = _data(synth_root, synth_config, tmp_path)
    unchanged = list(NO_CHANGE_SENTENCES)
    changed = ["two houses are built on the bareland", "a house appears at the top"]
    batch = {"captions": [unchanged, changed] * 20}
    fixed = "the scene is the same as before"
    captions, _ = _task(dm, no_change_caption=fixed).draw_captions(batch)
    assert captions[0::2] == [fixed] * 20
    assert set(captions[1::2]) == set(changed)  # changed pairs still draw among their references
    drawn, _ = _task(dm).draw_captions(batch)  # default: any of the five
    assert len(set(drawn[0::2])) > 1 and set(drawn[0::2]) <= set(unchanged)
    with pytest.raises(ValueError, match="no_change_caption must be one of the no-change sentences"):
        _task(dm, no_change_caption="nothing happened")


def test_change_loss_joins_the_caption_phases_with_labels_from_the_targets(synth_root: Path, synth_config,
                                                                          tmp_path: Path) -> None:
    dm = _data(synth_root, synth_config, tmp_path)
    dm.setup("fit")
    torch.manual_seed(0)
    model = build_semantic_cc("mini", img_size=64, tokenizer=dm.tokenizer_path,
                              cc_head={"max_new_tokens": 6, "change_loss_weight": 2.0})
    task = SemanticCCTask(model, optim=OptimConfig(lr=1e-3), evaluation=EvalConfig(log_samples=0),
                          no_change_caption="the scene is the same as before")
    batch = next(b for b in dm.train_dataloader() if b["phase"] == "cc")
    assert 0 < sum(all(map(is_no_change, refs)) for refs in batch["captions"]) < len(batch["captions"])
    task.set_phase("cc")
    seen: list[torch.Tensor] = []
    hook = model.cc_head.change_classifier.register_forward_hook(lambda m, i, o: seen.append(o.squeeze(-1)))
    torch.manual_seed(1)
    losses = task.losses(batch, "cc")
    hook.remove()
    changed = torch.tensor([not all(map(is_no_change, refs)) for refs in batch["captions"]]).float()
    expected = 2.0 * torch.nn.functional.binary_cross_entropy_with_logits(seen[0], changed)
    assert losses["change"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert losses["loss"].item() == pytest.approx((losses["cc"] + losses["change"]).item(), rel=1e-6)
    task.set_phase("cd")
    assert "change" not in task.losses(next(b for b in dm.train_dataloader() if b["phase"] == "cd"), "cd")


def test_lora_of_a_bf16_llm_trains_in_float32(synth_root: Path, synth_config, tmp_path: Path) -> None:
    """The adapters of a bf16 LLM are fp32 master weights: an AdamW step at lr 1e-6 moves every LoRA A weight."""
    dm = _data(synth_root, synth_config, tmp_path)
    torch.manual_seed(0)
    model = build_semantic_cc("mini", img_size=64, tokenizer=dm.tokenizer_path, cc_head={
        "llm": {"dtype": "bfloat16", "finetune": "lora"}, "qformer": {"freeze": True}, "max_new_tokens": 6})
    task = SemanticCCTask(model, optim=OptimConfig(lr=1e-6), evaluation=EvalConfig(log_samples=0))
    llm = dict(model.cc_head.llm.named_parameters())
    lora = {n: p for n, p in llm.items() if "lora_" in n}
    assert lora and all(p.dtype == torch.float32 for p in lora.values())
    assert any(p.dtype == torch.bfloat16 for n, p in llm.items() if "lora_" not in n)  # the frozen base stays bf16
    assert all(p.dtype == torch.float32 for n, p in model.named_parameters() if n in task.trainable)
    dm.setup("fit")
    batch = next(b for b in dm.train_dataloader() if b["phase"] == "cc")
    task.set_phase("cc")
    optimizer = torch.optim.AdamW([p for p in task.parameters() if p.requires_grad], lr=1e-6, weight_decay=0.0)
    # LoRA's B starts at zero, so A gets no gradient in the first step: take two and compare across the second.
    task.losses(batch, "cc")["loss"].backward()
    optimizer.step()
    optimizer.zero_grad()
    before = {n: p.detach().clone() for n, p in lora.items()}
    task.losses(batch, "cc")["loss"].backward()
    optimizer.step()
    a_weights = [n for n in lora if "lora_A" in n]
    assert a_weights and all(not torch.equal(before[n], lora[n]) for n in a_weights)
    # The same step in bf16 would have been lost: lr 1e-6 is below the resolution of these weights.
    w, moved = before[a_weights[0]], lora[a_weights[0]].detach()
    step = moved - w
    assert (step != 0).float().mean() > 0.5
    lost_in_bf16 = ((w.bfloat16() + step.bfloat16()) == w.bfloat16()).float().mean()
    assert lost_in_bf16 > 0.9


def test_single_task_captioning_trains_bcsf_and_the_encoder_adapters(
    synth_root: Path, synth_config, tmp_path: Path
) -> None:
    """Table II row 2 in miniature: caption_only on D_cc moves BCSF and the encoder's LoRA by the caption loss."""
    dm = _data(synth_root, synth_config, tmp_path, sources=["cc"], eval_data=EvalDataConfig(sources=["cc"]),
               strategy="caption_only")
    torch.manual_seed(0)
    model = build_semantic_cc("mini", img_size=64, tokenizer=dm.tokenizer_path, neck=False, cd_head=False,
                              cc_head={"enhancer": {"position": "none"}, "max_new_tokens": 6})
    with pytest.raises(ValueError, match=r"no cd_head .*strategy caption_only"):
        SemanticCCTask(model, strategy="three_stage")
    task = SemanticCCTask(model, strategy="caption_only", optim=OptimConfig(lr=1e-3),
                          evaluation=EvalConfig(log_samples=0))
    recorder = PhaseRecorder()
    _trainer(tmp_path, max_steps=2, callbacks=[recorder], limit_val_batches=0).fit(task, datamodule=dm)
    (phase, before), (_, after) = recorder.boundaries
    assert phase == "caption"
    moved = {n for n in before if not torch.equal(before[n], after[n])}
    bcsf = {n for n in before if n.startswith("encoder.bcsf.")}
    lora = {n for n in before if n.startswith("encoder.") and "lora_" in n}
    assert bcsf and bcsf <= moved
    assert {n for n in lora if "lora_B" in n} <= moved  # B moves first (A gets gradients once B is non-zero)
    assert not {n for n in moved if n not in task.trainable}  # frozen base weights stay put


def test_frozen_weights_are_hashed_once_per_process(synth_root: Path, synth_config, tmp_path: Path,
                                                    monkeypatch) -> None:
    """Saving costs no hash of the frozen model: it is computed once (at setup) however often a run saves."""
    import semcc.tasks.checkpointing as checkpointing

    calls = []
    real = checkpointing.hash_frozen
    monkeypatch.setattr(checkpointing, "hash_frozen", lambda *a, **k: calls.append(k) or real(*a, **k))
    dm = _data(synth_root, synth_config, tmp_path)
    task = _task(dm)
    saver = ModelCheckpoint(dirpath=tmp_path / "ckpts", every_n_train_steps=1, save_top_k=-1, filename="{step}")
    _trainer(tmp_path, max_steps=3, callbacks=[saver], limit_val_batches=0).fit(task, datamodule=dm)
    assert len(list((tmp_path / "ckpts").glob("*.ckpt"))) == 3 and calls == [{}]
    state = torch.load(tmp_path / "ckpts" / "step=3.ckpt", map_location="cpu", weights_only=False)
    assert state["semcc"]["frozen_fingerprint"] == task.frozen_fingerprint()
    # A checkpoint from before fingerprint version 2 (float32 copies hashed) still loads, and is still checked.
    legacy = dict(state, semcc={k: v for k, v in state["semcc"].items() if k != "fingerprint_version"})
    legacy["semcc"]["frozen_fingerprint"] = real(task.model, task.trainable, legacy=True)
    _task(dm).on_load_checkpoint(legacy)
    legacy["semcc"]["frozen_fingerprint"] = "0" * 64
    with pytest.raises(ValueError, match="frozen base weights differ"):
        _task(dm).on_load_checkpoint(legacy)


def test_evaluation_mask_tta_scores_the_averaged_mask(synth_root: Path, synth_config, tmp_path: Path) -> None:
    """``evaluation.mask_tta: flips``: validation scores the mask averaged over the pair and its three flips
    (three more encoder passes per batch, without autograd), and the checkpoint keeps the setting."""
    dm = _data(synth_root, synth_config, tmp_path, eval_data=EvalDataConfig(batch_size=3))
    runs = {}
    for tta in ("none", "flips"):
        task = _task(dm, evaluation={"mask_tta": tta, "reference_nll": False})
        calls: list[int] = []
        seen: list[torch.Tensor] = []
        task.model.encoder.register_forward_pre_hook(lambda module, args, calls=calls: calls.append(1))

        def update(stage, batch, logits, captions, seen=seen, original=task.evaluator.update) -> None:
            seen.append(logits.clone())
            original(stage, batch, logits, captions)

        task.evaluator.update = update
        trainer = _trainer(tmp_path, limit_val_batches=2)
        trainer.validate(task, datamodule=dm)
        runs[tta] = (len(calls), seen, float(trainer.callback_metrics["val/loss_cd"]))
        assert task.hparams["evaluation"]["mask_tta"] == tta
    (n_none, masks_none, loss_none), (n_flips, masks_flips, loss_flips) = runs["none"], runs["flips"]
    assert n_flips == 4 * n_none
    assert len(masks_none) == len(masks_flips) == 2
    task.model.eval()
    batch = next(iter(dm.val_dataloader()[0]))
    with torch.no_grad():
        expected = task.model.mask_logits_tta(batch["image_a"], batch["image_b"], "flips")
    assert torch.allclose(masks_flips[0], expected, atol=1e-5)
    assert not torch.allclose(masks_none[0], masks_flips[0], atol=1e-4)
    assert loss_none != loss_flips
