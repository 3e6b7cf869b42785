"""Shared fixtures: the real LEVIR-CC samples in ../shared and a small SynthLEVIR data set.

The suite runs on pytest-xdist's workers (``-n auto`` in pyproject.toml; ``-n 0`` runs it in one process): each worker
gets an equal share of the cores for torch, here and in the processes its tests start (``OMP_NUM_THREADS``), and the
session's SynthLEVIR and tiny fit are built once for all workers (:func:`built_once`).

The tests compute in the arithmetic of the ``semcc`` console script: subnormal floats flushed to zero
(:mod:`semcc.denormals`), set here, before any test runs a torch operation; and with its memory reuse (glibc's mmap
and trim thresholds raised, :mod:`semcc.allocator`).
"""

from __future__ import annotations

import gzip
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from semcc.allocator import tune_malloc
from semcc.denormals import flush_denormals

flush_denormals()
tune_malloc()


def _share_the_cores() -> None:
    """Split the cores among pytest-xdist's workers (2 workers on 2 cores: one torch thread each, not two)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        torch.set_num_threads(threads)


_share_the_cores()

REPO = Path(__file__).resolve().parents[1]
REAL_PAIRS = ("train_000016.png", "train_000051.png", "train_000054.png")


def shared_levir_dir() -> Path | None:
    """../shared/data/levir-cc-real beside the repository (or $SEMCC_SHARED/data/levir-cc-real)."""
    base = Path(os.environ["SEMCC_SHARED"]) if os.environ.get("SEMCC_SHARED") else REPO.parent / "shared"
    path = base / "data" / "levir-cc-real"
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def real_levir_dir() -> Path:
    path = shared_levir_dir()
    if path is None:
        pytest.skip("the real LEVIR-CC samples (../shared/data/levir-cc-real) are not beside this checkout")
    return path


@pytest.fixture(scope="session")
def real_levir_cc(real_levir_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LEVIR-CC root: the real captions JSON (all pairs) and the three real image pairs."""
    root = tmp_path_factory.mktemp("levir-cc-real")
    shutil.copytree(real_levir_dir / "images", root / "images")
    with gzip.open(real_levir_dir / "LevirCCcaptions.json.gz", "rb") as src:
        (root / "LevirCCcaptions.json").write_bytes(src.read())
    return root


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """A session-wide folder that ``build`` fills once for all of pytest-xdist's workers: the first worker to ask
    builds it, the others wait for it (a file lock) and reuse it; read-only for the tests. Without xdist, a plain
    temporary folder."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        folder = tmp_path_factory.mktemp(name)
        build(folder)
        return folder
    from semcc.data.datamodule import _file_lock  # the lock SynthLEVIR's generation takes across DDP ranks

    base = tmp_path_factory.getbasetemp().parent  # the session's folder, above each worker's own
    folder, done = base / name, base / f"{name}.done"
    with _file_lock(base / f"{name}.lock"):
        if not done.exists():  # not built yet, or a worker's build failed: (re)build it
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def synth_config():
    """The arguments of the session's small SynthLEVIR (64 px pairs, 256 px CD tiles)."""
    from semcc.data.synthetic import SynthLEVIRConfig

    return SynthLEVIRConfig(
        pairs={"train": 12, "val": 6, "test": 6}, cd_tiles={"train": 2, "val": 1, "test": 1}, size=64, workers=1
    )


@pytest.fixture(scope="session")
def synth_root(synth_config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small SynthLEVIR data set, generated once per test session."""
    from semcc.data.synthetic import generate_synth_levir

    return built_once(tmp_path_factory, "synth", lambda folder: generate_synth_levir(folder / "synthlevir",
                                                                                    synth_config)) / "synthlevir"


@pytest.fixture(scope="session")
def tiny_cli_args(synth_root: Path, synth_config):
    """``tiny_cli_args(run_dir)``: overrides of configs/tiny.yaml for a 64-px model on the session's SynthLEVIR,
    one short epoch, logs and checkpoints under ``run_dir`` (append them to ``semcc fit|test|predict``)."""
    import json

    synth = {"pairs": synth_config.pairs, "cd_tiles": synth_config.cd_tiles, "size": synth_config.size,
             "seed": synth_config.seed, "nuisance": synth_config.nuisance, "workers": 1}

    def args(run: Path) -> list[str]:
        return [
            "--config", str(REPO / "configs" / "tiny.yaml"),
            f"--data.synth_root={synth_root}", f"--data.tokenizer_dir={run / 'tok'}",
            f"--data.synth={json.dumps(synth)}",
            "--data.cd.crop_size=64", "--data.cd.samples_per_tile=2", "--data.batch_size=4",
            "--model.model.init_args.encoder.init_args.img_size=64", "--model.evaluation.max_new_tokens=6",
            "--trainer.max_epochs=1", "--trainer.check_val_every_n_epoch=1", "--trainer.limit_val_batches=1",
            "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={run}",
            f"--trainer.logger.init_args.save_dir={run}",
            f"--trainer.callbacks.init_args.dirpath={run / 'checkpoints'}",
        ]

    return args


@pytest.fixture(scope="session")
def tiny_run(tiny_cli_args, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``semcc fit`` of configs/tiny.yaml at 64 px on the session's SynthLEVIR: a few steps, one checkpoint.

    Returns the run folder; its checkpoint is ``<run>/checkpoints/last.ckpt`` (see :func:`tiny_checkpoint`).
    """
    from semcc.main import main

    def fit(run: Path) -> None:
        assert main(["fit", *tiny_cli_args(run)]) == 0

    return built_once(tmp_path_factory, "tiny-run", fit)


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_run: Path) -> Path:
    """The ``last.ckpt`` of :func:`tiny_run`."""
    path = tiny_run / "checkpoints" / "last.ckpt"
    assert path.is_file(), sorted(tiny_run.rglob("*"))
    return path


@pytest.fixture(scope="session")
def run_two_process_script(synth_root: Path, synth_config):
    """``run(script, tmp_path) -> report``: run a 2-process check script of tests/ (Lightning's launcher starts
    rank 1) on the session's SynthLEVIR and return the JSON report its rank 0 wrote."""
    import json
    import subprocess
    import sys

    def run(script: str, cwd: Path) -> dict:
        out = cwd / f"{Path(script).stem}.json"
        env = {**os.environ, "SEMCC_SYNTH_ROOT": str(synth_root), "SEMCC_OUT": str(out),
               "SEMCC_SYNTH_CONFIG": json.dumps({"pairs": synth_config.pairs, "cd_tiles": synth_config.cd_tiles,
                                                 "size": synth_config.size})}
        result = subprocess.run([sys.executable, str(Path(__file__).parent / script)], env=env, cwd=cwd,
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return json.loads(out.read_text())

    return run
