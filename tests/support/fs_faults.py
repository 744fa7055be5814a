"""Faults of the file system, done for real (we run as root, for whom chmod stops nothing): a small tmpfs that
fills up, a read-only bind mount over a folder, an immutable file (`chattr +i`). Each skips the test, naming the
reason, where this machine does not allow it (e.g. a container without CAP_SYS_ADMIN)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest


def _run(*cmd: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True)
    except FileNotFoundError as exc:
        return subprocess.CompletedProcess(cmd, 127, "", str(exc))


def _must(*cmd: str) -> None:
    proc = _run(*cmd)
    assert proc.returncode == 0, f"{' '.join(cmd)}: {proc.stderr.strip()}"


def _or_skip(*cmd: str) -> None:
    proc = _run(*cmd)
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[0]
        pytest.skip(f"this machine does not allow `{' '.join(cmd)}`: {why}")


@contextlib.contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` (e.g. '4m') mounted on `folder` for the block."""
    folder.mkdir(parents=True, exist_ok=True)
    _or_skip("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder))
    try:
        yield folder
    finally:
        _must("umount", "--lazy", str(folder))


def fill(folder: Path) -> Path:
    """Fill the file system holding `folder` to its last byte; the filler's path (delete it to free the space)."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for size in (1 << 16, 1 << 12, 1):
            with contextlib.suppress(OSError):  # ENOSPC: full at this size, go on with smaller writes
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return filler


class ReadOnly:
    """A read-only bind mount over `folder`, on (`on()`) until `off()`: files opened before keep working, as after
    `chmod a-w` for a user; every new file in it fails with EROFS."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.mounted = False

    def check(self) -> ReadOnly:
        """Skip the test now if bind mounts are not allowed here."""
        probe = self.folder.parent / f".{self.folder.name}.bind-probe"
        probe.mkdir(exist_ok=True)
        try:
            _or_skip("mount", "--bind", str(probe), str(probe))
            _must("umount", str(probe))
        finally:
            probe.rmdir()
        return self

    def on(self) -> None:
        _must("mount", "--bind", str(self.folder), str(self.folder))
        self.mounted = True
        _must("mount", "-o", "remount,bind,ro", str(self.folder))

    def off(self) -> None:
        if self.mounted:
            _must("umount", str(self.folder))
            self.mounted = False


@contextlib.contextmanager
def immutable(*paths: Path) -> Iterator[None]:
    """`chattr +i` on `paths` for the block: nobody, root included, can open them for writing."""
    _or_skip("chattr", "+i", *map(str, paths))
    try:
        yield
    finally:
        _must("chattr", "-i", *map(str, paths))
