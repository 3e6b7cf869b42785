"""The ``semcc`` commands: one table of every command, and one convention for errors in what a user gave.

:data:`COMMANDS` maps each command name to the module of this package that implements it and a one-line help
(``semcc --help`` prints the table, :func:`usage`). LightningCLI's ``fit``, ``validate``, ``test`` and
``predict`` go through :mod:`semcc.commands.lightning` (jsonargparse parses their options, the YAML configs);
semcc's own commands (``caption``, ``figure``, ``evaluate``, ``synth``, ``dataset``, ``shape-files``, ``serve``) are one
module each, with ``build_parser() -> argparse.ArgumentParser`` and ``run(args) -> int``. The library functions
they call stay where they are (:mod:`semcc.inference`, :mod:`semcc.visualize`, :mod:`semcc.evaluate`, ...): a command
module only reads options, calls them and prints.

Error convention (:func:`run_command`, the one place that applies it):

* **Bad input** (a missing or unreadable file, a bad value, an unknown configuration key, a checkpoint that
  cannot be read): one line on stderr, ``semcc COMMAND: WHAT: PROBLEM`` (the file or option first), exit
  status 1, no traceback. Bad input is a :class:`CommandError`, an error type of semcc's that subclasses
  ``ValueError`` (``LevirDataError``, ``InputImageError``, ``CheckpointError``, ``CheckpointConfigError``), a
  ``ValueError`` or ``OSError`` raised by semcc's own checks, or an ``OSError`` naming a file.
* **Command-line syntax** of semcc's own commands (a missing or unknown option): argparse's usage and message,
  exit status 2, as for an unknown command.
* **Anything else is a bug** and keeps its traceback. ``SEMCC_TRACEBACK=1`` shows the traceback of bad input
  too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import import_module
from types import ModuleType, TracebackType

__all__ = ["COMMANDS", "Command", "CommandError", "bad_input_message", "run_command", "usage"]


class CommandError(Exception):
    """Bad input to a command; the message is one line that starts with the file or option at fault."""


@dataclass(frozen=True)
class Command:
    """One row of the command table.

    Attributes:
        module: the module of :mod:`semcc.commands` that implements the command.
        help: the one line ``semcc --help`` prints for it.
        lightning: a LightningCLI subcommand (its module's ``run(subcommand, argv)`` parses the options)
            rather than one of semcc's own (``build_parser()`` and ``run(args)``).
    """

    module: str
    help: str
    lightning: bool = False

    def load(self) -> ModuleType:
        """The implementing module (imported on first use: ``semcc --help`` imports no torch)."""
        return import_module(f"{__name__}.{self.module}")


#: Every ``semcc`` command, in the order ``semcc --help`` lists them.
COMMANDS: dict[str, Command] = {
    "fit": Command("lightning", "train (default config: configs/tiny.yaml, embedded)", lightning=True),
    "validate": Command("lightning", "run validation: CD and caption metrics", lightning=True),
    "test": Command("lightning", "score the test split: CD and caption metrics, report.md", lightning=True),
    "predict": Command(
        "lightning", "caption and segment a split (or a folder: --data.eval_data.predict_root DIR)", lightning=True
    ),
    "caption": Command("caption", "caption your own pair: semcc caption BEFORE AFTER --ckpt CKPT (mask, overlay)"),
    "figure": Command("figure", "draw a Fig. 9-style picture of N pairs of a split with a checkpoint"),
    "evaluate": Command("evaluate", "score any program's captions.json against LevirCCcaptions.json, with floors"),
    "synth": Command("synth", "generate the SynthLEVIR data set (and a preview picture)"),
    "dataset": Command("dataset", "build a LEVIR-CC data set from your pairs and captions (CSV, JSON Lines)"),
    "shape-files": Command("shape_files", "write random checkpoint files of the paper's parts in their real formats"),
    "serve": Command("serve", "a local web page: upload a pair, see caption, mask and consistency (semcc[app])"),
}


def usage() -> str:
    """What ``semcc`` and ``semcc --help`` print: the command table, one line per command."""
    width = max(map(len, COMMANDS)) + 2
    lines = ["usage: semcc COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<{width}}{command.help}" for name, command in COMMANDS.items()]
    lines += ["", "Run 'semcc COMMAND --help' for a command's options."]
    return "\n".join(lines)


def _raising_module(tb: TracebackType | None) -> str:
    """The module of the innermost frame of a traceback (where the exception was raised)."""
    name = ""
    while tb is not None:
        name = str(tb.tb_frame.f_globals.get("__name__", ""))
        tb = tb.tb_next
    return name


def _one_line(message: str) -> str:
    """``message`` on one line; an error re-raised from a DataLoader worker keeps only the original message."""
    if "Original Traceback" in message:  # torch's ExceptionWrapper: the last line is "module.Type: message"
        last = message.strip().splitlines()[-1]
        message = last.split(": ", 1)[1] if ": " in last else last
    return " ".join(message.split())


def bad_input_message(err: BaseException) -> str | None:
    """The one-line message for an error in what the user gave, or ``None`` for anything else (a bug)."""
    ours = type(err).__module__.startswith("semcc.") or _raising_module(err.__traceback__).startswith("semcc.")
    if isinstance(err, CommandError) or (isinstance(err, (ValueError, OSError)) and ours):
        return _one_line(str(err)) or type(err).__name__
    if isinstance(err, OSError) and err.filename is not None:
        return _one_line(f"{err.filename}: {err.strerror or err}")
    return None


def run_command(name: str, argv: Sequence[str]) -> int:
    """Run the command ``name`` with its arguments ``argv`` and return its exit status (see the module
    docstring for the error convention)."""
    command = COMMANDS[name]
    module = command.load()
    try:
        if command.lightning:
            return int(module.run(name, list(argv)))
        parser = module.build_parser()
        try:
            args = parser.parse_args(list(argv))
        except SystemExit as exit_:  # --help (0) or a usage error (2, argparse printed the usage)
            return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 2)
        return int(module.run(args))
    except Exception as err:
        message = bad_input_message(err)
        if message is None or os.environ.get("SEMCC_TRACEBACK"):
            raise
        print(f"semcc {name}: {message}", file=sys.stderr)
        return 1
