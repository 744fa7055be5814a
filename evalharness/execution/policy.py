"""What the sandbox enforces: per-program resource limits and the isolation mechanisms in use."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

#: First dedicated uid (and gid); worker slot i runs programs as DEFAULT_UID_BASE + i. Far above login
#: users, systemd's dynamic users and container subuid ranges; must not belong to a named account.
DEFAULT_UID_BASE = 1_990_000_000


@dataclass(frozen=True)
class Limits:
    """Per-program limits. CPU, memory, file size and open files are per process; `max_processes`
    counts every process and thread of the program (applied only under a dedicated uid);
    `workdir_bytes` caps the working directory (a tmpfs; only with a read-only filesystem)."""

    wall_seconds: float = 10.0
    cpu_seconds: int = 5
    memory_bytes: int = 2 * 1024**3
    file_size_bytes: int = 16 * 1024**2
    max_processes: int = 16
    max_open_files: int = 256
    workdir_bytes: int = 64 * 1024**2

    def __post_init__(self) -> None:
        if self.wall_seconds <= 0:
            raise ValueError("wall_seconds must be positive")
        for name in ("cpu_seconds", "memory_bytes", "file_size_bytes", "max_processes", "max_open_files",
                     "workdir_bytes"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1")


@dataclass(frozen=True)
class Isolation:
    """The isolation mechanisms a sandbox applies to every program.

    dedicated_uids: programs run under an unprivileged uid of their own (needs root); makes the process
        limit hold and keeps them away from the harness's files and processes.
    pid_namespace: programs see only their own processes; all of them die with the run.
    network_namespace: programs get an empty network stack (no interface up); without it sockets are
        refused in Python only, which code calling the C library directly gets around.
    readonly_filesystem: a mount namespace in which everything is read-only except the working directory.
    """

    dedicated_uids: bool
    pid_namespace: bool
    network_namespace: bool
    readonly_filesystem: bool

    @classmethod
    def full(cls) -> Isolation:
        return cls(True, True, True, True)

    @property
    def is_full(self) -> bool:
        return self == Isolation.full()

    def to_dict(self) -> dict[str, Any]:
        """For results files: which mechanisms were in use."""
        return asdict(self)
