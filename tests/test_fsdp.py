"""FSDP2 for SemanticCC (:mod:`semcc.tasks.sharding`): the unit plan's dtypes, and a real 2-process CPU run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from semcc.models import build_semantic_cc
from semcc.strategies import PHASES
from semcc.tasks.loading import load_task
from semcc.tasks.sharding import fsdp_units, unit_dtype_plan

HERE = Path(__file__).resolve().parent
PAPER_FREEZING = {"llm": {"dtype": "bfloat16", "finetune": "lora"}, "qformer": {"freeze": True}}


def _meta_model(llm: dict, **cc_head):
    with torch.device("meta"):
        return build_semantic_cc("mini", img_size=64, cc_head={"llm": {"vocab_size": 50, **llm}, **cc_head})


def test_units_train_one_dtype_in_every_phase() -> None:
    model = _meta_model(**PAPER_FREEZING)
    units = dict(fsdp_units(model))
    assert units[""] is model and units["encoder"] is model.encoder
    assert all(units[f"encoder.vit.blocks.{i}"] is b for i, b in enumerate(model.encoder.vit.blocks))
    assert all(units[f"cc_head.llm.model.layers.{i}"] is x for i, x in enumerate(model.cc_head.llm.model.layers))
    assert units["cc_head.llm.model.embed_tokens"] is model.cc_head.llm.model.embed_tokens
    plan = unit_dtype_plan(model)
    assert set(plan) == set(PHASES)
    assert all(len(dtypes) <= 1 for phase in plan.values() for dtypes in phase.values())
    assert plan["cc"]["cc_head.llm.model.layers.0"] == ["float32"]  # LoRA, beside a bf16 frozen base
    assert plan["cd"]["cc_head.llm.model.layers.0"] == []
    # Ablations: parts left out leave their units out.
    with torch.device("meta"):
        plain = build_semantic_cc("mini", img_size=64, neck=False, cc_head=False)
    assert [n for n, _ in fsdp_units(plain)] == [f"encoder.vit.blocks.{i}" for i in range(4)] + ["encoder", ""]
    unit_dtype_plan(plain)


def test_a_unit_training_two_dtypes_is_refused() -> None:
    model = _meta_model(**PAPER_FREEZING)
    model.cc_head.llama_proj.bias.data = model.cc_head.llama_proj.bias.data.bfloat16()  # root: fp32 and bf16
    with pytest.raises(ValueError, match=r"unit '<root>' in phase 'cc'.*bfloat16"):
        unit_dtype_plan(model)


@pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="needs the gloo backend")
def test_fsdp2_shards_trains_each_phase_and_freezes_exactly(run_two_process_script, tmp_path: Path) -> None:
    report = run_two_process_script("fsdp_phase_check.py", tmp_path)
    assert report["world_size"] == 2 and report["strategy"] == "PhaseFSDPStrategy"
    assert report["precision"] == "bf16-mixed"
    assert all(report["units"].values()), report["units"]  # SAM blocks, Llama layers, ..., root; all DTensors
    assert report["llm_dtypes"] == ["torch.bfloat16"] and report["trainable_dtypes"] == ["torch.float32"]
    # Generation ran through the sharded model (sanity check), and left the root gathered at the first flip.
    assert "val/cc_bleu_4" in report["sanity_metrics"] and "val/cd_f1" in report["sanity_metrics"]
    assert report["first_flip_on_gathered_root"] is True
    assert report["cached_pairs"] > 0  # the frozen-feature cache called the encoder unit on its own
    # Generation of 1 token on rank 0 and 5 on rank 1: rank 0 kept calling the LLM (in step) until rank 1 ended.
    assert report["generation_by_rank"] == [{"new_tokens": 1, "llm_calls": 5}, {"new_tokens": 5, "llm_calls": 5}]
    # One optimiser step at least in each phase; frozen weights bit-identical, trained parts moved.
    assert report["phases"] == ["cd", "cc", "joint"] and report["steps"] == 7
    assert report["frozen_moved"] == [], report["frozen_moved"]
    for phase, parts in report["moved_parts"].items():
        assert set(parts) == set(PHASES[phase].parts), (phase, parts)
    assert report["ranks_agree"], "the two ranks gathered different weights"
    local, whole = report["lm_head_numel"]
    assert 0 < local <= (whole + 1) // 2  # rank 0 holds a shard, not the whole
    # The fingerprint is taken before sharding; hashing state_dict() of the sharded model meets DTensors.
    stored = report["ckpt_semcc"]["frozen_fingerprint"]
    assert stored == report["fingerprint_before_sharding"]
    assert all(f.startswith("DTensor: ") and f != f"DTensor: {stored}" for f in report["fingerprints_on_sharded_model"])
    # Checkpoints: single files holding exactly the trainable weights, full CPU tensors, and the optimiser state.
    assert report["checkpoints"] == ["step=5.ckpt"] and report["ckpt_is_file"]
    assert report["ckpt_keys_equal_trainable"] and report["ckpt_has_frozen"] == []
    assert report["ckpt_all_cpu_full"] and report["ckpt_optimizer_states"] == 1
    assert report["ckpt_optimizer_groups_in_order"]
    assert report["ckpt_semcc"]["phase"] == "joint" and report["ckpt_semcc"]["batches"] == 5
    # Resume: the loaded weights and optimiser state are the saved ones, and the run goes on where it stopped.
    assert report["resume_start_step"] == 5 and report["resume_loaded_equal_saved"]
    assert report["resume_optimizer_difference"] is None, report["resume_optimizer_difference"]
    assert report["resume_batches"] == report["reference_batches"][5:]
    assert report["resume_phases"] == ["joint"] and report["resume_steps"] == 7
    # semcc's loader rebuilds the (unsharded) model from the file alone: the frozen fingerprint matches and the
    # trainable weights are the saved ones.
    ckpt = tmp_path / "ckpts" / "step=5.ckpt"
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    task = load_task(ckpt)
    params = dict(task.named_parameters())
    assert all(torch.equal(params[name], value) for name, value in saved.items())
