"""The ``semcc`` console script: dispatches ``semcc COMMAND [options]`` through the command table.

The table (:data:`semcc.commands.COMMANDS`) holds LightningCLI's ``fit`` / ``validate`` / ``test`` /
``predict`` (paper Eq. 1, loss Eq. 9, strategy Sec. III-F; :mod:`semcc.cli`) and semcc's own commands
(``caption``, ``figure``, ``evaluate``, ``synth``, ``shape-files``), one module each under
:mod:`semcc.commands`, which also holds the one error convention they share. ``semcc`` or
``semcc --help`` prints the table.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from semcc.allocator import tune_malloc
from semcc.commands import COMMANDS, run_command, usage
from semcc.denormals import flush_denormals

__all__ = ["main"]


def main(args: Sequence[str] | None = None) -> int:
    """Entry point of the ``semcc`` console script; ``args`` defaults to ``sys.argv[1:]``.

    Returns the exit status: 0, 1 for bad input (one line on stderr), 2 for an unknown command. Before any
    command runs, subnormal floats are flushed to zero on the CPU (:mod:`semcc.denormals`; the
    ``SEMCC_FLUSH_DENORMALS=0`` environment variable keeps them) and, on glibc, freed memory is kept for reuse
    (:mod:`semcc.allocator`; ``SEMCC_MALLOC_TUNING=0`` leaves the allocator as it is).
    """
    argv = list(sys.argv[1:] if args is None else args)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    flush_denormals()  # before any torch operation starts torch's threads, which inherit the mode
    tune_malloc()  # large blocks reused from the heap, not mapped and zero-filled again at every step
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"semcc: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    return run_command(command, rest)


if __name__ == "__main__":
    sys.exit(main())
