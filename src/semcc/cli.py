"""LightningCLI for semcc: ``semcc fit | validate | test | predict --config ...`` (torchgeo-style).

The task (:class:`~semcc.tasks.module.SemanticCCTask`, loss Eq. 9, strategy Sec. III-F) and the data
(:class:`~semcc.data.datamodule.SemanticCCDataModule`) are configured in YAML; two values are linked so a
config states them once: the training strategy (task -> data, which orders the phase batches) and the
word-level tokenizer the data builds from its training captions (data -> caption head, at instantiation,
so the data and the tokenizer exist before the model is built). Without ``--config`` the embedded default
``configs/tiny.yaml`` is used.

Errors in what the user gave follow the commands' convention (:mod:`semcc.commands`): an unknown or badly
typed configuration key and a ``--ckpt_path`` that is not a file raise
:class:`~semcc.commands.CommandError` (one line, exit status 1) before anything is built.
:func:`quiet_console` silences the third-party console noise that is known to be harmless (each filter says
why); warnings of semcc's own are fixed where they arise.

With ``--ckpt_path`` LightningCLI rebuilds the task from the checkpoint's hyperparameters, which replace the
configured ones. For the evaluation settings (``model.evaluation``) semcc keeps what the run asks for: the settings a
checkpoint stores (:data:`EvalConfig.STORED <semcc.tasks.evaluator.EvalConfig>`: decoding, beams, the change share...)
come from the checkpoint unless given on the command line (``--model.evaluation.KEY``); the others (METEOR, the
report...) from the run's configuration, never reset to their defaults.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy
from lightning.pytorch.utilities import rank_zero_only

from semcc.commands import CommandError
from semcc.data.datamodule import SemanticCCDataModule
from semcc.tasks.evaluator import EvalConfig
from semcc.tasks.module import SemanticCCTask
from semcc.tasks.writer import CaptionMaskWriter

__all__ = ["CONFIG_DIR", "SemanticCCCLI", "check_ckpt_path", "close_process_group", "quiet_console", "rank_zero_print",
           "run_lightning_cli"]

#: The shipped configs (``configs/`` at the repository root links here).
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
TOKENIZER_TARGET = "model.model.init_args.cc_head.init_args.tokenizer"


class _DropLightningTips(logging.Filter):
    """Drops Lightning's "💡 Tip: For seamless cloud ..." adverts (litlogger, litmodels); keeps every other line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip: For seamless cloud")


_TIPS = _DropLightningTips()
#: The loggers Lightning's ``rank_zero_info`` writes through (the fabric one in older releases).
_RANK_ZERO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


def quiet_console(subcommand: str | None = None) -> None:
    """Silence the third-party console lines of a LightningCLI run that are known to be harmless.

    Each filter matches one message (and its category) only:

    * Lightning's advertisement for its cloud loggers ("💡 Tip: For seamless cloud logging ... litlogger", and
      the litmodels one), printed on every run that does not use them: an advert, not a diagnostic.
    * torch's ``FutureWarning`` "`isinstance(treespec, LeafSpec)` is deprecated", raised by Lightning's own
      copy of ``tree_flatten`` (``lightning/pytorch/utilities/_pytree.py``) with torch >= 2.10: Lightning's
      code, not semcc's, and the flattening it does is unchanged.
    * For ``validate``, ``test`` and ``predict`` only: ModelCheckpoint's "The dirpath has changed from ...
      won't be reloaded" when the checkpoint of a fit is loaded into a new run folder. These subcommands write
      no checkpoints, so the callback state it did not reload is never used. (A resumed ``fit`` keeps the
      warning: there it tells the user that the best-k bookkeeping starts afresh.)
    * Lightning's "You're resuming from a checkpoint that ended before the epoch ended and your dataloader is
      not resumable": semcc's loader is resumable in its own way. The checkpoint stores the position in the
      schedule and the task hands it to the data module (``resume_at``), whose phase sampler skips the batches
      already done (``tests/test_task.py``: a resumed run continues at the same phase and step).
    """
    for name in _RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if _TIPS not in logger.filters:
            logger.addFilter(_TIPS)
    warnings.filterwarnings(
        "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning,
        module=r"lightning\.pytorch\.utilities\._pytree",
    )
    warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")
    if subcommand in ("validate", "test", "predict"):
        warnings.filterwarnings("ignore", message="The dirpath has changed from", category=UserWarning,
                                module=r"lightning\.pytorch\.callbacks\.model_checkpoint")


