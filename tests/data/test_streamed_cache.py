"""A teacher cached over a prepared dataset by Ray Data actors: outputs equal the live teacher's,
a rerun computes nothing, a distillation reads them from the streamed batches, and a cache of
another dataset is refused."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch

from recsys_committee.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_spec import QUICK, click_log  # noqa: E402


def test_a_teacher_cached_by_ray_data_actors_streams_into_a_distillation(local_ray, tmp_path, capsys):
    from recsys_committee.data.prepared.stream import open_prepared
    from recsys_committee.data.prepared.teacher_outputs import INDEX
    from recsys_committee.rec_domain import RecModelTeacher, load_trained_model

    spec = tmp_path / "clicks_transfer.yaml"  # with a sampled pair per train row: the cache covers the transfer shards too
    spec.write_text(click_log(tmp_path, rows=3000).read_text() + "transfer: {sampled: {per_row: 1}}\n")
    ds = tmp_path / "ds"
    assert cli_main(["prepare", "--data", str(spec), "--out", str(ds), "--bucket-rows", "700", "--row-group-rows", "128"]) == 0
    expert = tmp_path / "teachers" / "expert_dlrm"
    assert cli_main(["train", "--config", str(ROOT / "configs/rec/expert_dlrm.yaml"), "--data", str(ds), "--out", str(expert), *QUICK, "model.params.top=[32,16]"]) == 0
    cache = tmp_path / "cache"
    argv = ["cache", "--data", str(ds), "--teacher", str(expert / "model.safetensors"), "--tap", "top", "--out", str(cache), "--num-workers", "2"]
    capsys.readouterr()
    assert cli_main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    manifest = json.loads((ds / "manifest.json").read_text())
    rows = 3000 + manifest["rows"]["transfer"]
    assert (first["rows"], first["actors"]) == (rows, 2) and first["seconds"] > 0 and manifest["rows"]["transfer"] > 1000
    assert first["examples_per_s"] == pytest.approx(rows / first["seconds"])  # every row computed in this run
    # one output shard per prepared input shard, with its row count, and the bytes its hash names
    index = json.loads((cache / INDEX).read_text())
    expected = {sh["file"]: sh["rows"] for split in ("train", "val", "test", "transfer") for sh in manifest["shards"][split]}
    assert index["complete"] and {f: info["rows"] for f, info in index["shards"].items()} == expected and sum(expected.values()) == rows
    assert all(hashlib.sha256((cache / f).read_bytes()).hexdigest() == info["sha256"] for f, info in index["shards"].items())

    # the cached outputs ride with the rows and equal the live teacher's (features stored in fp16)
    data = open_prepared(ds)
    data.attach_cache("dlrm", cache)
    batch = data.val.batch(torch.arange(len(data.val)))
    live = RecModelTeacher(load_trained_model(expert / "model.safetensors").eval(), name="live", tap="top").run(batch)
    assert torch.allclose(batch.extras["teacher:dlrm:features"].float(), live.features, atol=2e-3, rtol=2e-3)
    assert torch.allclose(batch.extras["teacher:dlrm:logits"], live.logits, atol=1e-5)
    sub = batch.subset(torch.tensor([5, 1, 3]))
    assert torch.equal(sub.extras["teacher:dlrm:logits"], batch.extras["teacher:dlrm:logits"][[5, 1, 3]])

    assert cli_main(argv) == 0  # a rerun finds every shard done
    assert json.loads(capsys.readouterr().out)["examples_per_s"] is None

    teachers = json.dumps([{"name": "dlrm", "kind": "streamed_cache", "cache": str(cache)}])
    assert cli_main(["distill", "--config", str(ROOT / "configs/rec/diverse_distill.yaml"), "--data", str(ds), "--out", str(tmp_path / "dd"),
                     *QUICK, "model.params.hidden=[32,16]", f"teachers={teachers}", "committee.gate_config.warmup_steps=1"]) == 0
    dd = json.loads((tmp_path / "dd" / "metrics.json").read_text())
    # exact counts: 4 steps of 128 rows, the one cached teacher on every row of the warm-up step,
    # then the random gate (exact budget) skips ceil(0.3 * 128) = 39 rows a step
    f = dd["teacher_forwards"]
    assert (f["samples"], f["dense"], f["per_teacher"]) == (512, 512, {"dlrm": 128 + 3 * (128 - 39)})
    assert dd["transfer"]["rows"] == manifest["rows"]["transfer"] and 0 < f["transfer_samples"] < 512  # the cached outputs of both kinds of row
    expert_params = sum(p.numel() for p in load_trained_model(expert / "model.safetensors").parameters())
    assert f["run"] == 395 and dd["teacher_params"] == {"dlrm": expert_params} and expert_params > 10_000  # the cached model's count

    other = click_log(tmp_path / "other", rows=1500) if (tmp_path / "other").mkdir() is None else None
    assert cli_main(["prepare", "--data", str(other), "--out", str(tmp_path / "ds2")]) == 0
    capsys.readouterr()
    code = cli_main(["distill", "--config", str(ROOT / "configs/rec/diverse_distill.yaml"), "--data", str(tmp_path / "ds2"), "--out", str(tmp_path / "dd2"),
                     *QUICK, "model.params.hidden=[32,16]", f"teachers={teachers}"])
    err = capsys.readouterr().err
    assert code == 2 and "another prepared dataset" in err and "Traceback" not in err
