"""The CPU allocator setting: freed tensors' memory is reused instead of faulted in again (page-fault counts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="mallopt is glibc's, on Linux only (CI runs on Linux, so these run there)")

# a loop of the backend's pattern: same-size activations allocated, written, freed
_CHILD = """
import json, resource, torch
from evalharness.backends.hf_cpu.cpu_allocator import keep_freed_memory
kept = keep_freed_memory()
again = keep_freed_memory()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    y = torch.empty(1 << 21).fill_(1.0)  # 8 MiB: above glibc's default mmap threshold
    z = torch.mul(y, 2.0)
    del y, z
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"kept": kept, "again": again, "faults": faults}))
"""


def _child(setting: str) -> dict:
    env = dict(os.environ, EVALHARNESS_KEEP_FREED_MEMORY=setting, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_freed_memory_is_reused_instead_of_faulted_in_again():
    off, on = _child("0"), _child("1")
    assert off["kept"] is False and on["kept"] is True and on["again"] is True
    # The loop writes 100 tensors of 2048 pages each: 204,800 page faults if every one were fresh memory. With
    # the setting the first iteration's pages are reused by the other 49. (glibc's default is not compared
    # here: on this small loop its dynamic mmap threshold sometimes reuses the blocks too, sometimes not;
    # benchmarks/cpu_allocator.py measures both on the real scoring loop.)
    assert on["faults"] < 100 * 2048 / 5


_BACKEND_CHILD = """
import json, sys
from transformers import AutoModelForCausalLM, AutoTokenizer
from evalharness.backends.hf_cpu import cpu_allocator
from evalharness.backends.hf.backend import HFBackend
before = cpu_allocator._applied
folder, process_wide = sys.argv[1], sys.argv[2] == "1"
HFBackend(AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder), process_wide=process_wide)
print(json.dumps({"before": before, "after": cpu_allocator._applied}))
"""


@pytest.mark.parametrize("process_wide, setting, expected", [
    ("1", "1", True),  # the command line's own process
    ("1", "0", False),  # turned off by EVALHARNESS_KEEP_FREED_MEMORY=0
    ("0", "1", None),  # evaluate() inside someone else's program: never touched
])
def test_the_cpu_plugin_applies_it_only_in_its_own_process(tiny_mpt_dir, process_wide, setting, expected):
    env = dict(os.environ, EVALHARNESS_KEEP_FREED_MEMORY=setting, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", _BACKEND_CHILD, str(tiny_mpt_dir), process_wide], env=env,
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"before": None, "after": expected}
