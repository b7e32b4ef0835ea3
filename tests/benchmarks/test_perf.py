"""perf.py's measuring parts: the in-step teacher clock, the interleaved timer, the medians."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from perf import TeacherRunClock, interleaved, median_costs  # noqa: E402


class FakeTeacher:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def run(self, batch):
        time.sleep(self.seconds)
        return batch


def test_clock_times_teacher_runs_and_restores_the_method() -> None:
    teacher = FakeTeacher(0.01)
    with TeacherRunClock([teacher]) as clock:
        assert teacher.run("b") == "b"
        teacher.run("b")
    counted = clock.seconds
    assert counted >= 0.02
    assert "run" not in vars(teacher)  # the class method is back
    teacher.run("b")
    assert clock.seconds == counted  # no longer counted


def test_interleaved_runs_every_stepper_on_every_batch_and_splits_teacher_time() -> None:
    teacher = FakeTeacher(0.005)
    seen: list[tuple[str, int]] = []

    def step_with_teacher(batch, i):
        seen.append(("committee", i))
        teacher.run(batch)

    def plain(batch, i):
        seen.append(("student", i))

    with TeacherRunClock([teacher]) as clock:
        out = interleaved({"student": plain, "committee": step_with_teacher}, list(range(5)), clock, warmup=1)
    assert seen == [(name, i) for i in range(5) for name in ("student", "committee")]
    assert out["student"][1] == 0.0
    assert out["committee"][1] >= 0.005 and out["committee"][0] >= out["committee"][1]


def test_median_costs_takes_each_figure_s_median_and_keeps_every_ratio() -> None:
    def one(student: float, ratio: float) -> dict:
        return {"student_step_s": student, "teacher_forward_s": {"t": 2 * student},
                "committee": {"dense": {"step_s": 3 * student, "overhead_ratio": ratio, "overhead_ratio_in_step": ratio + 0.01}}}

    out = median_costs([one(1.0, 1.2), one(3.0, 1.1), one(2.0, 1.3)])
    assert out["student_step_s"] == 2.0 and out["teacher_forward_s"]["t"] == 4.0
    assert out["committee"]["dense"]["overhead_ratio"] == pytest.approx(1.2)
    assert out["committee"]["dense"]["overhead_ratio_repeats"] == [1.2, 1.1, 1.3]
    assert out["committee"]["dense"]["overhead_ratio_in_step_repeats"] == pytest.approx([1.21, 1.11, 1.31])
