"""The `hf` backend's factory: load the model `--model` names (sharded under FSDP when asked) and wrap it."""

from __future__ import annotations

import time

from ...models.loading import load_model
from ...models.presets import PRESETS
from ..base import BackendSetup
from .backend import HFBackend
from .options import HFOptions


def load_hf_backend(setup: BackendSetup, options: HFOptions) -> HFBackend:
    """Load `setup.model` and return the backend answering with it. In a multi-process run the model is FSDP-sharded
    when `setup.fsdp` says so (or, when None, when it does not fit one device); else each process holds a copy."""
    dist = setup.dist
    sharded = None
    if dist is not None and dist.world_size > 1:
        from ...models.fsdp import ShardedLoader

        sharded = ShardedLoader(setup.fsdp, dist.local_world_size, setup.trust_remote_code)
    started = time.perf_counter()
    loaded = load_model(setup.model, dtype=setup.dtype, device=dist.device if dist is not None else setup.device,
                        max_seq_len=setup.max_length, trust_remote_code=setup.trust_remote_code, build=sharded)
    info = {**loaded.info, "fsdp": bool(sharded and sharded.used), "load_seconds": round(time.perf_counter() - started, 2)}
    identity = f"{loaded.info['fingerprint']}|config={loaded.info['config_sha256']}|{loaded.dtype}"
    preset = PRESETS.get(setup.model)
    return HFBackend(loaded.model, loaded.tokenizer, batch_size=setup.batch_size, max_length=setup.max_length,
                     options=options, identity=identity, model_info=info, process_wide=setup.owns_process,
                     default_chat_template=preset.chat_template if preset is not None else None)
