"""The code-execution sandbox: consent, statuses and limits, isolation, and a set of hostile programs.

Each hostile completion (for HumanEval/0) returns the right answer once its attack has worked, so a pass
would mean the sandbox was breached. Every one must fail, change nothing outside its temporary working
directory, leave the evaluator and a bystander process running, and leave no process behind.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from string import Template

import pytest

import evalharness.execution
from evalharness.errors import CodeExecutionNotAllowed, EvalHarnessError, SandboxUnavailable
from evalharness.execution import (
    DEFAULT_UID_BASE,
    ExecutionResult,
    HumanEvalProblem,
    Isolation,
    Limits,
    Program,
    Sandbox,
    Status,
    build_program,
    ensure_code_execution_allowed,
    load_problems,
)
from evalharness.execution import isolation as isolation_module
from evalharness.execution.process import child_environment
from evalharness.execution.result import Report, classify
from evalharness.execution.uids import UidLease

LIMITS = Limits(wall_seconds=4, cpu_seconds=2)
CHECK_ONE = "def check(candidate):\n    assert candidate() == 1\n"
# A correct body for HumanEval/0 (has_close_elements).
CORRECT = "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])\n"
CANARY_TEXT = "canary: must survive\n"
FORK_COUNTER = (
    "import os, time\n\ndef f():\n    forked = 0\n    for _ in range(100):\n        try:\n"
    "            pid = os.fork()\n        except OSError:\n            break\n        if pid == 0:\n"
    "            time.sleep(30)\n            os._exit(0)\n        forked += 1\n    print(forked)\n    return 1\n"
)
ESCAPEE = (  # a grandchild in a session of its own, still running when the program has passed
    "import os, time\n\ndef f():\n    if os.fork() == 0:\n        os.setsid()\n        if os.fork() == 0:\n"
    "            time.sleep(60)\n        os._exit(0)\n    os.wait()\n    return 1\n"
)


def program(body: str, test: str = CHECK_ONE) -> Program:
    return Program(solution=body, test=test, entry_point="f")


def run_one(box: Sandbox, prog: Program) -> ExecutionResult:
    return box.submit(prog).result(timeout=120)


def processes_of(uids: list[int]) -> list[int]:
    """Pids of processes (zombies included: they still count against the process limit) of `uids`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            lines = Path(f"/proc/{entry}/status").read_text().splitlines()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in lines if ":" in line)
        if int(fields["Uid"].split()[0]) in uids:
            found.append(int(entry))
    return found


