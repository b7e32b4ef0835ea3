"""The C heap policies: held between distillation steps, trimmed on demand."""

import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import torch
from recsys_committee.heap import hold_freed_heap, release_free_heap
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096
def free_a_block():
    before = rss()
    block = torch.ones(4 * 2**20)  # 16 MiB, every page touched
    grew = rss() - before
    del block
    return before, grew, rss() - before
torch.ones(16).add_(1)  # torch's own first-op set-up, before anything is measured
_, grew_default, kept_default = free_a_block()
held = hold_freed_heap()
before, grew_held, kept_held = free_a_block()
release_free_heap()
print(held, grew_default, kept_default, grew_held, kept_held, rss() - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the policies are glibc's mallopt / malloc_trim")
def test_held_heap_keeps_a_freed_block_for_the_next_step_and_trim_still_returns_it():
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    held = out[0] == "True"
    grew_default, kept_default, grew_held, kept_held, trimmed = (int(v) for v in out[1:])
    mib = 2**20
    assert grew_default >= 15 * mib and kept_default < 4 * mib  # glibc's default: a block this large is unmapped when freed
    assert held and grew_held >= 15 * mib
    assert kept_held >= 15 * mib  # held: freed, still resident, the next step's allocation needs no page faults
    assert trimmed < 4 * mib  # release_free_heap (streamed evaluation) still gives it back


def test_distill_holds_the_heap_unless_told_not_to(ml_slice, tmp_path, monkeypatch):
    from recsys_committee.rec_domain import run_distill
    from recsys_committee.train import runner
    from recsys_committee.train.config import load_config

    calls = []
    monkeypatch.setattr(runner, "hold_freed_heap", lambda: calls.append(1) or True)
    small = ["train.progress=false", "train.batch_size=256", "train.max_steps_per_epoch=2", "train.epochs=1"]
    run_distill(load_config(ROOT / "configs/rec/no_kd.yaml", small), tmp_path / "held", data=ml_slice)
    assert calls == [1]
    run_distill(load_config(ROOT / "configs/rec/no_kd.yaml", [*small, "train.hold_heap=false"]), tmp_path / "not", data=ml_slice)
    assert calls == [1]
