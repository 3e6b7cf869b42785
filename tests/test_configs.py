"""Every shipped config parses with the semcc CLI (LitGPT config-hub style); tiny and ablations build."""

from __future__ import annotations

from pathlib import Path

import pytest

from semcc.cli import CONFIG_DIR, SemanticCCCLI
from semcc.data.datamodule import SemanticCCDataModule
from semcc.tasks.module import SemanticCCTask

OVERRIDES = ("fsdp.yaml", "shape_check.yaml")  # overrides of the paper config, parsed on top of it below
BASES = sorted(p for p in CONFIG_DIR.rglob("*.yaml") if p.parent.name != "ablations" and p.name not in OVERRIDES)
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
    assert (enc.embed_dim, enc.depth, list(enc.global_attn_indexes)) == (1024, 24, [5, 11, 17, 23])
    assert (enc.lora_r, enc.lora_alpha, enc.lora_dropout) == (16, 32, 0.05)
    assert cfg.model.model.init_args.neck.init_args.num_units == 3
    assert cfg.model.cd_weight == 0.5 and cfg.model.lr == 1e-4
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
            assert head.cc_head.init_args.enhancer_position == position
            assert head.cc_head.init_args.enhancer_mode == mode
            assert head.neck is None and cfg.data.sources == ["cc"]


def test_tiny_config_and_an_ablation_build(synth_root: Path, synth_config, tmp_path: Path) -> None:
    """Instantiate tiny (+ Table II row 4) on the session's small SynthLEVIR, linking the tokenizer."""
    extra = ("--data.synth_root", str(synth_root), "--data.tokenizer_dir", str(tmp_path / "tok"),
             "--data.synth.pairs", str(synth_config.pairs), "--data.synth.cd_tiles", str(synth_config.cd_tiles),
             "--data.synth.size", "64", "--data.synth.workers", "1", "--data.cd_crop_size", "64",
             "--model.model.init_args.encoder.init_args.img_size", "64",
             "--trainer.default_root_dir", str(tmp_path))
    ablation = CONFIG_DIR / "ablations" / "table2_row4_neck_cross.yaml"
    args = ["--config", str(CONFIG_DIR / "tiny.yaml"), "--config", str(ablation), *extra]
    cli = SemanticCCCLI(SemanticCCTask, SemanticCCDataModule, args=args, run=False)
    assert cli.model.model.neck.inter == "cross"
    assert cli.model.model.cc_head.tokenizer is not None
    assert len(cli.model.model.cc_head.tokenizer) == cli.model.model.cc_head.llm.config.vocab_size
    assert cli.datamodule.strategy == cli.model.strategy == "three_stage"
