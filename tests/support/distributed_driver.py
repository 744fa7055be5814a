"""`evalharness.api.run` with a custom tasks folder, for tests that start it under torchrun.

Usage: python -m torch.distributed.run --standalone --nproc-per-node N tests/distributed_driver.py TASKS_DIR CONFIG_JSON
(CONFIG_JSON: RunConfig fields; the CLI has no option for another tasks folder).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from evalharness.api import run
from evalharness.config import RunConfig
from evalharness.tasks import TaskRegistry


def main(tasks_dir: str, config_json: str) -> int:
    fields = json.loads(config_json)
    fields["tasks"] = tuple(fields["tasks"])
    run(RunConfig(**fields), show_progress=False, registry=TaskRegistry(Path(tasks_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
