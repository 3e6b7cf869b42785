"""Every shipped config parses with the semcc CLI (LitGPT config-hub style); tiny and ablations build; every
shipped YAML states exactly its preset's model (``semcc.models.presets``)."""

from __future__ import annotations

from argparse import ArgumentError
from pathlib import Path

import pytest
import yaml
from jsonargparse import ArgumentParser

from semcc.cli import CONFIG_DIR, SemanticCCCLI
from semcc.data.datamodule import SemanticCCDataModule
from semcc.models import SemanticCC, preset_kwargs
from semcc.models.configs import upgrade_model_config
from semcc.tasks.module import SemanticCCTask

OVERRIDES = ("fsdp.yaml", "shape_check.yaml")  # overrides of the paper config, parsed on top of it below
# study/: the budget of benchmarks/paper_claims.py, an override of tiny (tests/test_paper_claims.py parses it)
BASES = sorted(p for p in CONFIG_DIR.rglob("*.yaml")
               if p.parent.name not in ("ablations", "study") and p.name not in OVERRIDES)
ABLATIONS = sorted((CONFIG_DIR / "ablations").glob("*.yaml"))


class _ParseOnly(SemanticCCCLI):
    """Parses and type-checks a config without instantiating anything."""

    def instantiate_classes(self) -> None:
        pass


def _parse(*configs: Path, extra: tuple[str, ...] = ()) -> dict:
    args = [a for c in configs for a in ("--config", str(c))] + list(extra)
    cli = _ParseOnly(SemanticCCTask, SemanticCCDataModule, args=args, run=False)
    return cli.config


