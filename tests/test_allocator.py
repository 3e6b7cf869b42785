"""semcc.allocator: glibc's mmap and trim thresholds raised, so that freed blocks are reused; by the console script too.

Each check runs in a fresh interpreter (the thresholds belong to the process) and reads glibc's own accounting
(``mallinfo2``) around one 64 MiB block: with glibc's defaults a block that large is always a fresh ``mmap`` (its
dynamic threshold stops at 32 MiB) and goes back to the system when freed; tuned, it comes from the heap and stays.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

from semcc.allocator import ENV, tune_malloc

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only"
)

# Prints: mmapped blocks gained while a 64 MiB block is held (1 untuned, 0 tuned), then whether the heap still
# holds at least 64 MiB of free memory after it is freed (False untuned, True tuned).
PROBE = textwrap.dedent("""
    import ctypes
    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                   "fsmblks", "uordblks", "fordblks", "keepcost")]
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    before = libc.mallinfo2().hblks
    block = bytearray(64 << 20)
    held = libc.mallinfo2().hblks - before
    del block
    print(held, libc.mallinfo2().fordblks >= 64 << 20)
""")


def run(code: str, **env: str) -> list[str]:
    full_env = {k: v for k, v in os.environ.items() if k != ENV and not k.startswith("MALLOC_")} | env
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=120,
                         check=True)
    return out.stdout.split()


def test_tuned_blocks_come_from_the_heap_and_stay() -> None:
    assert run("from semcc.allocator import tune_malloc\nprint(tune_malloc())" + PROBE) == ["True", "0", "True"]


def test_untuned_blocks_are_mapped_and_returned() -> None:
    assert run("print(None)" + PROBE) == ["None", "1", "False"]
    assert run("from semcc.allocator import tune_malloc\nprint(tune_malloc())" + PROBE, **{ENV: "off"}) == [
        "False", "1", "False"]


def test_the_users_own_thresholds_win() -> None:
    # glibc reads MALLOC_MMAP_THRESHOLD_ at start (here 128 MiB: the 64 MiB block comes from the heap); semcc leaves
    # the trim threshold as the user left it (the default: the freed block's memory is given back)
    out = run("from semcc.allocator import tune_malloc\nprint(tune_malloc())" + PROBE,
              MALLOC_MMAP_THRESHOLD_=str(128 << 20))
    assert out == ["False", "0", "False"]


def test_another_allocator_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    assert tune_malloc() is False
    monkeypatch.setenv("LD_PRELOAD", "")
    assert tune_malloc(enabled=False) is False


def test_console_script_tunes_before_its_command() -> None:
    code = "from semcc.main import main\nprint(main(['no-such-command']))" + PROBE
    assert run(code) == ["2", "0", "True"]
    assert run(code, **{ENV: "0"}) == ["2", "1", "False"]
