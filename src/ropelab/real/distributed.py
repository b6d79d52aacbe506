"""The real-model fine-tune across processes: FSDP2 under ``torchrun``, and checkpoints through
``torch.distributed.checkpoint`` that one process and many write and read alike.

Notation: ``k`` processes (``WORLD_SIZE``), this one of rank ``r``; ``P`` parameters.

- :func:`join` joins the process group ``torchrun`` describes (gloo on CPU, nccl on CUDA).
- :func:`shard_for_training` builds the training copy: the model's architecture on the meta device,
  each decoder layer and then the root passed to ``torch.distributed.fsdp.fully_shard`` (FSDP2:
  every parameter split along its first dimension across the ``k`` ranks; Zhao et al. 2023,
  "PyTorch FSDP", arXiv 2304.11277, sec. 3), materialised with ``to_empty`` and filled from the
  model's own full state dict. Each rank then holds ``P / k`` float32 master weights, their gradients
  and AdamW's two moments. Mixed precision (``MixedPrecisionPolicy(param_dtype=bfloat16,
  reduce_dtype=float32)``): a layer's parameters are all-gathered in bfloat16 for its forward and
  backward and freed after, gradients are reduce-scattered in float32 into the float32 shards.
- :func:`full_state_dict` gathers the trained weights once, onto rank 0's CPU (the hand-over).
- :func:`save_checkpoint` / :func:`load_checkpoint`: a checkpoint is a folder. Each save writes the
  model and optimizer state (sharded as they are: every rank writes its own shards) into a fresh
  ``step-NNNNNN`` sub-folder with ``torch.distributed.checkpoint``; only when every rank has finished
  does rank 0 replace ``latest.json`` (atomically, :func:`ropelab.io.atomic_write_text`), which
  names that sub-folder and holds the step, the loss history, the random generator and what the
  run is (:func:`ropelab.real.finetune.run_identity`). A run killed at any moment leaves
  ``latest.json`` naming a complete checkpoint. The loader reshards, so a checkpoint of ``k``
  processes resumes on any number of them. Every rank writes to the same folder: across machines
  it must be on a shared file system.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import warnings
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from ropelab.errors import RealModelError

__all__ = [
    "world_size",
    "join",
    "rank",
    "is_main_process",
    "barrier",
    "local_device",
    "decoder_layers",
    "shard_for_training",
    "full_state_dict",
    "mean_over_ranks",
    "save_checkpoint",
    "read_checkpoint",
    "load_checkpoint",
    "CHECKPOINT_FORMAT",
    "LATEST",
]

CHECKPOINT_FORMAT = "ropelab-real-finetune-2"  # a folder: latest.json + torch.distributed.checkpoint shards
LATEST = "latest.json"
# a rank waits at a barrier while rank 0 measures a checkpoint (a long forward on a big model): far
# longer than torch's 30-minute default
GROUP_TIMEOUT = timedelta(hours=12)


# ----------------------------------------------------------------------------- the process group
def world_size() -> int:
    """Processes in this run: the initialised group's size, else ``torchrun``'s ``WORLD_SIZE`` (1 without)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def join(device: str = "cpu") -> int:
    """Join ``torchrun``'s process group (once) and return ``k``; 1 outside ``torchrun``."""
    world = world_size()
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo", timeout=GROUP_TIMEOUT)
    return world


def _grouped() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank: the group's, else ``torchrun``'s ``RANK`` before joining (0 outside ``torchrun``)."""
    if _grouped():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0")) if world_size() > 1 else 0


def is_main_process() -> bool:
    """Rank 0, or the only process: the one that measures and writes files."""
    return rank() == 0


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def local_device(device: str) -> str:
    """Under ``torchrun`` on GPUs each process takes ``cuda:LOCAL_RANK``; any other device is returned as is."""
    if device == "cuda" and world_size() > 1:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(device)
    return device


def mean_over_ranks(value: float) -> float:
    """The mean of ``value`` over the ``k`` ranks (``value`` itself in one process)."""
    if world_size() == 1 or not dist.is_initialized():
        return value
    total = torch.tensor([value], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        total = total.cuda()
    dist.all_reduce(total)
    return total.item() / dist.get_world_size()


# ----------------------------------------------------------------------------- FSDP2
def decoder_layers(model) -> list[torch.nn.Module]:
    """The model's repeated blocks: modules of the classes transformers names in ``_no_split_modules``
    (``LlamaDecoderLayer``, ...), each one FSDP unit."""
    names = set(getattr(model, "_no_split_modules", None) or ())
    layers = [module for module in model.modules() if type(module).__name__ in names]
    if not layers:
        raise RealModelError(
            f"{type(model).__name__} names no decoder layer class (_no_split_modules): FSDP has no unit to shard"
        )
    return layers


def shard_for_training(model, *, mixed_precision: bool, device: str | torch.device | None = None):
    """A copy of ``model`` sharded across the group by FSDP2, in float32 master weights (see the module
    docstring). ``model`` (a transformers causal LM, every rank holding its full weights) is unchanged.

    Buffers (rotary ``inv_freq`` and the like) are copied from ``model``, and so are the rotary modules
    ropelab's patch put in (:func:`ropelab.real.evaluate.use_rope`), so the copy computes the same RoPE.
    """
    import copy

    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    device = torch.device(device or next(model.parameters()).device)
    with torch.device("meta"):
        sharded = type(model)(copy.deepcopy(model.config))
    for name in getattr(model, "_ropelab_originals", {}):  # the patched rotary modules (no weights)
        parent, _, child = name.rpartition(".")
        value = getattr(model.get_submodule(parent) if parent else model, child)
        setattr(sharded.get_submodule(parent) if parent else sharded, child, copy.deepcopy(value))
    sharded._ropelab_originals = getattr(model, "_ropelab_originals", {})
    sharded.float()  # master weights in float32 whatever the loaded dtype
    policy = (
        MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        if mixed_precision
        else MixedPrecisionPolicy()
    )
    for layer in decoder_layers(sharded):
        fully_shard(layer, mp_policy=policy)
    fully_shard(sharded, mp_policy=policy)
    sharded.to_empty(device=device)
    full = {name: tensor.float() for name, tensor in model.state_dict().items()}
    set_model_state_dict(sharded, full, options=StateDictOptions(full_state_dict=True))
    buffers = dict(model.named_buffers())
    for name, buffer in sharded.named_buffers():
        if name in buffers:
            buffer.copy_(buffers[name])
    return sharded


def full_state_dict(model) -> dict[str, torch.Tensor]:
    """The full weights of a sharded ``model``, gathered once onto rank 0's CPU (``{}`` on the other ranks)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


