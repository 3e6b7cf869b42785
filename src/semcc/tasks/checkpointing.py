"""What a semcc checkpoint holds and how a run resumes from one (the parts of Eq. 1 that Sec. IV-C trains).

A checkpoint keeps only the trainable weights (LoRA, BCSF, neck, heads, projections): the frozen base weights
come back from their paths (or, for random-init presets, from the seeded construction). Beside them,
``checkpoint["semcc"]`` holds

* ``frozen_fingerprint`` / ``fingerprint_version``: a SHA-256 of the frozen weights (:mod:`semcc.tasks.identity`),
  computed once per process (before any sharding) and checked on load;
* ``epoch`` / ``batches`` / ``phase``: the position in the strategy's schedule, so a resumed run continues at the
  same phase and step (the data module's sampler skips the batches already done);
* ``config``: the run's configuration as YAML (set by the CLI), and ``tokenizer_files``: the caption tokenizer,
  so :func:`semcc.tasks.loading.load_task` rebuilds the model from the checkpoint file alone.
"""

from __future__ import annotations

from typing import Any

import torch

from semcc.tasks.identity import FINGERPRINT_VERSION, hash_frozen, tokenizer_files

__all__ = ["Checkpointing", "SchedulePosition"]


class SchedulePosition:
    """Where training is in the strategy's schedule: the epoch and the batches done in it, and a resume point."""

    def __init__(self) -> None:
        self.batches = 0
        self.epoch = 0
        self.resume: dict[str, int] | None = None

    def start_epoch(self, epoch: int) -> None:
        """A training epoch starts (at the resume point's batch when it is that epoch)."""
        self.batches, self.epoch = 0, epoch
        if self.resume is not None and self.resume["epoch"] == epoch:
            self.batches = self.resume["batches"]
        self.resume = None

    def step(self) -> None:
        """One training batch done."""
        self.batches += 1

    def state(self, current_epoch: int) -> dict[str, int]:
        """``{"epoch", "batches"}`` to store; after an epoch has been counted as done (e.g. a stop at
        ``max_steps``), the next one starts afresh."""
        return {"epoch": current_epoch, "batches": self.batches if self.epoch == current_epoch else 0}


#: Weights that later releases' tiny added, and what a checkpoint without them was trained with.
_ADDED_PARTS = {
    ".change_classifier.": "it was trained without the auxiliary change loss (before 0.14.0): set "
                           "--model.model.init_args.cc_head.init_args.change_loss_weight 0",
    ".diff_proj.": "its CD head fuses the dates as Eq. 6 does (tiny before 0.15.0): set "
                   "--model.model.init_args.cd_head.init_args.fusion cat",
}


class Checkpointing:
    """Filters, stamps and checks the checkpoints of a model whose ``trainable`` parameters (model-relative names)
    are all a checkpoint keeps; the task's weights are under ``prefix`` (``model.``)."""

    def __init__(self, model: torch.nn.Module, trainable: set[str], prefix: str = "model.") -> None:
        self.model, self.trainable, self.prefix = model, trainable, prefix
        self._fingerprint: str | None = None
        self._tokenizer_files: dict[str, bytes] | None = None

    def trainable_names(self) -> set[str]:
        """The state-dict names (with ``prefix``) of every parameter that trains in some phase."""
        return {f"{self.prefix}{n}" for n in self.trainable}

    def fingerprint(self) -> str:
        """SHA-256 over the frozen base weights (names, dtypes, shapes and raw bytes).

        Computed once per process and kept: the frozen weights never change (that is what frozen means here), so a
        save costs nothing more, whatever the size of the frozen model. The first call must see whole tensors:
        the task computes it in ``setup``, before any sharding (FSDP).
        """
        if self._fingerprint is None:
            self._fingerprint = hash_frozen(self.model, self.trainable)
        return self._fingerprint

    def _tokenizer(self) -> dict[str, bytes]:
        if self._tokenizer_files is None:  # once per process, like the fingerprint
            head = getattr(self.model, "cc_head", None)
            tokenizer = getattr(head, "tokenizer", None) if head is not None else None
            self._tokenizer_files = tokenizer_files(tokenizer) if tokenizer is not None else {}
        return self._tokenizer_files

    def save(self, checkpoint: dict[str, Any], position: dict[str, Any], run_config: str | None) -> None:
        """Keep only the trainable weights of ``checkpoint`` and add semcc's entry (``position``: epoch, batches,
        phase)."""
        keep = self.trainable_names()
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}
        meta: dict[str, Any] = {
            "frozen_fingerprint": self.fingerprint(),
            "fingerprint_version": FINGERPRINT_VERSION,
            **position,
        }
        if run_config is not None:
            meta["config"] = run_config
        if files := self._tokenizer():
            meta["tokenizer_files"] = files
        checkpoint["semcc"] = meta

    def check(self, checkpoint: dict[str, Any], state_keys: set[str]) -> dict[str, int] | None:
        """Check that ``checkpoint`` fits this model (its trainable weights, no others of ``state_keys``, the same
        frozen base weights); return its resume point ``{"epoch", "batches"}`` (``None`` when it has none)."""
        state = checkpoint.get("state_dict", {})
        if missing := sorted(self.trainable_names() - set(state)):
            # the hints name the settings when every missing weight is one of these later-added parts
            found = [h for part, h in _ADDED_PARTS.items() if any(part in name for name in missing)]
            known = all(any(part in name for part in _ADDED_PARTS) for name in missing)
            hint = "; " + "; ".join(found) if known else ""
            more = " ..." if len(missing) > 8 else ""
            raise KeyError(f"checkpoint lacks trainable weights: {missing[:8]}{more}{hint}")
        if unexpected := sorted(set(state) - state_keys):
            raise KeyError(f"checkpoint has weights this model does not: {unexpected[:8]}")
        meta = checkpoint.get("semcc", {})
        stored = meta.get("frozen_fingerprint")
        # Checkpoints written before the fingerprint hashed raw bytes (no version) hashed float32 copies.
        ours = self.fingerprint() if meta.get("fingerprint_version") == FINGERPRINT_VERSION else (
            hash_frozen(self.model, self.trainable, legacy=True) if stored else None)
        if stored and stored != ours:
            raise ValueError(
                "the frozen base weights differ from those this checkpoint was trained with: build the model "
                "from the same base checkpoints (or, for random-init presets, the same seed) as the run that saved it"
            )
        if "epoch" not in meta:
            return None
        return {"epoch": int(meta["epoch"]), "batches": int(meta["batches"])}
