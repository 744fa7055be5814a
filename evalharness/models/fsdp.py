"""FSDP2 for evaluation: shard a causal LM per transformer block, loading each rank's shard from the files.

The model is built on the meta device (parameters only: buffers such as rotary frequencies are computed as
usual), each transformer block and then the whole model are wrapped with `fully_shard`, and every rank reads
only its own rows of each weight from the checkpoint: no rank ever holds the full weights.
"""

from __future__ import annotations

import contextlib
import copy
import os
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import nn

from ..errors import ModelLoadError
from .checkpoint import CheckpointReader

KNOWN_BLOCKS = frozenset({"MptBlock", "MPTBlock", "LlamaDecoderLayer", "FalconDecoderLayer"})
FIT_FRACTION = 0.7  # a model fits a device when its parameters take at most this share of the free memory


def parameter_bytes(model: torch.nn.Module) -> int:
    """Bytes of parameter storage this process holds (its shards only, for FSDP-sharded parameters)."""
    total = 0
    for p in model.parameters():
        local = p.to_local() if hasattr(p, "to_local") else p
        total += local.numel() * local.element_size()
    return total


def transformer_blocks(model: nn.Module) -> list[nn.Module]:
    """The modules sharded one by one: MPT blocks, LLaMA/Falcon decoder layers, else the classes the model
    names in `_no_split_modules`, else the entries of its longest ModuleList of one repeated class."""
    for names in (KNOWN_BLOCKS, set(getattr(model, "_no_split_modules", None) or ())):
        found = [m for m in model.modules() if type(m).__name__ in names]
        if found:
            return found
    repeated = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) > 1 and len({type(c) for c in m}) == 1]
    return list(max(repeated, key=len)) if repeated else []


