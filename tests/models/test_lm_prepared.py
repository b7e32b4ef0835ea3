"""The LM teacher over a prepared dataset: fine-tuned on a seeded sample of it (a token cache of the
sample only), then Ray Data actors cache its outputs shard by shard, from texts rendered out of
the shards, equal to the in-memory cache of the same rows; a rerun computes nothing; a dataset
prepared without texts is refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from recsys_committee.cli import main as cli_main

pytestmark = pytest.mark.realdata
ROOT = Path(__file__).resolve().parents[2]
LM_CACHE = str(ROOT / "configs/rec/lm_cache.yaml")
ROWS = 160


def _spec(tmp_path: Path, real_data_dir: Path, text: bool = True) -> Path:
    """MovieLens-100K's own spec over its first ``ROWS`` rows."""
    body = yaml.safe_load((ROOT / "configs/data/ml-100k.yaml").read_text())
    body["source"] = {k: str(real_data_dir / Path(v).name) for k, v in body["source"].items()}
    body["max_rows"] = ROWS
    body.pop("transfer")
    if not text:
        body.pop("text")
    path = tmp_path / ("ml.yaml" if text else "ml-no-text.yaml")
    path.write_text(yaml.safe_dump(body))
    return path


def test_the_lm_cached_over_prepared_shards_equals_the_in_memory_cache(real_data_dir, local_ray, tmp_path, capsys):
    from recsys_committee.data.features.loading import load_spec_data
    from recsys_committee.data.logs.spec import load_spec
    from recsys_committee.data.prepared.teacher_outputs import INDEX
    from recsys_committee.train.teacher_cache import open_cache

    spec, ds = _spec(tmp_path, real_data_dir), tmp_path / "ds"
    assert cli_main(["prepare", "--data", str(spec), "--out", str(ds), "--bucket-rows", "60", "--row-group-rows", "32"]) == 0
    # the LM's top layers fine-tuned on a sample: 40 train rows, val / test in proportion (5 each)
    lm = tmp_path / "teachers" / "lm_teacher"
    assert cli_main(["train", "--config", str(ROOT / "configs/rec/lm_teacher_sample.yaml"), "--data", str(ds), "--out", str(lm), "data.sample_rows=40",
                     f"model.params.token_cache={tmp_path / 'tokens'}", "train.epochs=1", "train.batch_size=20", "train.progress=false"]) == 0
    tokens = json.loads((tmp_path / "tokens" / "index.json").read_text())
    assert tokens["n_rows"] == 50  # the sample's rows only, not the dataset's 160
    same = [f"model.params.init_checkpoint={lm / 'model.safetensors'}", "model.params.cache_dtype=float32", "model.params.cache_taps=[encoder.layer.3]",
            "model.params.cache_batch_size=16", "train.progress=false"]
    assert cli_main(["cache", "--config", LM_CACHE, "--data", str(spec), "--out", str(tmp_path / "mem"), "model.params.cache_shard_rows=64", *same]) == 0
    streamed = ["cache", "--config", LM_CACHE, "--data", str(ds), "--out", str(tmp_path / "st"), "--num-workers", "1", *same]
    capsys.readouterr()
    assert cli_main(streamed) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["rows"], summary["tap"], summary["logits"], summary["actors"]) == (ROWS, "encoder.layer.3", True, 1)

    # the same rows' features and logits (in-memory rows matched to prepared ones by source row)
    in_memory = open_cache(tmp_path / "mem").load()
    source = load_spec_data(load_spec(spec)).raw.inter["__src"].to_numpy()
    position = {int(s): i for i, s in enumerate(source)}
    manifest = json.loads((ds / "manifest.json").read_text())
    index = json.loads((tmp_path / "st" / INDEX).read_text())
    assert index["logits"] and sorted(index["shards"]) == sorted(sh["file"] for s in ("train", "val", "test") for sh in manifest["shards"][s])
    seen = 0
    for file in index["shards"]:
        rows = [position[int(e)] for e in pq.read_table(ds / file, columns=["example_id"]).column("example_id").to_pylist()]
        cached = pq.read_table(tmp_path / "st" / file)
        features = np.stack(cached.column("features").to_pylist())
        assert np.allclose(features, in_memory["encoder.layer.3"][rows].numpy(), atol=1e-4), file
        assert np.allclose(cached.column("logits").to_numpy(), in_memory["logits"][rows].numpy(), atol=1e-4), file
        seen += len(rows)
    assert seen == ROWS

    assert cli_main(streamed) == 0  # every shard done: nothing computed
    assert json.loads(capsys.readouterr().out)["examples_per_s"] is None


def test_a_prepared_dataset_without_texts_is_refused_for_the_lm(real_data_dir, tmp_path, capsys):
    spec, ds = _spec(tmp_path, real_data_dir, text=False), tmp_path / "ds"
    assert cli_main(["prepare", "--data", str(spec), "--out", str(ds)]) == 0
    capsys.readouterr()
    assert cli_main(["cache", "--config", LM_CACHE, "--data", str(ds), "--out", str(tmp_path / "st")]) == 2
    err = capsys.readouterr().err
    assert "keeps no texts" in err and "Traceback" not in err and not (tmp_path / "st").exists()
    # a sample is drawn from a prepared dataset only
    assert cli_main(["train", "--config", str(ROOT / "configs/rec/lm_teacher_sample.yaml"), "--data", str(spec), "--out", str(tmp_path / "lm")]) == 2
    err = capsys.readouterr().err
    assert "data.sample_rows samples a prepared dataset" in err and "Traceback" not in err
