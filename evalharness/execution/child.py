"""Inside the sandbox: isolate this process tree, run one program, report through a pipe.

Started by `evalharness.execution.process` as `python -s -B child.py CONFIG_FD RESULT_FD` (or
`child.py --kill-all UID`, run as root: kill every process of UID); stdlib only, never imported.
CONFIG_FD is a memfd holding the JSON config (program, token, limits, isolation); RESULT_FD is the
write end of the result pipe. Three roles, each a process:

- outer: the process the harness started (own session). Enters new namespaces; with a PID namespace it
  forks the supervisor (PID 1 there) and waits for it, else it is the supervisor itself.
- supervisor (stays root): makes the whole filesystem read-only and the working directory a fresh
  size-limited tmpfs, forks the runner, waits for it and reports the runner's wait status.
- runner: drops to the dedicated uid, sets resource limits, then executes the program.

Report lines on RESULT_FD, each prefixed by the run's random token:
"ready" (setup done, program code about to run), "passed" (the test's own `check(candidate)`
returned), "exit <wait status>" (from the supervisor), "error <step>: <message>" (setup failed; no
program code ran).
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import stat
import sys
import traceback
import types
from typing import Any, NoReturn

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 0x2, 0x4, 0x8, 0x1000, 0x4000, 0x40000
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID = 0x1, 0x2
AT_FDCWD, AT_RECURSIVE = -100, 0x8000
SYS_MOUNT_SETATTR = 442  # x86-64, arm64 and the other architectures with the unified syscall table
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
MEMORY_EXIT = 3  # the program raised MemoryError (result.py reads the same value)
SETUP_EXIT = 4  # isolation setup failed (also reported on the pipe)

_libc = ctypes.CDLL(None, use_errno=True)


class SetupError(Exception):
    """An isolation step that failed; the message starts with the step's name (the harness maps it)."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"{step}: {message}")


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _checked(ret: int, step: str) -> None:
    if ret != 0:
        raise SetupError(step, os.strerror(ctypes.get_errno()))


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None, step: str) -> None:
    enc = (lambda s: None if s is None else s.encode())
    _checked(_libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)), step)


def _mount_setattr(path: str, attr_set: int, attr_clr: int, recursive: bool, step: str) -> None:
    attr = _MountAttr(attr_set, attr_clr, 0, 0)
    flags = AT_RECURSIVE if recursive else 0
    ret = _libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, path.encode(), flags, ctypes.byref(attr),
                        ctypes.sizeof(attr))
    _checked(ret, step)


def _prctl(option: int, value: int, step: str) -> None:
    _checked(_libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0), step)


def _write_line(fd: int, token: str, text: str) -> None:
    os.write(fd, f"{token} {text}\n".encode("utf-8", "replace"))


# --- filesystem -------------------------------------------------------------------


def _blocked_ancestor(path: str) -> str | None:
    """The highest directory on the way to `path` that other users cannot search, if any."""
    current = "/"
    for part in path.strip("/").split("/"):
        current = os.path.join(current, part)
        try:
            if not os.stat(current).st_mode & stat.S_IXOTH:
                return current
        except OSError:
            return None
    return None


