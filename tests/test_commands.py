"""The command table and the one error convention: `semcc --help` lists every command once; bad input to any
command gives one line on stderr naming the file, exit status 1, no traceback; a bug keeps its traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from semcc import commands
from semcc.commands import COMMANDS, CommandError, bad_input_message
from semcc.main import main

TINY = str(REPO / "configs" / "tiny.yaml")


def _one_line_error(capsys: pytest.CaptureFixture, command: str, *names: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"semcc {command}: "), err
    for name in names:
        assert name in err, err
    return err


def test_help_lists_every_command_once(capsys) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    lines = [line.split(maxsplit=1) for line in out.splitlines() if line.startswith("  ")]
    assert [name for name, _ in lines] == list(COMMANDS)
    assert [help_ for _, help_ in lines] == [c.help for c in COMMANDS.values()]
    expected = {"fit", "validate", "test", "predict", "caption", "figure", "evaluate", "synth", "dataset",
                "shape-files", "serve"}
    assert set(COMMANDS) == expected
    for name, command in COMMANDS.items():  # every row names a module that implements it
        module = command.load()
        assert callable(module.run), name
        if not command.lightning:
            assert module.build_parser().prog == f"semcc {name}"
    result = subprocess.run([sys.executable, "-m", "semcc.main", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == out.strip()


def test_readme_lists_the_commands_as_help_prints_them() -> None:
    readme = (REPO / "README.md").read_text()
    block = readme.split("## Commands", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    assert block.splitlines() == commands.usage().splitlines()[3:-2]


@pytest.mark.parametrize(
    ("argv", "missing"),
    [
        (["caption", "{tmp}/a.png", "{tmp}/b.png", "--ckpt", "{tmp}/c.ckpt"], "{tmp}/a.png"),
        (["figure", "--ckpt", "{tmp}/c.ckpt", "--root", "{tmp}/levir"], "{tmp}/levir"),
        (["evaluate", "--predictions", "{tmp}/p.json", "--references", "{tmp}/r.json"], "{tmp}/p.json"),
        (["synth", "--out", "{tmp}/file.txt/synth", "--train", "2", "--val", "0", "--test", "0", "--cd-train", "0",
          "--cd-val", "0", "--cd-test", "0", "--size", "64", "--workers", "1"], "{tmp}/file.txt"),
        (["shape-files", "--out", "{tmp}/file.txt/shapes", "--widths", "small"], "{tmp}/file.txt"),
    ],
    ids=["caption", "figure", "evaluate", "synth", "shape-files"],
)
def test_bad_path_gives_one_line_and_exit_1(argv: list[str], missing: str, tmp_path: Path, capsys) -> None:
    (tmp_path / "file.txt").write_text("not a folder")
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert main(argv) == 1
    _one_line_error(capsys, argv[0], missing.format(tmp=tmp_path))


@pytest.mark.parametrize("subcommand", ["fit", "validate", "test", "predict"])
def test_lightning_missing_ckpt_path_gives_one_line(subcommand: str, tmp_path: Path, capsys) -> None:
    missing = tmp_path / "nope.ckpt"
    assert main([subcommand, "--config", TINY, f"--ckpt_path={missing}"]) == 1
    _one_line_error(capsys, subcommand, f"{missing}: no such checkpoint file")
    assert main([subcommand, "--config", TINY, "--ckpt_path", str(tmp_path)]) == 1  # a folder
    _one_line_error(capsys, subcommand, f"{tmp_path}: is a folder")
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"not a checkpoint")
    assert main([subcommand, "--config", TINY, f"--ckpt_path={corrupt}"]) == 1
    _one_line_error(capsys, subcommand, f"{corrupt}: not a PyTorch checkpoint")


def test_lightning_config_errors_give_one_line(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  no_such_key: 3\n")
    assert main(["fit", "--config", TINY, "--config", str(bad)]) == 1
    _one_line_error(capsys, "fit", str(bad), "model.no_such_key")  # the file that sets the unknown key
    assert main(["test", "--config", TINY, "--trainer.no_such_key=1"]) == 1
    _one_line_error(capsys, "test", "trainer.no_such_key")
    assert main(["fit", "--config", str(tmp_path / "missing.yaml")]) == 1
    _one_line_error(capsys, "fit", str(tmp_path / "missing.yaml"))
    assert main(["validate", "--config", TINY, "--trainer.max_steps=abc"]) == 1
    _one_line_error(capsys, "validate", "trainer.max_steps")


def test_lightning_ckpt_error_in_a_console_run(tmp_path: Path) -> None:
    """The console script, as a user runs it: one line on stderr, exit status 1, no traceback."""
    missing = tmp_path / "last.ckpt"
    result = subprocess.run([sys.executable, "-m", "semcc.main", "test", "--config", TINY, "--ckpt_path", str(missing)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr[-3000:]
    assert f"semcc test: {missing}: no such checkpoint file" in result.stderr
    assert "Traceback" not in result.stderr


def test_usage_errors_keep_argparse_usage(capsys) -> None:
    assert main(["evaluate", "--predictions", "p.json"]) == 2  # --references missing: argparse's usage, status 2
    err = capsys.readouterr().err
    assert err.startswith("usage: semcc evaluate") and "--references" in err
    assert main(["nosuch"]) == 2


def test_bugs_keep_their_traceback(monkeypatch, tmp_path: Path, capsys) -> None:
    """Only bad input is turned into one line: other exceptions propagate with their traceback."""
    from semcc.commands import caption

    argv = ["caption", "a.png", "b.png", "--ckpt", "c.ckpt"]

    def raise_(err: BaseException):
        def run(args) -> int:
            raise err
        return run

    monkeypatch.setattr(caption, "run", raise_(KeyError("bug")))
    with pytest.raises(KeyError):
        main(argv)
    monkeypatch.setattr(caption, "run", raise_(ValueError("raised outside semcc")))  # e.g. inside torch
    with pytest.raises(ValueError, match="raised outside semcc"):
        main(argv)
    monkeypatch.setattr(caption, "run", raise_(CommandError("x.png: bad\nsecond line")))
    assert main(argv) == 1
    assert capsys.readouterr().err == "semcc caption: x.png: bad second line\n"
    monkeypatch.setenv("SEMCC_TRACEBACK", "1")
    with pytest.raises(CommandError):
        main(argv)


def test_bad_input_message_rules(tmp_path: Path) -> None:
    from semcc.data.images import LevirDataError, read_rgb

    with pytest.raises(LevirDataError) as info:
        read_rgb(tmp_path / "x.png")
    assert bad_input_message(info.value) == f"{tmp_path / 'x.png'}: image file is missing"
    with pytest.raises(FileNotFoundError) as info:
        open(tmp_path / "y.txt")  # noqa: SIM115  (an OSError raised outside semcc, naming its file)
    assert bad_input_message(info.value) == f"{tmp_path / 'y.txt'}: No such file or directory"
    assert bad_input_message(RuntimeError("x")) is None and bad_input_message(ValueError("y")) is None
    wrapped = LevirDataError("Caught LevirDataError in DataLoader worker process 0.\nOriginal Traceback (most "
                             "recent call last):\n  File ...\nsemcc.data.images.LevirDataError: a.png: image file "
                             "is missing\n")
    assert bad_input_message(wrapped) == "a.png: image file is missing"
    assert commands.usage().splitlines()[0] == "usage: semcc COMMAND [options]"


def test_evaluation_options_with_ckpt_path(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """With ``--ckpt_path`` Lightning replaces the configured task arguments by the checkpoint's hyperparameters.
    semcc puts back the run's evaluation settings: a stored one (``decoding``, ``beams``, ``change_share``) comes
    from the checkpoint unless the command line gives it; an unstored one (``meteor``), or one the checkpoint's release
    did not store yet (``match_radiometry`` before 0.12), from the run, not reset to its default."""
    import torch

    from semcc.cli import SemanticCCCLI, explicit_options, stored_evaluation
    from semcc.data.datamodule import SemanticCCDataModule
    from semcc.tasks.module import SemanticCCTask

    checkpoint = torch.load(tiny_checkpoint, map_location="cpu", weights_only=False)
    checkpoint["hyper_parameters"]["evaluation"].update(decoding="greedy", beams=3, change_share=0.004,
                                                        match_radiometry=False)
    ckpt = tmp_path / "greedy.ckpt"
    torch.save(checkpoint, ckpt)
    del checkpoint["hyper_parameters"]["evaluation"]["match_radiometry"]  # as a release before 0.12 stored it
    earlier = tmp_path / "earlier.ckpt"
    torch.save(checkpoint, earlier)

    seen: dict = {}

    class Probe(SemanticCCCLI):
        def instantiate_classes(self) -> None:
            seen.update(vars(self.config[self.config.subcommand].model.evaluation))
            raise SystemExit(0)

    def parsed(*args: str) -> dict:
        seen.clear()
        saved = sys.argv
        sys.argv = ["semcc", "validate", "--config", TINY, *args]
        try:
            with pytest.raises(SystemExit):
                Probe(SemanticCCTask, SemanticCCDataModule, save_config_kwargs={"overwrite": True})
        finally:
            sys.argv = saved
        return dict(seen)

    plain = parsed("--model.evaluation.meteor", "false")  # no checkpoint: the configuration as given
    assert (plain["decoding"], plain["beams"], plain["meteor"]) == ("consistent", 2, False)
    stored = parsed("--ckpt_path", str(ckpt), "--model.evaluation.meteor", "false")
    assert (stored["decoding"], stored["beams"], stored["change_share"]) == ("greedy", 3, 0.004)  # over tiny.yaml's
    assert stored["meteor"] is False  # the run's, not reset to the default
    assert stored["max_new_tokens"] == 6  # stored: the fixture's fit set 6, tiny.yaml says 24
    assert stored["match_radiometry"] is False  # stored, over tiny.yaml's true
    # a setting the checkpoint's release did not store yet comes from the run's configuration, not the default
    assert parsed("--ckpt_path", str(earlier))["match_radiometry"] is True
    given = parsed(f"--ckpt_path={ckpt}", "--model.evaluation.decoding", "consistent",
                   "--model.evaluation.change_share=0.002")
    assert (given["decoding"], given["beams"], given["change_share"], given["meteor"]) == ("consistent", 3, 0.002, True)
    assert {"decoding", "match_radiometry"} <= stored_evaluation(ckpt) and "match_radiometry" not in stored_evaluation(
        earlier) and "meteor" not in stored_evaluation(ckpt)
    assert explicit_options(["--model.evaluation.beams", "4", "--model.evaluation_x=1", "--model.evaluation.a.b=2"],
                            "model.evaluation") == {"beams", "a"}
    assert explicit_options(["--model.evaluation={}"], "model.evaluation") == {""}
