"""FSDP2 (``torch.distributed.fsdp.fully_shard``) for the Eq. 1 model under the phases of Sec. III-F.

:func:`shard_semantic_cc` shards :class:`~semcc.models.semantic_cc.SemanticCC` in units:

* every SAM ViT block (``encoder.vit.blocks[i]``: frozen SAM weights + LoRA on ``qkv``), then the encoder
  itself (patch embedding, positions, SAM's neck, the BCSF modules; a unit of its own so that the frozen-feature
  cache can call ``model.encoder`` outside the root's forward);
* every Q-Former layer (``cc_head.qformer.encoder.layer[i]``);
* every LLM decoder layer (``cc_head.llm.model.layers[i]`` for transformers' Llama: frozen base + LoRA), the
  LLM's input embedding (``embed_tokens``: the caption head embeds the prompt before calling the LLM, so it
  needs a unit whose own forward gathers it) and the LLM itself (final norm and ``lm_head``);
* the root ``model`` (the rest: the neck, the CD head, ``vision_proj``, ``ln_vision``, the query tokens, the
  enhancer, ``llama_proj``; with tied LLM embeddings, the embedding, final norm and ``lm_head`` too).

FSDP2 requires one dtype among the *trainable* parameters of a unit (``FSDPParamGroup._init_mp_dtypes``);
frozen parameters may differ (a bf16 frozen LLM beside float32 LoRA adapters is fine). Every trainable
parameter of SemanticCC is float32 (:mod:`semcc.models.precision`), so every unit trains one dtype in every
phase; :func:`unit_dtype_plan` checks it for each phase of :data:`~semcc.strategies.PHASES` before
anything is sharded and names the unit that breaks it. The gathered parameters are ``param_dtype`` (bf16),
gradients are reduce-scattered in ``reduce_dtype`` (float32) into the float32 shards the optimizer updates.

Phases flip ``requires_grad`` after sharding. FSDP2 copies the flag of the sharded parameter onto the
gathered one at every all-gather, so a flip on the sharded parameters is seen at the next forward; but each
unit's reduction dtypes (``_orig_dtype``, ``_reduce_dtype``) are computed once, at the lazy initialisation
(first forward), from the parameters trainable *then*: a unit with nothing to train at that moment (the LLM
layers during phase ``cd``) later reduce-scatters its gradients in bf16 and hands a bf16 gradient to a float32
parameter (``RuntimeError: attempting to assign a gradient with dtype BFloat16 ...``). Hence
:func:`sync_requires_grad`, to call after every flip. What the task must do under sharding:

* ``configure_model``: ``shard_semantic_cc(self.model, self.device_mesh["data_parallel"], trainable=...)``, once,
  after the frozen-weight fingerprint was taken (``state_dict()`` of a sharded model holds DTensors);
* ``set_phase``: :func:`sync_requires_grad` after flipping the flags;
* calls of one unit that depend on the data (the frozen-feature cache encodes only the pairs it lacks) must
  run on every rank when they run on one (:func:`any_rank`), or the units' all-gathers do not match.

Generation keeps the ranks in step by itself: the LLM is marked FSDP-managed, so transformers' ``generate``
runs with ``synced_gpus`` (each rank calls the LLM until every rank's captions have ended).

:class:`PhaseFSDPStrategy` is Lightning's :class:`~lightning.pytorch.strategies.ModelParallelStrategy` (the
Lightning path for FSDP2: the LightningModule shards in ``configure_model``) with one data-parallel mesh
dimension and single-file checkpoints of the trainable weights only: each trainable parameter is gathered
(``DTensor.full_tensor``) on every rank and kept on rank 0, so the file is a plain ``torch.save`` dictionary
like DDP's, which :func:`semcc.tasks.loading.load_task` reads; resuming copies each rank's shard of the saved
values back into the sharded parameters (no collective) and restores the optimizer state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.fabric.plugins.collectives.torch_collective import default_pg_timeout
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.strategies import ModelParallelStrategy
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method
from torch.distributed.tensor import DTensor, distribute_tensor

from semcc.models.semantic_cc import SemanticCC
from semcc.strategies import PHASES

__all__ = [
    "PhaseFSDPStrategy",
    "any_rank",
    "fsdp_units",
    "full_state_dict",
    "is_sharded",
    "load_full_state_dict",
    "reshard_all",
    "shard_semantic_cc",
    "sync_requires_grad",
    "unit_dtype_plan",
]

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

#: Methods of SemanticCC called instead of ``forward`` (evaluation, prediction): they gather the root too.
FORWARD_METHODS = ("predict", "generate", "encode")


def _dtype(value: str | torch.dtype | None) -> torch.dtype | None:
    if value is None or isinstance(value, torch.dtype):
        return value
    if value not in _DTYPES:
        raise ValueError(f"unknown dtype {value!r}; choose from {sorted(_DTYPES)}")
    return _DTYPES[value]


def _decoder_layers(llm: nn.Module) -> Iterable[nn.Module]:
    """The decoder layers of a transformers causal LM (``llm.model.layers`` for Llama in transformers 5)."""
    decoder = llm.get_decoder() if hasattr(llm, "get_decoder") else getattr(llm, "model", None)
    layers = getattr(decoder, "layers", None)
    if layers is None:
        raise ValueError(f"cannot find the decoder layers of {type(llm).__name__} (expected .model.layers)")
    return layers


def _tied(llm: nn.Module) -> bool:
    emb, out = llm.get_input_embeddings(), llm.get_output_embeddings()
    return out is not None and emb is not None and out.weight is emb.weight


def fsdp_units(model: SemanticCC) -> list[tuple[str, nn.Module]]:
    """The units :func:`shard_semantic_cc` shards, innermost first, as ``(name, module)``; the root is ``""``.

    Parts that are ``None`` (ablations) contribute nothing.
    """
    units: list[tuple[str, nn.Module]] = []
    for i, block in enumerate(model.encoder.vit.blocks):
        units.append((f"encoder.vit.blocks.{i}", block))
    units.append(("encoder", model.encoder))
    head = model.cc_head
    if head is not None:
        for i, layer in enumerate(head.qformer.encoder.layer):
            units.append((f"cc_head.qformer.encoder.layer.{i}", layer))
        llm = head.llm
        for i, layer in enumerate(_decoder_layers(llm)):
            units.append((f"cc_head.llm.model.layers.{i}", layer))
        if not _tied(llm):  # tied: embedding and lm_head share a weight; both stay in the root unit then
            emb = llm.get_input_embeddings()
            name = next(n for n, m in model.named_modules() if m is emb)
            units.append((name, emb))
            units.append(("cc_head.llm", llm))
    units.append(("", model))
    return units


def _unit_params(model: SemanticCC, units: list[tuple[str, nn.Module]]) -> dict[str, list[tuple[str, nn.Parameter]]]:
    """Each unit's own parameters (those of its module not inside an inner unit), with model-relative names."""
    unit_of: dict[int, str] = {}
    for unit_name, module in units:  # innermost first: an inner unit claims its parameters first
        for p in module.parameters():
            unit_of.setdefault(id(p), unit_name)
    out: dict[str, list[tuple[str, nn.Parameter]]] = {u: [] for u, _ in units}
    for name, p in model.named_parameters():
        out[unit_of[id(p)]].append((name, p))
    return out