def processes_left(uids: list[int], within: float = 5.0) -> list[int]:
    """Processes of `uids` still alive after waiting up to `within` seconds for them to go."""
    deadline = time.monotonic() + within
    while (left := processes_of(uids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(allow_code_execution=True, limits=LIMITS, max_workers=2) as box:
        yield box


@pytest.fixture(scope="module")
def problem0() -> HumanEvalProblem:
    return load_problems()[0]


@pytest.fixture(scope="module")
def listener() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.setblocking(False)
        yield server


def assert_no_connection(server: socket.socket) -> None:
    with pytest.raises(BlockingIOError):
        server.accept()


# --- consent and configuration ------------------------------------------------------


def test_code_execution_needs_explicit_consent() -> None:
    with pytest.raises(CodeExecutionNotAllowed, match="--allow-code-execution") as info:
        Sandbox()
    assert isinstance(info.value, EvalHarnessError)
    for not_consent in (False, 1, "yes", None):
        with pytest.raises(CodeExecutionNotAllowed):
            ensure_code_execution_allowed(not_consent)  # type: ignore[arg-type]
    ensure_code_execution_allowed(True)


def test_full_isolation_on_this_machine(sandbox: Sandbox) -> None:
    assert sandbox.isolation == Isolation.full(), (
        "the tests (and CI) expect root on Linux with PID, network and mount namespaces; "
        f"this machine gave {sandbox.isolation}"
    )
    assert len(set(sandbox.uids)) == 2 and all(uid >= DEFAULT_UID_BASE for uid in sandbox.uids)


def test_uid_leases_are_exclusive_and_skip_named_accounts() -> None:
    base = DEFAULT_UID_BASE + 100_000
    first = UidLease(base, 2)
    second = UidLease(base, 2)
    try:
        assert first.uids == [base, base + 1] and second.uids == [base + 2, base + 3]
        first.release()
        third = UidLease(base, 2)
        assert third.uids == [base, base + 1]
        third.release()
    finally:
        first.release()
        second.release()
    named = UidLease(0, 1)  # uid 0 is root: skipped
    try:
        assert named.uids[0] > 0
        with pytest.raises(KeyError):
            pwd.getpwuid(named.uids[0])
    finally:
        named.release()


def test_detection_gives_up_only_the_mechanisms_that_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    tried: list[Isolation] = []

    def fake_run(prog: Program, limits: Limits, isolation: Isolation, uid: int | None) -> ExecutionResult:
        tried.append(isolation)
        if isolation.network_namespace:
            error = "sandbox setup failed: network namespace: Operation not permitted"
            return ExecutionResult(Status.ERROR, error, 0.1)
        if isolation.dedicated_uids:  # e.g. the dedicated uid cannot read the Python installation
            return ExecutionResult(Status.FAILED, "ModuleNotFoundError: No module named 'math'", 0.1)
        return ExecutionResult(Status.PASSED, "", 0.1)

    monkeypatch.setattr(isolation_module, "_detected", [])
    monkeypatch.setattr(isolation_module, "run_program", fake_run)
    found = isolation_module.detect_isolation(DEFAULT_UID_BASE)
    assert found == Isolation(dedicated_uids=False, pid_namespace=True, network_namespace=False,
                              readonly_filesystem=True)
    assert [t.to_dict() for t in tried] == [Isolation.full().to_dict(), {**Isolation.full().to_dict(),
                                            "network_namespace": False}, found.to_dict()]
    assert isolation_module.detect_isolation(DEFAULT_UID_BASE) is found and len(tried) == 3  # probed once

    def broken(prog: Program, limits: Limits, isolation: Isolation, uid: int | None) -> ExecutionResult:
        return ExecutionResult(Status.ERROR, "sandbox did not complete: python: not found", 0.1)

    monkeypatch.setattr(isolation_module, "_detected", [])
    monkeypatch.setattr(isolation_module, "run_program", broken)
    with pytest.raises(SandboxUnavailable, match="python: not found"):
        isolation_module.detect_isolation(DEFAULT_UID_BASE)


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="wall_seconds"):
        Limits(wall_seconds=0)
    with pytest.raises(ValueError, match="max_processes"):
        Limits(max_processes=0)


def test_package_import_stays_light() -> None:
    code = "import sys, evalharness.execution; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert evalharness.execution.Sandbox is Sandbox


# --- the result protocol --------------------------------------------------------------


def test_only_lines_with_the_token_count() -> None:
    report = Report.parse(b"passed\nxyz passed\nTOKEN ready\nTOKEN exit 0\n", "TOKEN")
    assert (report.ready, report.passed, report.exit_status) == (True, False, 0)
    assert classify(report, False, LIMITS, "") == (Status.FAILED, "exited with status 0 before check() returned")
    passed = Report.parse(b"TOKEN ready\nTOKEN passed\nTOKEN exit 0\n", "TOKEN")
    assert classify(passed, False, LIMITS, "") == (Status.PASSED, "")
    assert classify(passed, True, LIMITS, "")[0] is Status.TIMEOUT  # the wall clock wins over a late pass


def test_classification_of_signals_and_setup_errors() -> None:
    def status_of(wait_status: int) -> tuple[Status, str]:
        return classify(Report(ready=True, exit_status=wait_status), False, LIMITS, "")

    assert status_of(signal.SIGXCPU) == (Status.TIMEOUT, "CPU time limit of 2 s exceeded")
    assert status_of(signal.SIGKILL) == (Status.KILLED, "killed by SIGKILL")
    assert status_of(3 << 8) == (Status.MEMORY, "MemoryError")
    assert status_of(1 << 8) == (Status.FAILED, "exited with status 1 before check() returned")
    error = classify(Report(setup_error="pid namespace: Operation not permitted"), False, LIMITS, "")
    assert error == (Status.ERROR, "sandbox setup failed: pid namespace: Operation not permitted")
    assert classify(Report(), False, LIMITS, "python: not found\n") == (
        Status.ERROR, "sandbox did not complete: python: not found")


# --- statuses, limits, environment -------------------------------------------------------


@pytest.mark.parametrize(("body", "status", "error"), [
    ("def f():\n    return 1\n", Status.PASSED, ""),
    ("def f():\n    return 2\n", Status.FAILED, "AssertionError"),
    ("def f(:\n    return 1\n", Status.FAILED, "SyntaxError"),
    ("def f():\n    return undefined_name\n", Status.FAILED, "NameError: name 'undefined_name' is not defined"),
    ("def g():\n    return 1\n", Status.FAILED, "NameError: name 'f' is not defined"),
    ("def f():\n    raise ValueError('bad value')\n", Status.FAILED, "ValueError: bad value"),
    ("def f():\n    return int(input())\n", Status.FAILED, "EOFError"),  # stdin is /dev/null
    ("def f():\n    open('big', 'wb').write(bytes(32 * 1024 ** 2))\n    return 1\n", Status.FAILED, "File too large"),
    ("def f():\n    for i in range(6):\n        open(f'part{i}', 'wb').write(bytes(15 * 1024 ** 2))\n    return 1\n",
     Status.FAILED, "No space left on device"),  # the working directory holds 64 MiB
    ("def f():\n    while True:\n        pass\n", Status.TIMEOUT, "CPU time limit of 2 s exceeded"),
    ("import time\n\ndef f():\n    time.sleep(60)\n", Status.TIMEOUT, "wall-clock limit of 4 s exceeded"),
    ("def f():\n    block = bytearray(3 * 1024 ** 3)\n    return 1\n", Status.MEMORY, "MemoryError"),
    ("import os, signal\n\ndef f():\n    os.kill(os.getpid(), signal.SIGSEGV)\n", Status.KILLED, "killed by SIGSEGV"),
], ids=["pass", "assert", "syntax", "name", "no-entry-point", "raise", "stdin", "file-size", "disk", "cpu", "wall",
        "memory", "signal"])
def test_status_and_error(sandbox: Sandbox, body: str, status: Status, error: str) -> None:
    result = run_one(sandbox, program(body))
    assert (result.status, result.passed) == (status, status is Status.PASSED), result
    assert error in result.error and (error == "") == (result.error == "")
    assert 0 < result.wall_time < LIMITS.wall_seconds + 2


def test_scrubbed_environment_and_fresh_working_directory(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALHARNESS_TEST_SECRET", "do-not-inherit")
    body = ("import json, os\n\ndef f():\n    print(json.dumps({'env': dict(os.environ), 'cwd': os.getcwd(),"
            " 'files': os.listdir('.'), 'uid': os.getuid(), 'gid': os.getgid(), 'groups': os.getgroups()}))\n"
            "    open('scratch.txt', 'w').write('x')\n    return 1\n")
    first, second = sandbox.run([program(body), program(body)])
    assert first.passed and second.passed, (first, second)
    a, b = json.loads(first.stdout), json.loads(second.stdout)
    assert a["env"] == child_environment(a["cwd"])
    assert a["env"]["HOME"] == a["env"]["TMPDIR"] == a["cwd"] and a["files"] == []
    assert a["cwd"] != b["cwd"]
    assert not Path(a["cwd"]).exists() and not Path(b["cwd"]).exists()  # deleted afterwards
    assert a["uid"] == a["gid"] and a["uid"] in sandbox.uids and a["groups"] == []


def test_submit_returns_at_once_and_programs_run_in_parallel(sandbox: Sandbox) -> None:
    sleeper = program("import time\n\ndef f():\n    time.sleep(1.0)\n    return 1\n")
    start = time.monotonic()
    futures = [sandbox.submit(sleeper) for _ in range(4)]
    assert time.monotonic() - start < 0.5 and not any(f.done() for f in futures)
    assert all(f.result(timeout=60).passed for f in futures)
    assert time.monotonic() - start < 3.5  # two workers: about 2 s; one at a time would take over 4 s


def test_process_limit_holds(sandbox: Sandbox) -> None:
    result = run_one(sandbox, program(FORK_COUNTER))
    assert result.passed, result
    assert int(result.stdout) == LIMITS.max_processes - 1  # the program itself is the 16th
    assert processes_left(sandbox.uids) == []


def test_escaped_processes_die_with_the_run(sandbox: Sandbox) -> None:
    assert run_one(sandbox, program(ESCAPEE)).passed
    assert processes_left(sandbox.uids) == []


# --- hostile programs -----------------------------------------------------------------------


@dataclass(frozen=True)
class Hostile:
    """A completion for HumanEval/0 (a string.Template over `Targets.substitutions`)."""

    name: str
    completion: str
    status: Status
    error: str = ""  # expected in the error message


HOSTILE = [
    Hostile("infinite_loop", "    while True:\n        pass\n", Status.TIMEOUT),
    Hostile("sleep_forever", "    import time\n    time.sleep(3600)\n", Status.TIMEOUT, "wall-clock"),
    Hostile("fork_bomb", "    import os\n    while True:\n        try:\n            os.fork()\n"
                         "        except OSError:\n            pass\n", Status.TIMEOUT),
    Hostile("allocate_10_gib", "    hoard = bytearray(10 * 1024 ** 3)\n" + CORRECT, Status.MEMORY, "MemoryError"),
    Hostile("allocate_until_refused", "    hoard = []\n    while True:\n        hoard.append(bytes(256 * 1024 ** 2))\n",
            Status.MEMORY, "MemoryError"),
    Hostile("write_under_tmp_path", "    open($outside_file, 'w').write('escaped')\n" + CORRECT, Status.FAILED,
            "Error"),
    Hostile("write_in_slash_tmp", "    open($tmp_file, 'w').write('escaped')\n" + CORRECT, Status.FAILED,
            "Read-only file system"),
    Hostile("open_harness_source", "    open($harness_file, 'a').close()\n" + CORRECT, Status.FAILED,
            "PermissionError"),
    Hostile("delete_canary", "    import os\n    os.remove($canary_file)\n" + CORRECT, Status.FAILED,
            "Read-only file system"),
    Hostile("delete_canary_folder", "    import shutil\n    shutil.rmtree($canary_dir)\n" + CORRECT, Status.FAILED,
            "Read-only file system"),
    Hostile("connect_localhost", "    import socket\n    socket.create_connection(('127.0.0.1', $port), timeout=2)\n"
            + CORRECT, Status.FAILED, "Network is unreachable"),
    Hostile("read_env_secret", "    import os\n    print(os.environ[$secret_name])\n" + CORRECT, Status.FAILED,
            "KeyError"),
    Hostile("scan_proc_environ",
            "    import glob\n    leaked = []\n    for path in glob.glob('/proc/*/environ'):\n        try:\n"
            "            with open(path, 'rb') as f:\n                data = f.read()\n        except OSError:\n"
            "            continue\n        if $secret_name_bytes in data:\n            leaked.append(data)\n"
            "            print(data)\n    if not leaked:\n        raise RuntimeError('no secret found')\n" + CORRECT,
            Status.FAILED, "no secret found"),
    Hostile("read_shadow", "    print(open('/etc/shadow').read())\n" + CORRECT, Status.FAILED, "PermissionError"),
    Hostile("kill_parent", "    import os, signal\n    os.kill(os.getppid(), signal.SIGKILL)\n" + CORRECT,
            Status.FAILED, "PermissionError"),
    Hostile("kill_bystander", "    import os, signal\n    os.kill($bystander_pid, signal.SIGKILL)\n" + CORRECT,
            Status.FAILED, "ProcessLookupError"),
    Hostile("kill_own_process_group", "    import os, signal\n    os.killpg(0, signal.SIGKILL)\n" + CORRECT,
            Status.KILLED, "SIGKILL"),
    Hostile("exit_zero_early", "    import os\n    os._exit(0)\n", Status.FAILED, "before check() returned"),
    Hostile("raise_system_exit_zero", "    raise SystemExit(0)\n", Status.FAILED, "SystemExit"),
    Hostile("exit_zero_at_import", CORRECT + "\n\nimport sys\nsys.exit(0)\n", Status.FAILED, "SystemExit"),
    Hostile("redefine_check", "    return True\n\n\ndef check(candidate):\n    pass\n", Status.FAILED,
            "AssertionError"),
    Hostile("patch_assertion_error",
            "    return True\n\n\nimport builtins\nbuiltins.AssertionError = type('Quiet', (Exception,), {})\n",
            Status.FAILED, "AssertionError"),
    Hostile("trace_hook_replaces_check",
            "    return True\n\n\nimport sys\n\n\ndef _swap(frame, event, arg):\n"
            "    if event == 'return' and frame.f_code.co_filename == '<test>':\n"
            "        frame.f_globals['check'] = lambda candidate: None\n    return _swap\n\n\nsys.settrace(_swap)\n",
            Status.FAILED, "replaced the test's check"),
    Hostile("forge_pass_line",
            "    import os\n    for fd in range(3, 256):\n        try:\n            os.write(fd, b'passed\\n')\n"
            "        except OSError:\n            pass\n    os._exit(0)\n", Status.FAILED, "before check() returned"),
]


@dataclass
class Targets:
    """What the hostile programs go after, all outside their working directories."""

    outside_file: Path
    tmp_file: Path
    harness_file: Path
    canary_dir: Path
    canary_file: Path
    listener: socket.socket
    secret_name: str
    secret: str
    bystander: subprocess.Popen[bytes]

    def substitutions(self) -> dict[str, str]:
        return {
            "outside_file": repr(str(self.outside_file)), "tmp_file": repr(str(self.tmp_file)),
            "harness_file": repr(str(self.harness_file)), "canary_dir": repr(str(self.canary_dir)),
            "canary_file": repr(str(self.canary_file)), "port": str(self.listener.getsockname()[1]),
            "secret_name": repr(self.secret_name), "secret_name_bytes": repr(self.secret_name.encode()),
            "bystander_pid": str(self.bystander.pid),
        }


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory, listener: socket.socket) -> Iterator[Targets]:
    canary_dir = Path(tempfile.mkdtemp(prefix="evalharness-canary-"))
    canary_dir.chmod(0o755)
    canary_file = canary_dir / "canary.txt"
    canary_file.write_text(CANARY_TEXT)
    canary_file.chmod(0o644)
    secret_name = "EVALHARNESS_TEST_SECRET"
    os.environ[secret_name] = f"secret-{secrets.token_hex(8)}"
    bystander = subprocess.Popen(["sleep", "600"])
    try:
        yield Targets(
            outside_file=tmp_path_factory.mktemp("outside") / "escaped.txt",
            tmp_file=Path(tempfile.gettempdir()) / f"evalharness-hostile-{secrets.token_hex(6)}",
            harness_file=Path(evalharness.execution.__file__), canary_dir=canary_dir, canary_file=canary_file,
            listener=listener, secret_name=secret_name, secret=os.environ[secret_name], bystander=bystander,
        )
    finally:
        bystander.kill()
        bystander.wait()
        del os.environ[secret_name]
        canary_file.unlink(missing_ok=True)
        canary_dir.rmdir()


@pytest.fixture(scope="module")
def hostile(sandbox: Sandbox, targets: Targets, problem0: HumanEvalProblem) -> dict[str, ExecutionResult]:
    harness_mtime = targets.harness_file.stat().st_mtime_ns
    start = time.monotonic()
    substitutions = targets.substitutions()
    futures = {
        case.name: sandbox.submit(build_program(problem0, Template(case.completion).substitute(substitutions)))
        for case in HOSTILE
    }
    results = {name: future.result(timeout=120) for name, future in futures.items()}
    assert time.monotonic() - start < 90  # the run completes
    assert targets.harness_file.stat().st_mtime_ns == harness_mtime
    return results


def test_reference_answer_passes(sandbox: Sandbox, problem0: HumanEvalProblem) -> None:
    """So a hostile completion whose attack worked would pass."""
    assert run_one(sandbox, build_program(problem0, CORRECT)).passed


@pytest.mark.parametrize("case", HOSTILE, ids=[case.name for case in HOSTILE])
def test_hostile_program_fails(case: Hostile, hostile: dict[str, ExecutionResult]) -> None:
    result = hostile[case.name]
    assert not result.passed
    assert result.status is case.status, result
    assert case.error in result.error, result


def test_hostile_programs_changed_nothing_outside(hostile: dict[str, ExecutionResult], targets: Targets) -> None:
    assert not targets.outside_file.exists()
    assert not targets.tmp_file.exists()
    assert targets.canary_file.read_text() == CANARY_TEXT
    assert [p.name for p in targets.canary_dir.iterdir()] == ["canary.txt"]


def test_hostile_programs_reached_no_socket(hostile: dict[str, ExecutionResult], targets: Targets) -> None:
    assert_no_connection(targets.listener)


def test_secret_reached_no_program(hostile: dict[str, ExecutionResult], targets: Targets) -> None:
    for name, result in hostile.items():
        assert targets.secret not in result.stdout + result.stderr + result.error, name


def test_evaluator_survives_and_nothing_is_left_running(
    hostile: dict[str, ExecutionResult], targets: Targets, sandbox: Sandbox, problem0: HumanEvalProblem,
) -> None:
    assert targets.bystander.poll() is None
    assert processes_left(sandbox.uids) == []
    assert run_one(sandbox, build_program(problem0, CORRECT)).passed  # the sandbox still works


# --- weaker fallbacks ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def no_namespaces() -> Iterator[Sandbox]:
    """Dedicated uid and read-only filesystem, but no PID or network namespace."""
    isolation = Isolation(dedicated_uids=True, pid_namespace=False, network_namespace=False, readonly_filesystem=True)
    with Sandbox(allow_code_execution=True, limits=LIMITS, max_workers=1, isolation=isolation) as box:
        yield box


def test_without_network_namespace_sockets_are_refused(no_namespaces: Sandbox, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    bodies = [
        f"import socket\n\ndef f():\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    return 1\n",
        f"import _socket\n\ndef f():\n    s = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)\n"
        f"    s.connect(('127.0.0.1', {port}))\n    return 1\n",
    ]
    for result in no_namespaces.run(program(body) for body in bodies):
        assert result.status is Status.FAILED and "network access is disabled" in result.error, result
    assert_no_connection(listener)
    unix = "import socket\n\ndef f():\n    a, b = socket.socketpair()\n    a.sendall(b'x')\n    return len(b.recv(1))\n"
    assert run_one(no_namespaces, program(unix)).passed


def test_without_pid_namespace_escapees_are_killed_by_uid(no_namespaces: Sandbox) -> None:
    assert run_one(no_namespaces, program(ESCAPEE)).passed
    assert processes_left(no_namespaces.uids) == []
    result = run_one(no_namespaces, program(FORK_COUNTER))
    assert result.passed and int(result.stdout) == LIMITS.max_processes - 1, result
    assert processes_left(no_namespaces.uids) == []


def test_without_pid_namespace_the_parent_cannot_be_killed(no_namespaces: Sandbox) -> None:
    body = "import os, signal\n\ndef f():\n    os.kill(os.getppid(), signal.SIGKILL)\n    return 1\n"
    result = run_one(no_namespaces, program(body))
    assert result.status is Status.FAILED and "PermissionError" in result.error, result


def test_without_any_isolation_programs_still_run() -> None:
    """The mode a non-root user gets: only limits, a scrubbed environment and Python-level socket refusal."""
    with Sandbox(allow_code_execution=True, limits=LIMITS, max_workers=1,
                 isolation=Isolation(False, False, False, False)) as box:
        assert box.uids == []
        passed, failed = box.run([program("def f():\n    return 1\n"), program("def f():\n    return 0\n")])
    assert passed.passed and failed.status is Status.FAILED


def test_busy_seconds_sums_the_programs_wall_time(sandbox: Sandbox) -> None:
    before = sandbox.busy_seconds
    sleeper = program("import time\n\ndef f():\n    time.sleep(0.3)\n    return 1\n")
    results = sandbox.run([sleeper, sleeper])  # two workers: they overlap, yet each one's time counts
    assert [r.status for r in results] == [Status.PASSED, Status.PASSED]
    assert sandbox.busy_seconds - before >= 0.6