def shard(model: nn.Module, dtype: torch.dtype, device: str) -> nn.Module:
    """Wrap every transformer block, then the whole model, with FSDP2 `fully_shard` over all ranks.

    Parameters are gathered in `dtype` (bf16 mixed precision for bf16 runs, float32 for float32 runs).
    """
    from torch.distributed.device_mesh import init_device_mesh

    try:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    except ImportError:  # torch < 2.6
        from torch.distributed._composable.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(torch.device(device).type, (dist.get_world_size(),))
    policy = MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32)
    for block in reversed(transformer_blocks(model)):  # inner modules before the ones holding them
        fully_shard(block, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    model._is_fsdp_managed_module = True  # transformers' generate() then keeps the ranks stepping together
    return model


@contextlib.contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Modules created inside get their parameters on the meta device (no memory); buffers stay real."""
    register = nn.Module.register_parameter

    def on_meta(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        register(module, name, param)
        if param is not None and param.device.type != "meta":  # an already-meta parameter keeps its identity (tied weights)
            module._parameters[name] = type(param)(param.to("meta"), requires_grad=param.requires_grad)

    nn.Module.register_parameter = on_meta  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter = register  # type: ignore[method-assign]


def build_on_meta(config: Any, dtype: torch.dtype, trust_remote_code: bool = False) -> nn.Module:
    from transformers import AutoModelForCausalLM

    with parameters_on_meta():
        return AutoModelForCausalLM.from_config(config, dtype=dtype, trust_remote_code=trust_remote_code)


def available_memory() -> int:
    """Bytes of memory this machine can still give (MemAvailable)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def fits_one_device(param_bytes: int, device: str, copies: int) -> bool:
    """Whether a full copy of the parameters fits the GPU's free memory, or, on CPU, `copies` full copies
    (one per process on this machine) fit its available memory, each within FIT_FRACTION."""
    if torch.device(device).type == "cuda":
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return param_bytes <= FIT_FRACTION * free
    return copies * param_bytes <= FIT_FRACTION * available_memory()


def checkpoint_folder(weights: str) -> Path:
    """The local folder of the weights: the folder itself, or the hub snapshot (safetensors preferred)."""
    if Path(weights).is_dir():
        return Path(weights)
    from huggingface_hub import snapshot_download

    from .loading import _offline_message

    for pattern in ("*.safetensors", "*.bin"):
        for local_only in (True, False):
            try:
                folder = Path(snapshot_download(weights, allow_patterns=[pattern, "*.json"], local_files_only=local_only))
            except Exception as exc:  # not cached / offline / no such files
                if not local_only and os.environ.get("HF_HUB_OFFLINE") != "1":
                    raise ModelLoadError(f"{_offline_message(weights)} ({type(exc).__name__})") from exc
                continue
            if any(folder.glob(pattern)):
                return folder
    raise ModelLoadError(_offline_message(weights))


def _rows_of(param: torch.Tensor, rank: int, world: int) -> tuple[int, int]:
    """The rows (dimension 0) of the full tensor that this rank's shard holds: FSDP2 cuts dimension 0 into
    `world` chunks of ceil(rows / world), as torch.chunk."""
    n = param.shape[0]
    chunk = -(-n // world)
    start = min(n, rank * chunk)
    return start, min(n, start + chunk)


def _checkpoint_key(names: list[str], reader: CheckpointReader, prefix: str) -> str | None:
    """The checkpoint's name for a parameter known by `names` (tied parameters have several), with or
    without the base model's prefix."""
    for name in names:
        candidates = [name, name[len(prefix) + 1:] if prefix and name.startswith(prefix + ".") else f"{prefix}.{name}"]
        for key in candidates:
            if key in reader:
                return key
    return None


def load_into_shards(model: nn.Module, folder: Path) -> None:
    """Copy each rank's rows of every parameter (and any stored buffer) from the checkpoint files."""
    from torch.distributed.tensor import DTensor, Shard

    reader = CheckpointReader(folder)
    rank, world = dist.get_rank(), dist.get_world_size()
    aliases: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        aliases.setdefault(id(p), []).append(name)
    prefix = getattr(model, "base_model_prefix", "") or ""
    with torch.no_grad():
        for name, p in model.named_parameters():
            key = _checkpoint_key(aliases[id(p)], reader, prefix)
            if key is None:
                raise ModelLoadError(f"{folder}: no tensor {name!r} in the checkpoint files to load the FSDP shards from; "
                                     "try --no-fsdp")
            if reader.shape(key) != tuple(p.shape):
                raise ModelLoadError(f"{folder}: tensor {key!r} has shape {reader.shape(key)}, the model expects {tuple(p.shape)}")
            if isinstance(p, DTensor):
                if tuple(p.placements) != (Shard(0),):
                    raise ModelLoadError(f"unexpected FSDP placement {p.placements} of {name!r}")
                local = p.to_local()
                start, end = _rows_of(p, rank, world)
                if local.shape[0] != end - start:
                    raise ModelLoadError(f"FSDP shard of {name!r} has {local.shape[0]} rows, expected {end - start}")
            else:
                local, start, end = p, 0, p.shape[0] if p.dim() else 0
            local.copy_(reader.rows(key, start, end))
        for name, b in model.named_buffers():
            if name in reader:
                b.copy_(reader.rows(name, 0, b.shape[0] if b.dim() else 0))


def load_sharded(model: nn.Module, folder: Path, dtype: torch.dtype, device: str) -> nn.Module:
    """Shard a meta-device model, give each rank memory for its shards only, and fill them from `folder`."""
    buffers = {name: b for name, b in model.named_buffers()}  # computed at construction; to_empty wipes them
    shard(model, dtype, device)
    model.to_empty(device=device)
    with torch.no_grad():
        for name, b in model.named_buffers():
            b.copy_(buffers[name])
    load_into_shards(model, folder)
    model.requires_grad_(False).eval()
    with torch.inference_mode():  # the first forward goes through the root (FSDP's lazy initialisation)
        model(input_ids=torch.zeros((1, 1), dtype=torch.long, device=device))
        model.reshard()
    return model


class ShardedLoader:
    """`load_model`'s build hook in a multi-process run: FSDP-shards the model when `fsdp` is True, or, when it
    is None, when the model does not fit one device; returns None (load a full copy per rank) otherwise."""

    def __init__(self, fsdp: bool | None, local_world_size: int, trust_remote_code: bool = False) -> None:
        self.fsdp = fsdp
        self.copies = local_world_size
        self.trust_remote_code = trust_remote_code
        self.used = False
        self.param_bytes = 0  # of the whole model, in the run's dtype

    def __call__(self, weights: str, config: Any, dtype: torch.dtype, device: str) -> nn.Module | None:
        model = build_on_meta(copy.deepcopy(config), dtype, self.trust_remote_code)  # from_config edits its config
        self.param_bytes = parameter_bytes(model)
        if self.fsdp is None:
            fits = [None] * dist.get_world_size()
            dist.all_gather_object(fits, fits_one_device(self.param_bytes, device, self.copies))
            self.used = not all(fits)  # every rank decides the same
        else:
            self.used = self.fsdp
        return load_sharded(model, checkpoint_folder(weights), dtype, device) if self.used else None