def unit_dtype_plan(
    model: SemanticCC, trainable: Iterable[str] | None = None
) -> dict[str, dict[str, list[str]]]:
    """``{phase: {unit: [dtypes of the parameters it trains in that phase]}}`` for the units of :func:`fsdp_units`.

    ``trainable``: model-relative names of the parameters that train in some phase (default: those with
    ``requires_grad`` now). A parameter trains in a phase when it is trainable and its part (``encoder``,
    ``neck``, ``cd_head``, ``cc_head``) is among the phase's parts (:data:`~semcc.strategies.PHASES`). Raises
    ``ValueError`` naming the unit, phase and parameters when a unit would train parameters of two dtypes (FSDP2
    refuses it).
    """
    names = set(trainable) if trainable is not None else {n for n, p in model.named_parameters() if p.requires_grad}
    plan: dict[str, dict[str, list[str]]] = {}
    problems = []
    per_unit = _unit_params(model, fsdp_units(model))
    for phase, spec in PHASES.items():
        parts = spec.parts
        plan[phase] = {}
        for unit, params in per_unit.items():
            dtypes: dict[str, list[str]] = {}
            for name, p in params:
                if name in names and name.split(".", 1)[0] in parts:
                    dtypes.setdefault(str(p.dtype).removeprefix("torch."), []).append(name)
            plan[phase][unit or "<root>"] = sorted(dtypes)
            if len(dtypes) > 1:
                examples = {d: ns[:3] for d, ns in dtypes.items()}
                problems.append(f"unit {unit or '<root>'!r} in phase {phase!r}: {examples}")
    if problems:
        raise ValueError(
            "FSDP2 needs one dtype among the parameters a unit trains; make every trainable parameter one dtype "
            "(float32): " + "; ".join(problems)
        )
    return plan


