"""Backends: what answers requests (base.py), found by name (registry.py).

`hf` (hf/) runs transformers causal LMs; the CPU plugin (hf_cpu/) is an optional accelerator for it. The request
cache (cache.py) and the distributed layer (distributed.py) are backends wrapping another backend.
"""

from .base import Backend, BackendSetup, Capabilities, OnResults, Progress, deliver, deliver_known
from .registry import NoOptions, backend_entries, create_backend, get_backend, register_backend

__all__ = ["Backend", "BackendSetup", "Capabilities", "NoOptions", "OnResults", "Progress", "backend_entries",
           "create_backend", "deliver", "deliver_known", "get_backend", "register_backend"]