def _expose(paths: list[str]) -> None:
    """Make `paths` reachable by the dedicated uid (read-only later): a directory on the way that only
    its owner may enter (e.g. /root holding the Python install) is covered by an empty tmpfs into which
    just these paths are bind-mounted; everything else in it stays hidden."""
    dirs = sorted({os.path.realpath(p) for p in paths if p and os.path.isdir(p)})
    outermost = [p for p in dirs if not any(p.startswith(q + "/") for q in dirs if q != p)]
    groups: dict[str, list[str]] = {}
    for path in outermost:
        blocker = _blocked_ancestor(path)
        if blocker is not None and blocker != path:
            groups.setdefault(blocker, []).append(path)
    for blocker, inside in groups.items():
        handles = [(p, os.open(p, os.O_PATH | os.O_DIRECTORY)) for p in inside]
        _mount("tmpfs", blocker, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k", f"expose {blocker}")
        for path, fd in handles:
            os.makedirs(path, mode=0o755, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC, None, f"expose {path}")
            os.close(fd)


def _setup_filesystem(workdir: str, uid: int | None, workdir_bytes: int, expose: list[str], new_proc: bool) -> None:
    """Private mounts; a fresh /proc for the PID namespace; everything read-only; `workdir` becomes an
    empty size-limited tmpfs owned by `uid` (it vanishes with the namespace)."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE, None, "mount namespace")
    if new_proc:
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None, "mount /proc")
    if expose:
        _expose(expose)
    _mount_setattr("/", MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0, True, "read-only filesystem")
    owner = "" if uid is None else f",uid={uid},gid={uid}"
    _mount("tmpfs", workdir, "tmpfs", MS_NOSUID | MS_NODEV, f"size={workdir_bytes},mode=0700{owner}",
           "writable working directory")
    os.chdir(workdir)  # the old working directory is the directory under the new mount


# --- runner -----------------------------------------------------------------------


def _drop_privileges(uid: int) -> None:
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


def _limit(which: int, soft: int, hard: int | None = None) -> None:
    """Lower a resource limit (never above the current hard limit, which would fail)."""
    current = resource.getrlimit(which)[1]
    cap = (lambda v: v if current == resource.RLIM_INFINITY else min(v, current))
    resource.setrlimit(which, (cap(soft), cap(soft if hard is None else hard)))


def _set_limits(limits: dict[str, int], limit_processes: bool) -> None:
    _limit(resource.RLIMIT_CORE, 0)
    _limit(resource.RLIMIT_CPU, limits["cpu_seconds"], limits["cpu_seconds"] + 1)  # SIGXCPU, then SIGKILL
    _limit(resource.RLIMIT_AS, limits["memory_bytes"])
    _limit(resource.RLIMIT_FSIZE, limits["file_size_bytes"])
    _limit(resource.RLIMIT_NOFILE, limits["max_open_files"])
    if limit_processes:  # counted per real uid: only meaningful under the dedicated uid
        _limit(resource.RLIMIT_NPROC, limits["max_processes"])


def _block_sockets() -> None:
    """Weaker fallback without a network namespace: refuse non-Unix sockets at the Python level.
    `socket.socket` initialises through `_socket.socket.__init__`, looked up at each call, so guarding
    `_socket.socket` covers both. Code calling the C library (ctypes) is not stopped."""
    import _socket
    import importlib

    importlib.import_module("socket")  # socket.socket subclasses the original class, before it is replaced

    original_init = _socket.socket.__init__

    class Guarded(_socket.socket):  # type: ignore[misc]
        __slots__ = ()

        def __init__(self, family: int = -1, type: int = -1, proto: int = -1, fileno: Any = None) -> None:
            if family != _socket.AF_UNIX:
                raise PermissionError("network access is disabled in the sandbox")
            original_init(self, family, type, proto, fileno)

    _socket.socket = _socket.SocketType = Guarded  # type: ignore[misc]


def _check_code(test_code: types.CodeType) -> types.CodeType:
    """The code object of the test's top-level `check` (the last one defined)."""
    found = None
    for const in test_code.co_consts:
        if isinstance(const, types.CodeType) and const.co_name == "check":
            found = const
    if found is None:
        raise RuntimeError("the test code defines no check function")
    return found


def _describe(exc: BaseException) -> None:
    """Traceback to stderr; its last line is `Type: message`."""
    try:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
    except BaseException:
        pass
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:  # hide this script's frames
        tb = tb.tb_next
    try:
        text = "".join(traceback.format_exception(type(exc), exc, tb))
    except BaseException:
        text = "MemoryError\n" if isinstance(exc, MemoryError) else "program failed\n"
    os.write(2, text[-8000:].encode("utf-8", "replace"))


def _execute(program: dict[str, str], result_fd: int, passed_line: bytes) -> NoReturn:
    """Exec prompt+completion, then the test, in one fresh namespace; call the test's own `check` on
    the entry point; write the pass line only if it returned. Everything used after the program's
    code starts is bound to locals first, so rebinding module attributes or builtins cannot reach it."""
    write, exit_, settrace, setprofile = os.write, os._exit, sys.settrace, sys.setprofile
    compile_, exec_, type_, isinstance_ = compile, exec, type, isinstance
    function_type, memory_error, streams = types.FunctionType, MemoryError, (sys.stdout, sys.stderr)
    namespace: dict[str, Any] = {}
    try:
        solution_code = compile_(program["solution"], "<solution>", "exec", dont_inherit=True, optimize=0)
        test_code = compile_(program["test"], "<test>", "exec", dont_inherit=True, optimize=0)
        check_code = _check_code(test_code)
        exec_(solution_code, namespace)
        exec_(test_code, namespace)
        settrace(None)
        setprofile(None)
        check = namespace.get("check")
        if type_(check) is not function_type or check.__code__ is not check_code:
            raise RuntimeError("the program replaced the test's check function")
        entry_point = program["entry_point"]
        if entry_point not in namespace:
            raise NameError(f"name {entry_point!r} is not defined")
        check(namespace[entry_point])
    except BaseException as exc:
        _describe(exc)
        exit_(MEMORY_EXIT if isinstance_(exc, memory_error) else 1)
    for stream in streams:
        try:
            stream.flush()
        except BaseException:
            pass
    write(result_fd, passed_line)
    exit_(0)


def _run(cfg: dict[str, Any], result_fd: int, supervisor: int) -> NoReturn:
    token, iso = cfg["token"], cfg["isolation"]
    try:
        if iso["uid"] is not None:
            _drop_privileges(iso["uid"])
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, "parent-death signal")  # after setuid, which clears it
        if os.getppid() != supervisor:
            os._exit(SETUP_EXIT)
        _prctl(PR_SET_NO_NEW_PRIVS, 1, "no_new_privs")
        _set_limits(cfg["limits"], limit_processes=iso["uid"] is not None)
        if not iso["network_namespace"]:
            _block_sockets()
        here = os.path.dirname(os.path.abspath(__file__))
        sys.path[:] = [p for p in sys.path if p != here]
    except Exception as exc:  # any setup failure is reported; the program never runs
        _write_line(result_fd, token, f"error runner: {exc}")
        os._exit(SETUP_EXIT)
    _write_line(result_fd, token, "ready")
    _execute(cfg["program"], result_fd, f"{token} passed\n".encode())


