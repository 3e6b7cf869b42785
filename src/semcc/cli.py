"""LightningCLI for semcc: ``semcc fit | validate | test | predict --config ...`` (torchgeo-style).

The task (:class:`~semcc.tasks.module.SemanticCCTask`, loss Eq. 9, strategy Sec. III-F) and the data
(:class:`~semcc.data.datamodule.SemanticCCDataModule`) are configured in YAML; two values are linked so a
config states them once: the training strategy (task -> data, which orders the phase batches) and the
word-level tokenizer the data builds from its training captions (data -> caption head, at instantiation,
so the data and the tokenizer exist before the model is built). Without ``--config`` the embedded default
``configs/tiny.yaml`` is used.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_only

from semcc.data.datamodule import SemanticCCDataModule
from semcc.tasks.module import SemanticCCTask
from semcc.tasks.writer import CaptionMaskWriter

__all__ = ["CONFIG_DIR", "SemanticCCCLI", "rank_zero_print", "run_lightning_cli"]

#: The shipped configs (``configs/`` at the repository root links here).
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
TOKENIZER_TARGET = "model.model.init_args.cc_head.init_args.tokenizer"


class SemanticCCCLI(LightningCLI):
    """LightningCLI with semcc's links between the task, the model and the data."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("model.strategy", "data.strategy")
        parser.link_arguments("data.tokenizer_path", TOKENIZER_TARGET, apply_on="instantiate")

    def instantiate_classes(self) -> None:
        """Instantiate, then hand the run's configuration (YAML) to the task, which stores it in checkpoints."""
        super().instantiate_classes()
        sub = self.subcommand
        config = self.config.get(str(sub), self.config) if sub else self.config
        parser = self._parser(sub) if sub else self.parser
        if isinstance(self.model, SemanticCCTask):
            self.model.run_config = parser.dump(config)

    def before_predict(self) -> None:
        """Add a :class:`CaptionMaskWriter` (``<default_root_dir>/predictions``) unless one is configured."""
        if not any(isinstance(c, BasePredictionWriter) for c in self.trainer.callbacks):
            out = Path(self.trainer.default_root_dir) / "predictions"
            self.trainer.callbacks.append(CaptionMaskWriter(str(out)))

    def before_fit(self) -> None:
        log_dir = self.trainer.log_dir or self.trainer.default_root_dir
        rank_zero_print(f"semcc: logs and metrics go to {log_dir}")

    def after_fit(self) -> None:
        log_dir = self.trainer.log_dir or self.trainer.default_root_dir  # a collective: every rank asks
        if not self.trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith("val/")}
        if metrics:
            print("semcc: last validation")
            for key in sorted(metrics):
                print(f"  {key:<44} {metrics[key]:.4f}")
        ckpt = self.trainer.checkpoint_callback
        for what in ("best", "last"):
            path = getattr(ckpt, f"{what}_model_path", "") if ckpt is not None else ""
            if path and Path(path).is_file():
                print(f"semcc: {what} checkpoint {path}")
        if (Path(log_dir) / "metrics.csv").is_file():
            print(f"semcc: metrics in {Path(log_dir) / 'metrics.csv'}")

    def after_test(self) -> None:
        paths = getattr(self.model, "report_paths", {})
        if paths and self.trainer.is_global_zero:
            print("semcc: test report " + ", ".join(str(p) for p in paths.values()))


@rank_zero_only
def rank_zero_print(message: str) -> None:
    """``print`` on the global rank 0 only (one line per run, not one per DDP rank)."""
    print(message)


def run_lightning_cli(args: Sequence[str]) -> SemanticCCCLI:
    """Run a LightningCLI subcommand; ``fit`` without ``--config`` uses the embedded ``tiny.yaml``.

    The arguments are put in ``sys.argv`` for the run (and restored after), because Lightning's DDP
    launcher starts the other ranks by re-running ``sys.argv``.
    """
    args = list(args)
    has_config = any(a == "--config" or a.startswith("--config=") for a in args)
    asks_help = any(a in ("-h", "--help") or a.startswith("--print_config") for a in args)
    if args and args[0] == "fit" and not has_config and not asks_help:
        args = [args[0], "--config", str(CONFIG_DIR / "tiny.yaml"), *args[1:]]
    saved = sys.argv
    sys.argv = [saved[0] if saved else "semcc", *args]
    try:
        return SemanticCCCLI(SemanticCCTask, SemanticCCDataModule, save_config_kwargs={"overwrite": True})
    finally:
        sys.argv = saved
