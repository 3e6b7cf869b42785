"""Does the caption branch read the change? Linear probes of change / no change along it (issue 13, beyond the paper).

A caption model can have the change in its features and still not use it: tiny's seed 1 on an AMD EPYC says "the scene
is the same as before" for every val pair with greedy decoding while its mask finds the changes. For each checkpoint
(``--ckpt``, a ``semcc fit`` checkpoint, any number of them) this script runs the encoder and the neck as validation
does (the run's radiometry matching included) on the first ``--train-pairs`` pairs of the training split and on every
pair of ``--split``, and reads three points of the caption branch (paper Eq. 7-8, :mod:`semcc.models.cc_head`):

* ``difference (max)``: the largest distance between the two dates' tokens at the Q-Former's input
  (``ChangeCaptionHead.vision_inputs``), one number per pair;
* ``enhancer (mean)``: the Eq. 8 enhancer's output averaged over the tokens (with the enhancer before the Q-Former);
* ``queries (mean)``: the Q-Former's outputs averaged over the queries, what ``llama_proj`` hands the LLM (and the
  input of the auxiliary change classifier of ``change_loss_weight``).

Each is probed with an L2-regularised logistic regression (``--l2``) fitted on the training pairs (features
standardised with their statistics) to tell changed pairs (some reference describes a change) from unchanged ones;
the table gives its accuracy on the training pairs and on ``--split``. A last row per checkpoint: the share of
``--split`` pairs whose greedy caption is right about change (:func:`semcc.data.text.is_no_change`). When the queries
probe well below the difference, the Q-Former averages the tokens instead of finding the change, and the LLM cannot
tell the pairs apart.

Usage: ``python benchmarks/change_probe.py --ckpt CKPT [--ckpt CKPT2 ...] [--split val] [--train-pairs 320]``
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from _common import add_json_argument, report

COLUMNS = {
    "model": "model",
    "feature": "feature",
    "dims": "dims",
    "train": "train pairs right",
    "split": "split pairs right",
}


def branch_features(task: Any, data: Any, count: int, batch_size: int = 16) -> tuple[dict[str, torch.Tensor],
                                                                                     torch.Tensor, torch.Tensor]:
    """The probed features of the first ``count`` pairs of ``data`` (name -> ``[N, D]``), whether each changed
    (``[N]``) and whether its greedy caption says change (``[N]``)."""
    from semcc.data.text import is_no_change

    model = task.model.eval()
    head = model.cc_head
    feats: dict[str, list[torch.Tensor]] = {}
    changed, says = [], []
    with torch.no_grad(), task.radiometry():
        for start in range(0, count, batch_size):
            items = [data[i] for i in range(start, min(start + batch_size, count))]
            a, b = torch.stack([s["image_a"] for s in items]), torch.stack([s["image_b"] for s in items])
            _, (f1, f2) = model.features(a, b)
            n = a.shape[0]
            x = head.vision_inputs(f1, f2)
            parts = {"difference (max)": (x[:n] - x[n:]).norm(dim=-1).amax(dim=1, keepdim=True)}
            if head.enhancer_position == "before":
                parts["enhancer (mean)"] = head.enhancer(x[:n], x[n:]).mean(dim=1)
            parts["queries (mean)"] = head.query_features(f1, f2).mean(dim=1)
            for key, value in parts.items():
                feats.setdefault(key, []).append(value.float())
            changed += [bool(s["changed"]) for s in items]
            says += [not is_no_change(c) for c in head.generate(f1, f2)]
    return {k: torch.cat(v) for k, v in feats.items()}, torch.tensor(changed), torch.tensor(says)


def probe(x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor,
          l2: float = 1e-2) -> tuple[float, float]:
    """Accuracy on the training and the test pairs of a logistic regression fitted on the training pairs."""
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    w = torch.zeros(x_train.shape[1], requires_grad=True)
    bias = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, bias], max_iter=200, line_search_fn="strong_wolfe")
    target = y_train.float()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x_train @ w + bias, target) + l2 * w.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return (((x_train @ w + bias) > 0) == y_train).float().mean().item(), \
            (((x_test @ w + bias) > 0) == y_test).float().mean().item()


def probe_rows(task: Any, train: Any, test: Any, train_pairs: int, label: str, l2: float = 1e-2) -> list[dict]:
    """The table's rows of one checkpoint."""
    x_train, y_train, says_train = branch_features(task, train, min(train_pairs, len(train)))
    x_test, y_test, says_test = branch_features(task, test, len(test))
    if y_train.all() or not y_train.any():
        kind = "changed" if y_train.all() else "unchanged"
        raise ValueError(f"the first {len(y_train)} training pairs are all {kind}: a probe needs both kinds "
                         "(raise --train-pairs)")
    rows = []
    for key, xs in x_train.items():
        right_train, right_test = probe(xs, y_train, x_test[key], y_test, l2)
        rows.append({"model": label, "feature": key, "dims": xs.shape[1], "train": round(right_train, 3),
                     "split": round(right_test, 3)})
    rows.append({"model": label, "feature": "greedy caption", "dims": "-",
                 "train": round((says_train == y_train).float().mean().item(), 3),
                 "split": round((says_test == y_test).float().mean().item(), 3)})
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    from semcc.data.levir import LevirCCDataset
    from semcc.tasks.loading import load_task

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, action="append", required=True, help="a semcc fit checkpoint (repeatable)")
    parser.add_argument("--root", type=Path, default=Path("~/.cache/semcc/synthlevir-tiny/LEVIR-CC"),
                        help="LEVIR-CC folder (default: the tiny config's SynthLEVIR)")
    parser.add_argument("--split", default="val", help="the split the probes are scored on")
    parser.add_argument("--train-pairs", type=int, default=320, help="training pairs the probes are fitted on")
    parser.add_argument("--l2", type=float, default=1e-2, help="the probes' L2 penalty on their weights")
    add_json_argument(parser, "change_probe.json")
    args = parser.parse_args(argv)
    root = args.root.expanduser()
    if not (root / "LevirCCcaptions.json").is_file():
        parser.error(f"{root}: no LevirCCcaptions.json (run `semcc fit --config configs/tiny.yaml` or `semcc synth`)")
    if args.train_pairs < 2:
        parser.error(f"--train-pairs must be at least 2, got {args.train_pairs}")
    train, test = LevirCCDataset(root, "train"), LevirCCDataset(root, args.split)
    rows: list[dict] = []
    for ckpt in args.ckpt:
        task = load_task(ckpt)
        if task.model.cc_head is None:
            parser.error(f"{ckpt}: the model has no caption head")
        rows += probe_rows(task, train, test, args.train_pairs, str(ckpt) if len(args.ckpt) > 1 else ckpt.name,
                           args.l2)
    fitted = min(args.train_pairs, len(train))
    report(f"Change / no change read along the caption branch: probes fitted on {fitted} training pairs, scored on "
           f"the {len(test)} {args.split} pairs of {root}", rows, COLUMNS, json_path=args.json)
    return rows


if __name__ == "__main__":
    main()