def shard_semantic_cc(
    model: SemanticCC,
    mesh: DeviceMesh,
    *,
    param_dtype: torch.dtype | str | None = torch.bfloat16,
    reduce_dtype: torch.dtype | str | None = torch.float32,
    reshard_after_forward: bool = True,
    trainable: Iterable[str] | None = None,
) -> SemanticCC:
    """Apply ``fully_shard`` to the units of :func:`fsdp_units` (innermost first, the root last), in place.

    Args:
        model: the network, not on the meta device (``fully_shard`` moves it to the mesh's device).
        mesh: a 1-D data-parallel mesh (``device_mesh["data_parallel"]`` under Lightning's strategy).
        param_dtype: dtype of the gathered parameters used in forward / backward (``None``: their own).
        reduce_dtype: dtype of the gradient reduce-scatter (then cast to the parameter's dtype).
        reshard_after_forward: free the gathered parameters after each unit's forward (ZeRO-3; the root's stay
            gathered until backward, FSDP2's default); ``False`` keeps every unit's until after backward (ZeRO-2
            style, more memory, fewer all-gathers).
        trainable: model-relative names of the parameters that train in some phase (default: those with
            ``requires_grad`` now), for the dtype check of :func:`unit_dtype_plan`.

    ``predict`` and ``generate`` are registered as forward methods of the root, so evaluation gathers the
    root's parameters too, and the LLM is marked FSDP-managed so that transformers' ``generate`` keeps the
    ranks in step (``synced_gpus``). Returns ``model`` (now an ``FSDPModule``).
    """
    if is_sharded(model):
        raise ValueError("the model is sharded already")
    if mesh.ndim != 1:
        raise ValueError(f"shard_semantic_cc needs a 1-D data-parallel mesh, got {mesh.ndim} dimensions")
    unit_dtype_plan(model, trainable)
    policy = MixedPrecisionPolicy(param_dtype=_dtype(param_dtype), reduce_dtype=_dtype(reduce_dtype))
    for name, module in fsdp_units(model):
        # The root: FSDP2's default keeps it gathered from forward to backward (it is gathered again at once
        # otherwise); after an evaluation forward it then stays gathered until the next backward.
        reshard = (None if reshard_after_forward else False) if name == "" else reshard_after_forward
        fully_shard(module, mesh=mesh, mp_policy=policy, reshard_after_forward=reshard)
    for method in FORWARD_METHODS:
        if hasattr(model, method):
            register_fsdp_forward_method(model, method)
    if model.cc_head is not None:
        # transformers' generate then runs with synced_gpus: every rank keeps calling the LLM (its units
        # all-gather) until all ranks' captions have ended, instead of leaving the loop at its own end marker.
        model.cc_head.llm._is_fsdp_managed_module = True
    return model


