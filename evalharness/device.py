"""`--device`: checked before any model loads, so a device this machine lacks is one clear line."""

from __future__ import annotations

from .errors import ConfigError


def check_device(device: str | None) -> None:
    """Fail with one line if `device` (cpu, cuda, cuda:N, mps, ...) is not a device torch can use here.

    None (the default: cuda where available, else cpu) always passes.
    """
    if device is None:
        return
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"--device {device}: not a device name torch knows (cpu, cuda, cuda:N, mps)") from exc
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            why = "torch here is built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ConfigError(f"--device {device}: {why} (torch {torch.__version__}); use --device cpu")
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise ConfigError(f"--device {device}: this machine has {count} CUDA GPU(s), numbered 0..{count - 1}")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {device}: Apple's MPS is not available here; use --device cpu")
    elif parsed.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"--device {device}: evalharness runs on cpu, cuda or mps, not {parsed.type}")