def check_ckpt_path(ckpt_path: Any) -> None:
    """Raise :class:`~semcc.commands.CommandError` when ``--ckpt_path`` names a local file that does not exist,
    a folder, or a file that is not a PyTorch checkpoint (a zip archive, as ``torch.save`` writes them).

    Lightning's special values (``last``, ``best``, ``hpc``, ``registry[:...]``) and remote URLs are left to
    Lightning.
    """
    if not ckpt_path:
        return
    text = str(ckpt_path)
    if text in ("last", "best", "hpc") or text.startswith("registry") or "://" in text:
        return
    path = Path(text).expanduser()
    if path.is_dir():
        raise CommandError(f"{text}: is a folder, not a checkpoint file (--ckpt_path)")
    if not path.is_file():
        raise CommandError(f"{text}: no such checkpoint file (--ckpt_path)")
    if not zipfile.is_zipfile(path):
        raise CommandError(f"{text}: not a PyTorch checkpoint (not the zip archive torch.save writes) (--ckpt_path)")


def stored_evaluation(ckpt_path: Any) -> set[str]:
    """The evaluation settings a checkpoint stores: its ``hyper_parameters["evaluation"]`` keys that are
    :data:`EvalConfig.STORED <semcc.tasks.evaluator.EvalConfig>` (a checkpoint of an earlier release lacks the settings
    added since; the run's configuration gives those). Read through a memory map, so the weights are not loaded."""
    import torch

    ckpt = torch.load(Path(str(ckpt_path)).expanduser(), weights_only=True, map_location="cpu", mmap=True)
    evaluation = ckpt.get("hyper_parameters", {}).get("evaluation") or {}
    return {name for name in evaluation if name in EvalConfig.STORED}


def explicit_options(args: Sequence[str], group: str) -> set[str]:
    """The keys of ``group`` that a command line sets (``--group.key value`` or ``--group.key=value``); ``""`` when
    it sets the whole group (``--group '{...}'``)."""
    prefix = f"--{group}"
    keys = set()
    for arg in args:
        if not arg.startswith(prefix):
            continue
        rest = arg[len(prefix):].split("=", 1)[0]
        if rest == "":
            keys.add("")
        elif rest.startswith("."):
            keys.add(rest[1:].split(".", 1)[0])
    return keys


def _config_files(args: Sequence[str]) -> list[str]:
    """The files given with ``--config FILE`` / ``--config=FILE``, last first (the last one wins)."""
    files = [
        arg.split("=", 1)[1] if arg.startswith("--config=") else args[i + 1]
        for i, arg in enumerate(args)
        if arg.startswith("--config=") or (arg == "--config" and i + 1 < len(args))
    ]
    return files[::-1]


def _file_with_key(key: str, files: Sequence[str]) -> str | None:
    """The config file (of ``files``) that sets the dotted ``key``, if one does."""
    for file in files:
        try:
            node: Any = yaml.safe_load(Path(file).expanduser().read_text())
        except (OSError, yaml.YAMLError):
            continue
        for part in key.split("."):
            node = node.get(part, _MISSING) if isinstance(node, dict) else _MISSING
        if node is not _MISSING:
            return file
    return None


_MISSING = object()
_KEY_IN_MESSAGE = re.compile(r"""(?:option|[Kk]ey) ["']([\w.]+)["']""")


def _parse_error_message(message: str, args: Sequence[str]) -> str:
    """jsonargparse's error on one line, prefixed with the config file that sets the key it names."""
    message = " ".join(message.split())
    match = _KEY_IN_MESSAGE.search(message)
    file = _file_with_key(match.group(1), _config_files(args)) if match else None
    return f"{file}: {message}" if file else message


def _option_group_error(message: str) -> str | None:
    """The option group's own errors in jsonargparse's "no Union subtype" error (``group | None`` options), on
    one line; ``None`` for any other error."""
    if not message.startswith("Does not validate against any of the Union subtypes"):
        return None
    errors = [line.strip()[2:] for line in message.splitlines()
              if line.strip().startswith("- ") and "Expected a <class 'NoneType'>" not in line]
    return "; ".join(" ".join(e.split()) for e in errors) or None