# ----------------------------------------------------------------------------- checkpoints
def _states(model, optimizer, trainable_only: bool) -> dict:
    """The model's and optimizer's state dicts as they are held (sharded under FSDP), keyed by parameter name."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    options = StateDictOptions(ignore_frozen_params=trainable_only)
    model_state, optimizer_state = get_state_dict(model, optimizer, options=options)
    return {"model": model_state, "optimizer": optimizer_state}


@contextlib.contextmanager
def _one_process_quiet():
    """Silence DCP's warning that one process without a group saves or loads alone (that is the intent)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is (disabled, )?unavailable or uninitialized")
        yield


def save_checkpoint(folder: str | os.PathLike, step: int, model, optimizer, meta: dict, generator, *, trainable_only):
    """Write step ``step`` into ``folder`` (collective under ``torchrun``): every rank's shards into
    ``step-NNNNNN``, then ``latest.json`` (rank 0, atomically) naming it; older steps are removed.

    Args:
        meta: JSON-able facts of the run (step, losses, identity), kept in ``latest.json``.
        trainable_only: leave frozen weights out (LoRA: the base model is the loaded one).
    """
    import torch.distributed.checkpoint as dcp

    from ropelab.io import atomic_write_text

    folder = Path(folder)
    name = f"step-{step:06d}"
    partial = folder / f".{name}.partial"
    if is_main_process():
        shutil.rmtree(partial, ignore_errors=True)  # left by a run killed while writing
        partial.mkdir(parents=True)
    barrier()
    with _one_process_quiet():
        dcp.save(_states(model, optimizer, trainable_only), checkpoint_id=str(partial), no_dist=not _grouped())
    barrier()
    if is_main_process():
        shutil.rmtree(folder / name, ignore_errors=True)
        os.replace(partial, folder / name)
        record = {
            "format": CHECKPOINT_FORMAT,
            "folder": name,
            "step": step,
            "processes": world_size(),
            "generator": base64.b64encode(generator.get_state().numpy().tobytes()).decode(),
            **meta,
        }
        atomic_write_text(folder / LATEST, json.dumps(record))
        for old in folder.glob("step-*"):
            if old.name != name:
                shutil.rmtree(old, ignore_errors=True)
    barrier()


def read_checkpoint(folder: str | os.PathLike) -> dict | None:
    """``latest.json`` of the checkpoint folder ``folder``; None where there is none yet.

    Raises:
        RealModelError: ``folder`` is a file, or its ``latest.json`` is corrupt or of another format.
    """
    folder = Path(folder)
    if folder.is_file():
        raise RealModelError(f"fine-tune checkpoint {str(folder)!r} is invalid: a file, expected a checkpoint folder")
    path = folder / LATEST
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RealModelError(
            f"fine-tune checkpoint {str(folder)!r} is corrupt ({type(error).__name__}); remove it to start over"
        ) from None
    if not isinstance(record, dict) or record.get("format") != CHECKPOINT_FORMAT:
        raise RealModelError(
            f"fine-tune checkpoint {str(folder)!r} is invalid: not a ropelab fine-tune checkpoint "
            f"(expected format {CHECKPOINT_FORMAT})"
        )
    return record


def load_checkpoint(folder: str | os.PathLike, record: dict, model, optimizer, generator, *, trainable_only) -> None:
    """Load the checkpoint ``record`` (from :func:`read_checkpoint`) into ``model``, ``optimizer`` and
    ``generator``, resharded to this run's processes (collective under ``torchrun``)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    states = _states(model, optimizer, trainable_only)
    try:
        with _one_process_quiet():
            dcp.load(states, checkpoint_id=str(Path(folder) / record["folder"]), no_dist=not _grouped())
    except Exception as error:  # DCP raises many types (missing shard, foreign file)
        raise RealModelError(
            f"fine-tune checkpoint {str(folder)!r} is corrupt ({type(error).__name__}); remove it to start over"
        ) from None
    set_state_dict(
        model,
        optimizer,
        model_state_dict=states["model"],
        optim_state_dict=states["optimizer"],
        options=StateDictOptions(ignore_frozen_params=trainable_only, strict=not trainable_only),
    )
    state = torch.frombuffer(bytearray(base64.b64decode(record["generator"])), dtype=torch.uint8)
    generator.set_state(state)