def _supervise(cfg: dict[str, Any], result_fd: int) -> NoReturn:
    token, iso = cfg["token"], cfg["isolation"]
    try:
        if iso["readonly_filesystem"]:
            expose = sys.path + [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
            _setup_filesystem(cfg["workdir"], iso["uid"], cfg["limits"]["workdir_bytes"],
                              expose if iso["uid"] is not None else [], iso["pid_namespace"])
    except SetupError as exc:
        _write_line(result_fd, token, f"error {exc}")
        os._exit(SETUP_EXIT)
    except OSError as exc:
        _write_line(result_fd, token, f"error read-only filesystem: {exc}")
        os._exit(SETUP_EXIT)
    me = os.getpid()
    pid = os.fork()
    if pid == 0:
        _run(cfg, result_fd, me)
    _, status = os.waitpid(pid, 0)
    _write_line(result_fd, token, f"exit {status}")
    os._exit(0)


def _unshare(iso: dict[str, Any]) -> None:
    steps = [("network namespace", iso["network_namespace"], CLONE_NEWNET),
             ("mount namespace", iso["readonly_filesystem"], CLONE_NEWNS),
             ("pid namespace", iso["pid_namespace"], CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS)]
    for step, wanted, flags in steps:
        if wanted:
            _checked(_libc.unshare(flags), step)


def _kill_all(uid: int) -> NoReturn:
    """As `uid`, SIGKILL every process of `uid` (escapees, when there is no PID namespace)."""
    _drop_privileges(uid)
    try:
        os.kill(-1, signal.SIGKILL)  # every process this uid may signal, except this one
    except ProcessLookupError:
        pass
    os._exit(0)


def main() -> NoReturn:
    if sys.argv[1] == "--kill-all":
        _kill_all(int(sys.argv[2]))
    config_fd, result_fd = int(sys.argv[1]), int(sys.argv[2])
    with os.fdopen(config_fd, "rb") as f:
        cfg = json.loads(f.read())
    token, iso = cfg["token"], cfg["isolation"]
    try:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, "parent-death signal")
        _unshare(iso)
    except SetupError as exc:
        _write_line(result_fd, token, f"error {exc}")
        os._exit(SETUP_EXIT)
    if not iso["pid_namespace"]:
        _supervise(cfg, result_fd)
    pid = os.fork()  # the first child is PID 1 of the new namespace
    if pid == 0:
        try:
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, "parent-death signal")
        except SetupError as exc:
            _write_line(result_fd, token, f"error {exc}")
            os._exit(SETUP_EXIT)
        _supervise(cfg, result_fd)
    os.waitpid(pid, 0)
    os._exit(0)


if __name__ == "__main__":
    main()