class SemanticCCCLI(LightningCLI):
    """LightningCLI with semcc's links between the task, the model and the data."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("model.strategy", "data.strategy")
        parser.link_arguments("data.tokenizer_path", TOKENIZER_TARGET, apply_on="instantiate")

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse, then check ``--ckpt_path`` before Lightning reads it and anything is built (one line for a
        missing or unreadable file)."""
        given = sys.argv[1:] if args is None else args  # a dict or Namespace of arguments sets no option by name
        self._command_line = [str(a) for a in given] if isinstance(given, (list, tuple)) else []
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        if subcommand:
            check_ckpt_path(self.config[subcommand].get("ckpt_path"))

    def _parse_ckpt_path(self) -> None:
        """Lightning's merge of the checkpoint's hyperparameters, then the run's evaluation settings put back (see
        the module doc): the stored ones given on the command line, and every one the checkpoint does not store."""
        key = f"{self.config.get('subcommand')}.model.evaluation"
        asked = self.config.get(key)
        super()._parse_ckpt_path()
        merged = self.config.get(key)
        if asked is None or merged is None or merged is asked:  # no subcommand, no evaluation, or nothing merged
            return
        given = explicit_options(self._command_line, "model.evaluation")
        stored = stored_evaluation(self.config[self.config.get("subcommand")].get("ckpt_path"))
        for name in vars(asked):
            if "" in given or name in given or name not in stored:
                merged[name] = asked[name]

    def instantiate_classes(self) -> None:
        """Instantiate, then hand the run's configuration (YAML) to the task, which stores it in checkpoints.

        A typed option group that refuses its values (its ``__post_init__``, e.g. ``--data.augment.haze 1.5``) is
        one line (:class:`~semcc.commands.CommandError`), not jsonargparse's traceback."""
        try:
            super().instantiate_classes()
        except ValueError as err:
            if (message := _option_group_error(str(err))) is None:
                raise
            raise CommandError(message) from None
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
        if not isinstance(self.trainer.strategy, (FSDPStrategy, ModelParallelStrategy)):
            # WeightAveraging (tiny's EMA) warns whenever the module overrides configure_model, which SemanticCCTask
            # does for FSDP only: without a sharding strategy nothing is sharded and the warning does not apply.
            warnings.filterwarnings("ignore", message="You're using the WeightAveraging callback with a model that "
                                    "overrides the configure_model callback")

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


def close_process_group() -> None:
    """After a finished run, wait for every rank and destroy ``torch.distributed``'s default process group, if one is
    open. Lightning destroys an NCCL group at exit but leaves a gloo one (DDP on CPUs) to the interpreter's shutdown,
    where its threads can abort a run that has already finished ("terminate called without an active exception",
    exit status -6)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def run_lightning_cli(args: Sequence[str]) -> SemanticCCCLI:
    """Run a LightningCLI subcommand; ``fit`` without ``--config`` uses the embedded ``tiny.yaml``.

    The arguments are put in ``sys.argv`` for the run (and restored after), because Lightning's DDP
    launcher starts the other ranks by re-running ``sys.argv``. A parse error (an unknown or badly typed
    configuration key, a missing config file) raises :class:`~semcc.commands.CommandError` with jsonargparse's
    message on one line; ``--help`` and ``--print_config`` exit as usual.
    """
    args = list(args)
    has_config = any(a == "--config" or a.startswith("--config=") for a in args)
    asks_help = any(a in ("-h", "--help") or a.startswith("--print_config") for a in args)
    if args and args[0] == "fit" and not has_config and not asks_help:
        args = [args[0], "--config", str(CONFIG_DIR / "tiny.yaml"), *args[1:]]
    quiet_console(args[0] if args else None)
    saved = sys.argv
    sys.argv = [saved[0] if saved else "semcc", *args]
    try:
        return SemanticCCCLI(
            SemanticCCTask, SemanticCCDataModule, save_config_kwargs={"overwrite": True},
            parser_kwargs={"exit_on_error": False},  # parse errors raise: one line, not usage + traceback
        )
    except argparse.ArgumentError as err:
        raise CommandError(_parse_error_message(str(err), args)) from None
    finally:
        sys.argv = saved