def any_rank(flag: bool, device: torch.device | str = "cpu") -> bool:
    """Whether ``flag`` holds on any rank (an all-reduce; ``flag`` itself outside a process group).

    For data-dependent calls of a sharded unit: every rank must run a unit's all-gathers, so a rank that
    would skip the call (e.g. the frozen-feature cache holding all of its pairs) must run it when another
    rank does.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    torch.distributed.all_reduce(value)
    return bool(value.item() > 0)


def is_sharded(module: nn.Module) -> bool:
    """Whether ``module`` or a submodule is an FSDP2 unit."""
    return any(isinstance(m, FSDPModule) for m in module.modules())


def _param_groups(module: nn.Module) -> Iterable[Any]:
    """The FSDP2 parameter groups (``FSDPParamGroup``) of every unit in ``module``."""
    for m in module.modules():
        if isinstance(m, FSDPModule):
            state = m._get_fsdp_state()
            groups = getattr(state, "_fsdp_param_groups", None)
            if groups is None:  # torch < 2.12: one group per state
                group = getattr(state, "_fsdp_param_group", None)
                groups = [group] if group is not None else []
            yield from groups


def sync_requires_grad(module: nn.Module) -> None:
    """Make FSDP2 honour ``requires_grad`` flips made after sharding; call it after every flip.

    For each sharded parameter: a flag set on the gathered parameter that a unit still exposes (a unit left
    unsharded, e.g. the root after an evaluation forward) is copied to the sharded one, which FSDP2 copies
    back onto the gathered parameter at every all-gather. Then each unit's mixed-precision dtypes are
    recomputed from the parameters trainable now (FSDP2 computes them once, at the first forward, so a unit
    that had nothing to train then would reduce its gradients in the gathered dtype and not cast them back).
    Raises FSDP2's ``AssertionError`` when a unit now trains parameters of two dtypes.

    It also initialises FSDP2 from the outermost unit if no forward has run yet: FSDP2 takes the first unit
    to run forward as the root, and the frozen-feature cache calls ``model.encoder`` before the model.
    """
    root = next((m for m in module.modules() if isinstance(m, FSDPModule)), None)
    if root is not None and root._get_fsdp_state()._is_root is None:
        root._get_fsdp_state()._lazy_init()
    for group in _param_groups(module):
        for fsdp_param in group.fsdp_params:
            info = fsdp_param._module_info
            exposed = getattr(info.module, info.param_name)
            sharded = fsdp_param.sharded_param
            if exposed is not sharded and exposed.requires_grad != sharded.requires_grad:
                sharded.requires_grad_(exposed.requires_grad)
        group._init_mp_dtypes()


def reshard_all(module: nn.Module) -> None:
    """Free every gathered parameter and expose the sharded ones (``FSDPModule.reshard`` on every unit)."""
    for m in module.modules():
        if isinstance(m, FSDPModule):
            m.reshard()


def full_state_dict(module: nn.Module, names: Iterable[str], *, rank0_only: bool = True) -> dict[str, torch.Tensor]:
    """Full (unsharded) CPU copies of the parameters of ``module`` named in ``names``.

    A collective: every rank must call it with the same names. Gathers from the sharded parameters (the
    float32 masters, not the bf16 gathered copies), one ``DTensor.full_tensor`` each. With ``rank0_only``
    the other ranks get ``{}``.
    """
    wanted = set(names)
    reshard_all(module)
    keep = not rank0_only or not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0
    out: dict[str, torch.Tensor] = {}
    for name, p in module.named_parameters():
        if name not in wanted:
            continue
        full = p.full_tensor() if isinstance(p, DTensor) else p
        if keep:
            out[name] = full.detach().to("cpu", copy=True)
    return out


@torch.no_grad()
def load_full_state_dict(module: nn.Module, state: Mapping[str, torch.Tensor], *, strict: bool = False) -> list[str]:
    """Copy full tensors (e.g. from :func:`full_state_dict`) into the (sharded) parameters of ``module``.

    Every rank must hold ``state``; each copies its own shard (no collective). ``strict``: every parameter of
    ``module`` must be in ``state``. Names in ``state`` that ``module`` lacks always raise ``KeyError``.
    Returns the names loaded.
    """
    reshard_all(module)
    params = dict(module.named_parameters())
    if unexpected := sorted(set(state) - set(params)):
        raise KeyError(f"the state has parameters the module lacks: {unexpected[:8]}")
    if strict and (missing := sorted(set(params) - set(state))):
        raise KeyError(f"the state lacks parameters: {missing[:8]}")
    for name, value in state.items():
        p = params[name]
        if tuple(value.shape) != tuple(p.shape):
            raise ValueError(f"{name}: shape {tuple(value.shape)} in the state, {tuple(p.shape)} in the module")
        if isinstance(p, DTensor):
            full = value.to(device=p.to_local().device, dtype=p.dtype)
            shard = distribute_tensor(full, p.device_mesh, p.placements, src_data_rank=None).to_local()
            p.to_local().copy_(shard)
        else:
            p.copy_(value)
    return sorted(state)


class PhaseFSDPStrategy(ModelParallelStrategy):
    """FSDP2 over all devices (one data-parallel mesh dimension) with semcc's single-file checkpoints.

    The LightningModule shards itself in ``configure_model`` (Lightning's FSDP2 contract), with
    :func:`shard_semantic_cc` on ``self.device_mesh["data_parallel"]`` and :attr:`fsdp_kwargs`; phases call
    :func:`sync_requires_grad` after flipping ``requires_grad``.

    Checkpoints: one ``torch.save`` file, like DDP's, holding the parameters named by the module's
    ``trainable_parameter_names()`` (every parameter with ``requires_grad`` when the module has no such method)
    gathered to full CPU tensors on rank 0, and the full optimizer state of those parameters. Resuming
    loads each rank's shard of them back (the module's ``on_load_checkpoint`` still sees ``state_dict``).

    Args:
        data_parallel_size: ranks sharing the model (``"auto"``: all, the world size).
        param_dtype: dtype of the gathered parameters in forward / backward (``"bfloat16"``, ``"float32"``,
            ``"float16"``, or ``None`` for each parameter's own dtype).
        reduce_dtype: dtype of the gradient reduce-scatter (``"float32"``: exact sums of bf16 gradients).
        reshard_after_forward: free gathered parameters after each unit's forward.
        process_group_backend: ``None``: nccl on GPUs, gloo on CPUs.
        timeout: of the process group's collectives.
    """

    def __init__(
        self,
        data_parallel_size: Literal["auto"] | int = "auto",
        param_dtype: str | None = "bfloat16",
        reduce_dtype: str | None = "float32",
        reshard_after_forward: bool = True,
        process_group_backend: str | None = None,
        timeout: timedelta | None = default_pg_timeout,
    ) -> None:
        super().__init__(
            data_parallel_size=data_parallel_size,
            tensor_parallel_size=1,
            save_distributed_checkpoint=False,
            process_group_backend=process_group_backend,
            timeout=timeout,
        )
        for value in (param_dtype, reduce_dtype):
            _dtype(value)  # refuse an unknown name now, not at configure_model
        self.fsdp_kwargs: dict[str, Any] = {
            "param_dtype": param_dtype,
            "reduce_dtype": reduce_dtype,
            "reshard_after_forward": reshard_after_forward,
        }

    def setup_environment(self) -> None:
        if self._data_parallel_size == "auto":
            self._data_parallel_size = self.num_nodes * self.num_processes
        super().setup_environment()

    def setup(self, trainer: Any) -> None:
        assert self.lightning_module is not None
        if not is_sharded(self.lightning_module):
            raise TypeError(
                f"{type(self).__name__}: configure_model() of {type(self.lightning_module).__name__} did not shard "
                "the model (call semcc.tasks.sharding.shard_semantic_cc there)"
            )
        super().setup(trainer)

    def _trainable_names(self) -> set[str]:
        module = self.lightning_module
        assert module is not None
        if hasattr(module, "trainable_parameter_names"):
            return set(module.trainable_parameter_names())
        return {n for n, p in module.named_parameters() if p.requires_grad}

    def lightning_module_state_dict(self) -> dict[str, Any]:
        """Full CPU tensors of the trainable parameters on rank 0 (``{}`` elsewhere); a collective."""
        assert self.lightning_module is not None
        return full_state_dict(self.lightning_module, self._trainable_names(), rank0_only=True)

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """The full optimizer state on rank 0 (``{}`` elsewhere), keyed by parameter names; a collective.

        Gathered from the sharded state. The groups list the names in the optimizer's order, so a plain
        ``optimizer.load_state_dict`` (DDP) maps them back by position, as it does its own integer keys.
        Before the first step (no state yet) only the groups are saved: gathering would run
        ``torch.distributed.checkpoint``'s state initialisation, a zero-learning-rate step that starts every
        trainable parameter's step count at 1.
        """
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        module = self.lightning_module
        assert module is not None
        raw = optimizer._optimizer if isinstance(optimizer, LightningOptimizer) else optimizer
        if raw.state:
            reshard_all(module)
            options = StateDictOptions(full_state_dict=True, cpu_offload=True)
            state = get_optimizer_state_dict(module, raw, options=options)
            return state if self.global_rank == 0 else {}
        if self.global_rank != 0:
            return {}
        names = {id(p): n for n, p in module.named_parameters()}
        groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": [names[id(p)] for p in g["params"]]}
                  for g in raw.param_groups]
        return {"state": {}, "param_groups": groups}

    @property
    def restore_checkpoint_after_setup(self) -> bool:
        """Restore before ``setup`` (as DDP does): the module is sharded by then (``configure_model`` ran) and the
        module's ``on_load_checkpoint`` runs before the training loader is built, which the phase sampler's
        resume position needs; the optimizer state follows in :meth:`load_optimizer_state_dict`."""
        return False

    @property
    def lightning_restore_optimizer(self) -> bool:
        return True

    def load_checkpoint(self, checkpoint_path: _PATH, weights_only: bool | None = None) -> dict[str, Any]:
        """Read the single-file checkpoint on every rank (to CPU); the weights are loaded by
        :meth:`load_model_state_dict`, the optimizer state by :meth:`load_optimizer_state_dict`."""
        path = Path(self.broadcast(checkpoint_path))
        if path.is_dir():
            raise IsADirectoryError(f"{path}: {type(self).__name__} reads single-file checkpoints only")
        return self.checkpoint_io.load_checkpoint(path, weights_only=weights_only)

    def load_model_state_dict(self, checkpoint: Mapping[str, Any], strict: bool = True) -> None:
        """Copy each rank's shard of the saved (full) weights into the sharded parameters (no collective)."""
        assert self.lightning_module is not None
        load_full_state_dict(self.lightning_module, checkpoint.get("state_dict", {}), strict=strict)

    def load_optimizer_state_dict(self, checkpoint: Mapping[str, Any]) -> None:
        """Shard a full optimizer state into the optimizers: keyed by names (this strategy's), or by integers in
        the optimizer's order (a DDP checkpoint's)."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict
        from torch.distributed.fsdp import FullyShardedDataParallel, OptimStateKeyType

        module = self.lightning_module
        assert module is not None
        reshard_all(module)
        options = StateDictOptions(full_state_dict=True, strict=module.strict_loading)
        for optimizer, state in zip(self.optimizers, checkpoint.get("optimizer_states", []), strict=True):
            if not state.get("state"):  # saved before the first step: the groups' hyper-parameters only
                for group, saved in zip(optimizer.param_groups, state.get("param_groups", []), strict=True):
                    group.update({k: v for k, v in saved.items() if k != "params"})
                continue
            if isinstance(next(iter(state["state"])), int):
                state = FullyShardedDataParallel.rekey_optim_state_dict(
                    state, OptimStateKeyType.PARAM_NAME, module, optim=optimizer
                )
            set_optimizer_state_dict(module, optimizer, optim_state_dict=state, options=options)
