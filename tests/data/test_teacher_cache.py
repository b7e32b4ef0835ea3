"""The teacher cache: exact round trip, fp16 within its stated error, stale/corrupt refused,
interrupted builds resumed, served as a PrecomputedTeacher. A synthetic ``compute`` keeps these
fast; the LM-specific cache and the CLI are tested at the end on a tiny real slice."""

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from recsys_committee.committee import PrecomputedTeacher
from recsys_committee.train.teacher_cache import (
    INDEX,
    CorruptCacheError,
    IncompleteCacheError,
    StaleCacheError,
    TeacherCacheError,
    build_cache,
    load_precomputed_teacher,
    open_cache,
    open_or_build,
)

ROOT = Path(__file__).resolve().parents[2]
N = 100
KEY = {"teacher": "toy", "weights": "a" * 64, "taps": ["layer", "pooled"], "text": {"template": "v1", "history_n": 5}, "dtype": "float32"}


class Recorder:
    """compute(rows): deterministic features of the row ids; records what it was asked for."""

    def __init__(self, fail_after_rows: int | None = None):
        self.rows: list[int] = []
        self.fail_after_rows = fail_after_rows

    def __call__(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.fail_after_rows is not None and int(rows[0]) >= self.fail_after_rows:
            raise KeyboardInterrupt("simulated interruption")
        self.rows.extend(rows.tolist())
        x = rows.float()[:, None]
        g = torch.Generator().manual_seed(int(rows[0]))
        return {
            "layer": torch.sin(x * torch.arange(1, 9)) + 0.01 * torch.randn(rows.numel(), 8, generator=g),
            "pooled": torch.cos(x / 7.0 * torch.arange(1, 5)),
            "logits": x.squeeze(1) / 10.0 - 3.0,
        }


def expected() -> dict[str, torch.Tensor]:
    out = {}
    for start in range(0, N, 16):  # batch_size 16: same calls as the builds below
        for k, v in Recorder()(torch.arange(start, min(start + 16, N))).items():
            out.setdefault(k, []).append(v)
    return {k: torch.cat(v) for k, v in out.items()}


def build(root, key=KEY, compute=None, **kw):
    kw = {"shard_rows": 32, "batch_size": 16, "progress": False, **kw}
    return build_cache(root, key, N, compute or Recorder(), **kw)


def test_round_trip_fp32_exact(tmp_path):
    cache = build(tmp_path)
    assert [s["file"] for s in cache.index["shards"]] == [f"shard-0000{i}.safetensors" for i in range(4)]
    loaded = open_cache(tmp_path, expect=KEY, verify=True).load()
    for name, value in expected().items():
        assert torch.equal(loaded[name], value), name
    assert cache.max_abs_error == {"layer": 0.0, "pooled": 0.0, "logits": 0.0}


def test_round_trip_fp16_within_stated_error(tmp_path):
    cache = build(tmp_path, key={**KEY, "dtype": "float16"})
    index = json.loads((tmp_path / INDEX).read_text())
    loaded = open_cache(tmp_path).load(dtype=torch.float32)
    for name, value in expected().items():
        err = float((loaded[name] - value).abs().max())
        assert err <= index["max_abs_error"][name] + 1e-12
    assert 0 < index["max_abs_error"]["layer"] < 1e-3  # fp16 of values in [-1, 1]: < 2^-11
    assert index["max_abs_error"]["logits"] == 0.0  # logits always stay float32
    assert cache.outputs["layer"] == {"shape": [8], "stored": "float16"}
    assert all("max_abs_error" in s for s in index["shards"])


def test_stale_key_refused_with_what_differs(tmp_path):
    build(tmp_path)
    other = {**KEY, "weights": "b" * 64, "text": {"template": "v1", "history_n": 3}}
    with pytest.raises(StaleCacheError, match=r"weights: cache aaaa.*vs now bbbb.*text\.history_n: cache 5 vs now 3.*--rebuild-cache"):
        open_cache(tmp_path, expect=other)
    with pytest.raises(StaleCacheError, match="--rebuild-cache"):
        build(tmp_path, key=other)
    # a subset of the cached taps is fine; a tap it lacks is named
    open_cache(tmp_path, expect={"taps": ["pooled"]})
    with pytest.raises(StaleCacheError, match=r"taps: .*missing \['encoder.layer.1'\]"):
        open_cache(tmp_path, expect={"taps": ["encoder.layer.1"]})
    rebuilt = build(tmp_path, key=other, rebuild=True)
    assert rebuilt.key["weights"] == "b" * 64


def test_corrupt_shard_refused(tmp_path):
    build(tmp_path)
    shard = tmp_path / "shard-00001.safetensors"
    data = bytearray(shard.read_bytes())
    data[-5] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(CorruptCacheError, match="shard-00001.safetensors fails its sha256"):
        open_cache(tmp_path).load()
    shard.write_bytes(bytes(data[:100]))
    with pytest.raises(CorruptCacheError, match="shard-00001.safetensors is truncated"):
        open_cache(tmp_path, verify=True)
    (tmp_path / INDEX).write_text("{not json")
    with pytest.raises(CorruptCacheError, match="index.json is unreadable"):
        open_cache(tmp_path)
    assert issubclass(CorruptCacheError, TeacherCacheError)


def test_corrupt_shard_recomputed_on_resume(tmp_path):
    build(tmp_path)
    (tmp_path / "shard-00002.safetensors").write_bytes(b"garbage")
    again = Recorder()
    build(tmp_path, compute=again)
    assert again.rows == list(range(64, 96))
    assert torch.equal(open_cache(tmp_path, verify=True).load(["layer"])["layer"], expected()["layer"])


def test_interrupted_build_resumes(tmp_path):
    first = Recorder(fail_after_rows=32)  # dies right after shard 0 is on disk
    with pytest.raises(KeyboardInterrupt):
        build(tmp_path, compute=first)
    assert first.rows == list(range(32))
    index = json.loads((tmp_path / INDEX).read_text())
    assert not index["complete"] and [s["file"] for s in index["shards"]] == ["shard-00000.safetensors"]
    with pytest.raises(IncompleteCacheError, match="32/100 rows.*resumes"):
        open_cache(tmp_path)
    second = Recorder()
    cache = build(tmp_path, compute=second)
    assert second.rows == list(range(32, N))  # shard 0 kept, only the rest computed
    assert cache.index["complete"]
    loaded = open_cache(tmp_path, verify=True).load()
    for name, value in expected().items():
        assert torch.equal(loaded[name], value), name
    third = Recorder()
    build(tmp_path, compute=third)  # complete and same key: nothing to do
    assert third.rows == []


def test_open_or_build_reuses_a_covering_cache(tmp_path):
    build(tmp_path, key={**KEY, "dtype": "float16", "head": "h1"})
    never = Recorder(fail_after_rows=0)
    cache = open_or_build(tmp_path, {**KEY, "taps": ["pooled"], "head": None}, N, never, progress=False)
    assert cache.index["dtype"] == "float16" and never.rows == []


@dataclass
class Ids:
    example_ids: torch.Tensor


def test_precomputed_teacher_serves_by_example_id(tmp_path):
    build(tmp_path)
    teacher = load_precomputed_teacher(tmp_path, name="lm", tap="layer", expect={"weights": "a" * 64})
    assert isinstance(teacher, PrecomputedTeacher) and not teacher.supports_reenter
    ids = torch.tensor([99, 0, 41])
    out = teacher.run(Ids(ids))
    ref = expected()
    assert torch.equal(out.features, ref["layer"][ids]) and torch.equal(out.logits, ref["logits"][ids])
    with pytest.raises(TeacherCacheError, match="no output"):
        open_cache(tmp_path).load(["nope"])


def test_missing_cache_names_the_command(tmp_path):
    with pytest.raises(TeacherCacheError, match="recsys-committee cache"):
        open_cache(tmp_path / "absent")


# ------------------------------------------------------------------------ LM cache + CLI
@pytest.mark.realdata
def test_cli_builds_resumes_and_refuses_stale(real_data_dir, tmp_path, capsys):
    from recsys_committee.cli import main

    out = tmp_path / "lm_cache"
    args = [
        "cache", "--config", str(ROOT / "configs/rec/lm_cache.yaml"), "--out", str(out),
        f"data.root={real_data_dir}", "data.max_rows=48", "model.params.cache_shard_rows=32", "model.params.cache_batch_size=16",
        "train.progress=false", "model.params.cache_dtype=float32", "model.params.cache_taps=[encoder.layer.3, pooled]",
    ]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 48 and summary["shards"] == 2
    assert summary["outputs"] == {"encoder.layer.3": [384], "pooled": [384]}  # no checkpoint: no logits
    assert main(args) == 0  # complete: a no-op
    capsys.readouterr()
    assert main(args + ["model.params.include_ratings=false"]) == 2
    err = capsys.readouterr().err
    assert "text.include_ratings: cache true vs now false" in err and "--rebuild-cache" in err
    assert main(args + ["model.params.include_ratings=false", "--rebuild-cache"]) == 0


@pytest.mark.realdata
def test_cli_train_top_k_on_the_token_cache_then_cache_the_trained_teacher(real_data_dir, tmp_path, capsys):
    """The top_k recipe end to end on 48 rows: `cache` builds the token cache, `train` reads it and
    fine-tunes the top layers on it; `cache` then computes the trained teacher's committee cache through the
    same token cache (key: computed_from), and a head-mode config cannot use a token cache."""
    from recsys_committee.cli import main

    common = [f"data.root={real_data_dir}", "data.max_rows=48", "model.params.cache_shard_rows=32", "model.params.cache_batch_size=16",
              "train.progress=false", f"model.params.token_cache={tmp_path / 'tokens'}"]
    build = ["cache", "--config", str(ROOT / "configs/rec/lm_tokens.yaml"), "--out", str(tmp_path / "tokens"), *common[:-1]]
    assert main(build) == 0  # the token cache on its own (what --num-workers N spreads over actors)
    assert json.loads(capsys.readouterr().out)["outputs"] == {"encoder.layer.3:tokens": [64, 384], "token_mask": [64]}
    built = (tmp_path / "tokens" / "index.json").read_text()
    teachers = tmp_path / "teachers"
    train = ["train", "--config", str(ROOT / "configs/rec/lm_teacher_topk.yaml"), "--out", str(teachers / "lm_teacher"),
             "train.epochs=1", "train.batch_size=16", *common]
    assert main(train) == 0
    capsys.readouterr()
    assert (tmp_path / "tokens" / "index.json").read_text() == built  # train read that cache as it was
    cache = ["cache", "--config", str(ROOT / "configs/rec/lm_cache_topk.yaml"), "--out", str(tmp_path / "committee"),
             f"teacher_dir={teachers}", *common]
    assert main(cache) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["outputs"] == {"encoder.layer.3": [384], "pooled": [384], "logits": []}
    index = json.loads((tmp_path / "committee" / "index.json").read_text())
    assert index["key"]["computed_from"] == {"tokens": "encoder.layer.3:tokens", "stored": "float16", "autocast": "bf16"}
    head = ["train", "--config", str(ROOT / "configs/rec/lm_teacher.yaml"), "--out", str(tmp_path / "head"), *common]
    assert main(head) == 2
    assert "token_cache needs finetune: top_k" in capsys.readouterr().err
