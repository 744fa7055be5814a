"""torchrun, quiet when stopped: `python -m evalharness.torchrun ARGS` is `torchrun ARGS`, except on Ctrl-C or
SIGTERM.

torchrun's agent turns a stop signal into a `SignalException`, stops its workers with the same signal and then
raises the exception again, by design: every stopped run ends with its traceback, and a second signal during the
shutdown (the terminal's Ctrl-C plus a launcher's forwarded one, or Slurm signalling every process) adds another.
Here the first SIGINT or SIGTERM is handed to the agent exactly as torchrun would (its workers are stopped with that
signal and end with evalharness's one line), repeats are ignored, the agent's shutdown warnings are dropped, and the
exit code is 128 + the signal's number. A failed process (whose own error is above) is named in one line instead of
torchrun's traceback and failure report; the exit code is the process's. `evalharness run --nproc N` and
`--nnodes` start this.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Sequence

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
AGENT_LOGGERS = "torch.distributed.elastic"


class _QuietOnceStopping(logging.Filter):
    """Drops the agent's warnings once it is stopping on a signal (which worker it sends which signal), and its
    note of a failed process (named by `main` in one line)."""

    def __init__(self) -> None:
        super().__init__()
        self.stopping = False

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("failed (exitcode"):
            return False
        return not (self.stopping and record.levelno < logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    quiet = _QuietOnceStopping()
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if name.startswith(AGENT_LOGGERS) and isinstance(logger, logging.Logger):
            logger.addFilter(quiet)

    def stop(signum: int, frame: object) -> None:
        if quiet.stopping:
            return  # already stopping: the workers have been sent the first signal
        quiet.stopping = True
        raise SignalException(f"process {os.getpid()} got signal {signum}", sigval=signal.Signals(signum))

    # the signals torchrun handles itself (--signals-to-handle's default, read from the environment by older
    # releases): all but SIGINT and SIGTERM, which `stop` hands to it
    for var in ("PET_SIGNALS_TO_HANDLE", "TORCHELASTIC_SIGNALS_TO_HANDLE"):
        os.environ[var] = "SIGHUP,SIGQUIT"
    for sig in STOP_SIGNALS:
        signal.signal(sig, stop)
    try:
        torchrun.main(list(sys.argv[1:] if argv is None else argv))
    except SignalException as exc:
        return 128 + int(exc.sigval)
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        if failure.exitcode < 0:
            print(f"evalharness: rank {rank} (pid {failure.pid}) was killed by {failure.signal_name()}", file=sys.stderr)
            return 128 - failure.exitcode
        if failure.exitcode != 2:  # 2: evalharness's own error, its one line is above
            print(f"evalharness: rank {rank} (pid {failure.pid}) ended with exit code {failure.exitcode}; its error "
                  "is above", file=sys.stderr)
        return failure.exitcode
    return 0


if __name__ == "__main__":
    sys.exit(main())
