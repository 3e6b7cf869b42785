"""``semcc fit | validate | test | predict``: LightningCLI's subcommands in the command table.

The options (``--config configs/tiny.yaml``, ``--trainer.max_steps 3``, ``--ckpt_path last.ckpt`` ...) are
parsed by jsonargparse in :func:`semcc.cli.run_lightning_cli`, which also turns the errors in what the user
gave (an unknown configuration key, a bad value, a missing ``--ckpt_path`` file) into
:class:`~semcc.commands.CommandError`: one line and exit status 1, as for every command.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["run"]


def run(subcommand: str, argv: Sequence[str]) -> int:
    """Run the LightningCLI ``subcommand`` (``fit``, ``validate``, ``test`` or ``predict``) with ``argv``."""
    from semcc.cli import close_process_group, run_lightning_cli

    run_lightning_cli([subcommand, *argv])
    close_process_group()
    return 0
