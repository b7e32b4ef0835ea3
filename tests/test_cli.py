"""``recsys-committee distill --teachers FILE``: the committee of a teachers file replaces the
config's; a file without a ``teachers:`` list is one error line, exit 2, nothing written."""

from __future__ import annotations

from pathlib import Path

from recsys_committee.cli import _load, build_parser

ROOT = Path(__file__).resolve().parents[1]


def test_teachers_file_replaces_the_configs_committee():
    config = str(ROOT / "configs/rec/diverse_distill.yaml")
    plain = _load(build_parser().parse_args(["distill", "--config", config, "--out", "runs/x"]))
    args = build_parser().parse_args(["distill", "--config", config, "--out", "runs/x", "--teachers", str(ROOT / "configs/rec/teachers/experts_lm.yaml")])
    with_lm = _load(args)
    assert [t["name"] for t in plain.teachers] == ["dlrm", "din_dcn", "din_dcn_2"]
    assert [t["name"] for t in with_lm.teachers] == ["lm", "dlrm", "din_dcn"]
    assert with_lm.teachers[0] == {"name": "lm", "kind": "lm_cached", "cache": "runs/lm_cache_topk", "tap": "encoder.layer.3",
                                   "checkpoint": "{teacher_dir}/lm_teacher/model.safetensors"}
    assert with_lm.committee == plain.committee  # only the committee's members change


def test_a_teachers_file_without_a_list_is_one_error(tmp_path, one_error):
    bad = tmp_path / "bad.yaml"
    bad.write_text("teacher: []\n")
    out = tmp_path / "out"
    one_error(["distill", "--config", str(ROOT / "configs/rec/diverse_distill.yaml"), "--out", str(out), "--teachers", str(bad)],
              "--teachers", "bad.yaml", "'teachers:'")
    assert not out.exists()
