"""semcc.denormals: subnormal floats flushed to zero on every torch thread, by the console script too."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from semcc.denormals import ENV

# Counts the products of 4 Mi subnormals (2**-128, made from their bits) computed across torch's threads that are
# still subnormal; 0 when every thread flushes. Printed last by each snippet.
PROBE = textwrap.dedent("""
    import torch
    probe = torch.full((1 << 22,), 1 << 21, dtype=torch.int32).view(torch.float32)
    print(int(torch.count_nonzero((probe * 1.0).view(torch.int32))))
""")


def run(code: str, **env: str) -> list[str]:
    full_env = {k: v for k, v in os.environ.items() if k != ENV} | env
    out = subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True, text=True, env=full_env,
                         timeout=120, check=True)
    return [*out.stdout.split(), "|", *out.stderr.splitlines()]


def test_flush_before_threads_start_reaches_every_thread() -> None:
    out = run("import torch\ntorch.set_num_threads(2)\nfrom semcc.denormals import flush_denormals\n"
              "print(flush_denormals())" + PROBE)
    assert out[:2] == ["True", "0"], out


def test_without_flush_products_stay_subnormal() -> None:
    out = run("import torch\ntorch.set_num_threads(2)\nfrom semcc.denormals import flush_denormals\n"
              "print(flush_denormals())" + PROBE, **{ENV: "0"})
    assert out[:2] == ["False", str(1 << 22)], out


def test_late_call_is_reported() -> None:
    # threads started by a parallel operation before the call keep computing with subnormals: a warning says so
    if os.cpu_count() == 1:
        pytest.skip("one CPU: torch runs no second thread")
    out = run("import torch\ntorch.set_num_threads(2)\ny = torch.ones(1 << 22) * 2.0\n"
              "from semcc.denormals import flush_denormals\nprint(flush_denormals())")
    if os.cpu_count() == 1:
        pytest.skip("one CPU: torch runs no second thread")
    assert out[0] == "False", out
    assert any("threads were started before the call" in line for line in out), out


def test_console_script_flushes_before_its_command() -> None:
    out = run("import torch\ntorch.set_num_threads(2)\nfrom semcc.main import main\n"
              "print(main(['no-such-command']))" + PROBE)
    assert out[:2] == ["2", "0"], out
    out = run("import torch\ntorch.set_num_threads(2)\nfrom semcc.main import main\n"
              "print(main(['no-such-command']))" + PROBE, **{ENV: "off"})
    assert out[:2] == ["2", str(1 << 22)], out