def test_configs_dir_is_linked_from_repository_root() -> None:
    assert (Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml").resolve() == CONFIG_DIR / "tiny.yaml"
    assert {p.name for p in BASES} >= {"tiny.yaml", "levir.yaml"}


@pytest.mark.parametrize("config", BASES, ids=lambda p: str(p.relative_to(CONFIG_DIR)))
def test_base_config_parses(config: Path) -> None:
    cfg = _parse(config)
    assert cfg.model.strategy in ("three_stage", "two_stage", "one_stage")
    assert cfg.trainer.use_distributed_sampler is False
    encoder = cfg.model.model.init_args.encoder
    assert encoder.class_path == "semcc.models.BiTemporalSAMEncoder"


def test_paper_config_matches_the_paper() -> None:
    cfg = _parse(CONFIG_DIR / "paper" / "levir.yaml")
    enc = cfg.model.model.init_args.encoder.init_args
    assert (enc.vit.embed_dim, enc.vit.depth, list(enc.vit.global_attn_indexes)) == (1024, 24, [5, 11, 17, 23])
    assert (enc.lora.r, enc.lora.alpha, enc.lora.dropout) == (16, 32, 0.05)
    assert cfg.model.model.init_args.neck.init_args.num_units == 3
    assert cfg.model.cd_weight == 0.5 and cfg.model.optim.lr == 1e-4
    assert cfg.trainer.precision == "bf16-mixed"
    fsdp = _parse(CONFIG_DIR / "paper" / "levir.yaml", CONFIG_DIR / "paper" / "fsdp.yaml")
    assert fsdp.trainer.strategy.class_path == "semcc.tasks.sharding.PhaseFSDPStrategy"


@pytest.mark.parametrize("ablation", ABLATIONS, ids=lambda p: p.stem)
def test_ablation_overrides_parse_on_both_bases(ablation: Path) -> None:
    for base in (CONFIG_DIR / "tiny.yaml", CONFIG_DIR / "paper" / "levir.yaml"):
        cfg = _parse(base, ablation)
        head = cfg.model.model.init_args
        if "table4" in ablation.stem:
            assert cfg.model.strategy == ablation.stem.split("_", 1)[1]
        if "table3" in ablation.stem:
            position, mode = ablation.stem.split("_")[1:]
            assert head.cc_head.init_args.enhancer.position == position
            assert head.cc_head.init_args.enhancer.mode == mode
            assert head.cc_head.init_args.enhancer.concat == "channel"  # a partial override keeps the rest
            assert head.neck is None and cfg.data.sources == ["cc"]


def test_tiny_config_and_an_ablation_build(synth_root: Path, synth_config, tmp_path: Path) -> None:
    """Instantiate tiny (+ Table II row 4) on the session's small SynthLEVIR, linking the tokenizer."""
    extra = ("--data.synth_root", str(synth_root), "--data.tokenizer_dir", str(tmp_path / "tok"),
             "--data.synth.pairs", str(synth_config.pairs), "--data.synth.cd_tiles", str(synth_config.cd_tiles),
             "--data.synth.size", "64", "--data.synth.workers", "1", "--data.cd.crop_size", "64",
             "--model.model.init_args.encoder.init_args.img_size", "64",
             "--trainer.default_root_dir", str(tmp_path))
    ablation = CONFIG_DIR / "ablations" / "table2_row4_neck_cross.yaml"
    args = ["--config", str(CONFIG_DIR / "tiny.yaml"), "--config", str(ablation), *extra]
    cli = SemanticCCCLI(SemanticCCTask, SemanticCCDataModule, args=args, run=False)
    assert cli.model.model.neck.inter == "cross"
    assert cli.model.model.cc_head.tokenizer is not None
    assert len(cli.model.model.cc_head.tokenizer) == cli.model.model.cc_head.llm.config.vocab_size
    assert cli.datamodule.strategy == cli.model.strategy == "three_stage"


# ------------------------------------------------------------------- one source of truth: YAML == preset

PARTS = {"encoder": "BiTemporalSAMEncoder", "neck": "MultiTaskNeck", "cd_head": "ChangeDetectionHead",
         "cc_head": "ChangeCaptionHead"}
#: The preset each shipped base config states (``semcc.models.presets``).
PRESET_OF = {"tiny.yaml": "tiny", "paper/levir.yaml": "paper"}
#: What a YAML may state differently from its preset: where pretrained weights are read from (and where the
#: LLM directory is loaded), and the tokenizer the CLI links from the data module.
LOCAL = {"encoder.checkpoint", "cc_head.tokenizer", "cc_head.qformer.checkpoint", "cc_head.llama_proj_checkpoint",
         "cc_head.llm.path", "cc_head.llm.device"}
#: The stacks checked: each base alone, the paper overrides on it, every ablation that changes the model on
#: both bases (the preset then gets the overrides the file states, so the merge of a partial sub-config
#: override is checked too).
STACKS = [
    ("tiny.yaml",), ("paper/levir.yaml",), ("paper/levir.yaml", "paper/fsdp.yaml"),
    ("paper/levir.yaml", "paper/shape_check.yaml"),
    *[(base, f"ablations/{p.name}") for p in ABLATIONS for base in PRESET_OF
      if "model" in (yaml.safe_load(p.read_text()).get("model") or {})],
]


def _model_overrides(path: Path) -> dict:
    """The ``model.model`` parts an override file states, as :func:`preset_kwargs` overrides."""
    parts = ((yaml.safe_load(path.read_text()).get("model") or {}).get("model") or {}).get("init_args") or {}
    return {name: False if value is None else value.get("init_args") or {} for name, value in parts.items()}


def _preset_config(preset: str, **overrides) -> dict:
    kw = preset_kwargs(preset, **overrides)
    parts = {name: None if kw[name] is None else {"class_path": f"semcc.models.{cls}", "init_args": kw[name]}
             for name, cls in PARTS.items()}
    return {"class_path": "semcc.models.SemanticCC", "init_args": parts}


def _resolve(model_config: dict) -> dict[str, object]:
    """A ``model.model`` config resolved by jsonargparse (defaults filled in), as dotted keys -> values."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--model", type=SemanticCC)
    return _flat(parser.parse_object({"model": model_config}).model.as_dict())


def _flat(tree: object, prefix: str = "") -> dict[str, object]:
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() for k, v in _flat(value, f"{prefix}{key}.").items()}
    return {prefix[:-1].replace("init_args.", ""): tree}


@pytest.mark.parametrize("stack", STACKS, ids=lambda s: "+".join(Path(c).stem for c in s))
def test_shipped_yaml_states_its_preset(stack: tuple[str, ...]) -> None:
    """Every model ``init_args`` a shipped YAML (stack) states, and every default it leaves, equal the preset's."""
    stated = _flat(_parse(*(CONFIG_DIR / c for c in stack)).model.model.as_dict())
    overrides: dict = {}
    for override in stack[1:]:
        overrides.update(_model_overrides(CONFIG_DIR / override))
    preset = _resolve(_preset_config(PRESET_OF[stack[0]], **overrides))
    allowed = set(LOCAL)
    if stated.get("cc_head.llm.path") is not None:
        allowed.add("cc_head.llm.vocab_size")  # the LLM directory's vocabulary
    differ = {k: (stated.get(k, "<absent>"), preset.get(k, "<absent>")) for k in stated.keys() | preset.keys()
              if k not in allowed and stated.get(k, "<absent>") != preset.get(k, "<absent>")}
    assert not differ, f"{' + '.join(stack)} and preset {PRESET_OF[stack[0]]!r} differ (yaml, preset): {differ}"
    assert stated["encoder.class_path"] == "semcc.models.BiTemporalSAMEncoder"


def test_command_line_overrides_reach_sub_config_fields() -> None:
    head = "--model.model.init_args.cc_head.init_args"
    cfg = _parse(CONFIG_DIR / "tiny.yaml", extra=(f"{head}.llm.path", "/x", f"{head}.qformer.layers", "3",
                                                  "--model.model.init_args.encoder.init_args.lora.r", "4"))
    args = cfg.model.model.init_args
    assert args.cc_head.init_args.llm.path == "/x" and args.cc_head.init_args.llm.hidden_size == 128
    assert args.cc_head.init_args.qformer.layers == 3 and args.cc_head.init_args.qformer.hidden_size == 64
    assert (args.encoder.init_args.lora.r, args.encoder.init_args.lora.alpha) == (4, 16)
    assert args.encoder.init_args.lora.targets == ("qkv",)  # the encoder's default LoRA, kept under a merge


#: ``model.model`` of configs/tiny.yaml as written before the typed sub-configs (flat names).
FLAT_TINY = """
class_path: semcc.models.SemanticCC
init_args:
  encoder:
    class_path: semcc.models.BiTemporalSAMEncoder
    init_args: {img_size: 256, patch_size: 16, embed_dim: 64, depth: 4, num_heads: 4, window_size: 4,
                global_attn_indexes: [1, 3], out_chans: 64, bcsf_blocks: global, lora_r: 8, lora_alpha: 16,
                train_vit: true}
  neck:
    class_path: semcc.models.MultiTaskNeck
    init_args: {cd_dim: 64, cc_dim: 64, num_units: 1, num_heads: 4, inter: bilinear}
  cd_head:
    class_path: semcc.models.ChangeDetectionHead
    init_args: {in_channels: 64, patch_size: 16, fpn_channels: 32, num_classes: 1}
  cc_head:
    class_path: semcc.models.ChangeCaptionHead
    init_args: {vision_width: 64, qformer_hidden_size: 64, qformer_layers: 2, qformer_heads: 4,
                qformer_intermediate_size: 128, qformer_encoder_width: 64, num_query_tokens: 8,
                cross_attention_frequency: 1, llm_hidden_size: 128, llm_layers: 2, llm_heads: 4,
                llm_intermediate_size: 256, llm_max_positions: 256, freeze_qformer: false, llm_finetune: full,
                enhancer_position: before, max_new_tokens: 24}
"""


def test_flat_configs_of_earlier_releases_upgrade() -> None:
    """A checkpoint's stored configuration from before the sub-configs still describes the same model."""
    flat = yaml.safe_load(FLAT_TINY)
    upgraded = upgrade_model_config(flat)
    # tiny of those releases, which had no auxiliary change loss (0.14.0's tiny sets 0.5) and Eq. 6's CD head (0.15.0's
    # tiny fuses the difference)
    assert _resolve(upgraded) == _resolve(_preset_config("tiny", cd_head={"fusion": "cat"},
                                                         cc_head={"change_loss_weight": 0.0}))
    assert upgrade_model_config(upgraded) == upgraded and flat == yaml.safe_load(FLAT_TINY)  # idempotent, a copy
    with pytest.raises(ArgumentError, match="'patch_size' is not accepted"):
        _resolve(flat)  # the flat names are gone from the constructors
