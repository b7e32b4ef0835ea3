"""The serving artifact: its outputs are the in-training student's (fp32 within 1e-6, int8 within
a stated tolerance), a process that cannot import ``recsys_committee`` loads and runs it with
torch + torchrec alone, ``score`` takes it in place of the model directory, and a corrupt or
mismatched artifact is one clear error (exit code 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from recsys_committee.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[2]
QUICK = ["train.progress=false", "train.batch_size=256", "train.epochs=1", "train.max_steps_per_epoch=6", "model.params.hidden=[64,32]"]


@pytest.fixture(scope="module")
def trained(real_data_dir, tmp_path_factory) -> Path:
    """A briefly trained student on ML-100K through its data spec (multi-valued genres and histories)."""
    out = tmp_path_factory.mktemp("serve") / "student"
    assert cli_main(["train", "--config", str(ROOT / "configs/rec/student.yaml"), "--out", str(out), *QUICK]) == 0
    return out


@pytest.fixture(scope="module")
def artifacts(trained) -> dict[str, Path]:
    folders = {}
    for quantize in ("none", "int8"):
        folders[quantize] = trained.parent / f"artifact_{quantize}"
        assert cli_main(["export", "--model", str(trained), "--out", str(folders[quantize]), "--quantize", quantize]) == 0
    folders["fused"] = trained.parent / "artifact_fused"
    assert cli_main(["export", "--model", str(trained), "--out", str(folders["fused"]), "--fused-tables"]) == 0
    folders["per_table"] = trained.parent / "artifact_per_table"
    assert cli_main(["export", "--model", str(trained), "--out", str(folders["per_table"]), "--lookup", "per-table"]) == 0
    return folders


def _test_split(trained: Path):
    from recsys_committee.data.features.featurize import featurize, split_rows
    from recsys_committee.data.model_input.batching import RecDataset
    from recsys_committee.data.model_input.model_data import load_data_facts
    from recsys_committee.data.logs.reader import read_rows

    spec, vocab, mean, std = load_data_facts(trained)
    rows = read_rows(spec)
    return RecDataset(featurize(spec, rows, vocab), split_rows(spec, rows.height)["test"], mean, std)


def test_the_artifact_scores_as_the_in_training_student(trained, artifacts, capsys):
    from recsys_committee.rec_domain import load_trained_model, predict
    from recsys_committee.serve.artifact import load_artifact

    test = _test_split(trained)
    student = predict(load_trained_model(trained / "model.safetensors").eval(), test, 4096)
    per_table = load_artifact(artifacts["per_table"]).predict(test, 4096)
    int8 = load_artifact(artifacts["int8"]).predict(test, 4096)
    fused = load_artifact(artifacts["fused"]).predict(test, 4096)
    assert per_table.shape == student.shape == (len(test),)
    assert torch.equal(per_table, student)  # the training EBC's lookups and the same dense ops: bit for bit
    assert float((fused - student).abs().max()) <= 1e-6  # one fused lookup: the same sums in another order
    # the default program picks its lookup by the call's rows: above the limit it IS the per-table
    # program, up to it the fused one (bit for bit: the fused sums differ from the per-table ones)
    default = load_artifact(artifacts["none"])
    limit = default.manifest["fused_max_batch"]
    assert default.manifest["lookup"] == "auto" and 1 < limit < 4096
    assert torch.equal(default.predict(test, 4096), per_table)
    fused_program, first = load_artifact(artifacts["fused"]), torch.arange(32 * limit)  # 32 calls of `limit` rows
    calls = [test.batch(first[i : i + limit]) for i in range(0, first.numel(), limit)]
    by_small_calls = torch.cat([default(b.kjt(default.features), b.dense) for b in calls])
    assert torch.equal(by_small_calls, torch.cat([fused_program(b.kjt(default.features), b.dense) for b in calls]))
    assert not torch.equal(by_small_calls, per_table[first])
    assert float((by_small_calls - student[first]).abs().max()) <= 1e-6
    fp32 = default.predict(test, 4096)
    # int8 rows carry a per-row fp16 scale and bias: probabilities move by ~1e-4, never by 5e-3
    int8_gap = float((int8 - student).abs().max())
    assert 0.0 < int8_gap < 5e-3, int8_gap
    # score takes the artifact where it takes the model directory, with the same metrics
    reports = {}
    for name, model in (("dir", trained), ("artifact", artifacts["none"])):
        capsys.readouterr()
        assert cli_main(["score", "--model", str(model), "--split", "test", "--out", str(trained.parent / f"{name}.parquet")]) == 0
        reports[name] = json.loads(capsys.readouterr().out)
    assert reports["artifact"]["metrics"]["auc"] == pytest.approx(reports["dir"]["metrics"]["auc"], abs=1e-6)
    manifests = {q: json.loads((f / "artifact.json").read_text()) for q, f in artifacts.items()}
    assert manifests["int8"]["program_bytes"] < manifests["per_table"]["program_bytes"] < manifests["none"]["program_bytes"]
    # int8 rows: a byte per value + an fp16 scale and bias per row, against 4 bytes per value
    assert manifests["int8"]["weight_bytes"]["tables"] < 0.45 * manifests["per_table"]["weight_bytes"]["tables"]
    assert manifests["int8"]["weight_bytes"]["dense"] == manifests["per_table"]["weight_bytes"]["dense"]
    # the default holds both lookups: two copies of the dense layers, the tables twice (fp32 rows both)
    assert manifests["none"]["weight_bytes"]["dense"] == 2 * manifests["per_table"]["weight_bytes"]["dense"]
    assert manifests["none"]["weight_bytes"]["tables"] >= 2 * manifests["per_table"]["weight_bytes"]["tables"]
    assert manifests["none"]["features"][:2] == ["user_id", "item_id"]


LOADER = """
import builtins, sys
real_import = builtins.__import__
def no_package(name, *args, **kwargs):
    if name.split('.')[0] == 'recsys_committee':
        raise ImportError('recsys_committee is not installed here')
    return real_import(name, *args, **kwargs)
builtins.__import__ = no_package
try:
    import recsys_committee
    raise SystemExit('the package was importable')
except ImportError:
    pass
import json, torch, torchrec
from safetensors.torch import load_file
for folder in sys.argv[1:]:
    manifest = json.load(open(folder + '/artifact.json'))
    extra = {'features.json': ''}
    program = torch.jit.load(folder + '/' + manifest['program'], _extra_files=extra)
    probe = load_file(folder + '/probe.safetensors')
    kjt = torchrec.KeyedJaggedTensor.from_lengths_sync(keys=manifest['features'], values=probe['values'], lengths=probe['lengths'])
    with torch.no_grad():
        got = program(kjt, probe['dense'])
    print(json.dumps({'folder': folder, 'max_diff': float((got - probe['expected']).abs().max()), 'rows': got.numel(),
                      'vocabularies': 'vocabularies' in json.loads(extra['features.json']),
                      'modules': sorted({m.split('.')[0] for m in sys.modules if m.startswith('recsys')})}))
"""


@pytest.fixture(scope="module")
def loaded_without_the_package(artifacts, tmp_path_factory) -> dict[str, dict]:
    """Every artifact loaded and run on its probe by ONE process that cannot import the package
    (one interpreter start, torch and torchrec imported once): {artifact name: its report}."""
    done = subprocess.run([sys.executable, "-c", LOADER, *map(str, artifacts.values())], capture_output=True, text=True,
                          cwd=tmp_path_factory.mktemp("loader"), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    reports = {r.pop("folder"): r for r in map(json.loads, done.stdout.strip().splitlines()[-len(artifacts):])}
    return {name: reports[str(folder)] for name, folder in artifacts.items()}


@pytest.mark.parametrize("name", ["none", "int8", "per_table", "fused"])
def test_a_process_without_the_package_loads_and_runs_the_artifact(loaded_without_the_package, name):
    assert loaded_without_the_package[name] == {"max_diff": 0.0, "rows": 64, "vocabularies": True, "modules": []}


def _copy(folder: Path, tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / folder.name
    shutil.copytree(folder, target)
    return target


def test_a_corrupt_program_is_one_clear_error(artifacts, tmp_path, one_error):
    folder = _copy(artifacts["none"], tmp_path)
    program = folder / "student.ts"
    data = bytearray(program.read_bytes())
    data[len(data) // 2] ^= 0xFF
    program.write_bytes(bytes(data))
    one_error(["score", "--model", str(folder), "--split", "test", "--out", str(tmp_path / "p.parquet")], "student.ts", "sha256")
    assert not (tmp_path / "p.parquet").exists()


def test_a_program_of_another_artifact_is_a_mismatch(artifacts, tmp_path, one_error):
    """The int8 program copied over the fp32 one, its sha256 updated: intact, but not this artifact."""
    from recsys_committee.files import file_sha256

    folder = _copy(artifacts["none"], tmp_path)
    (folder / "student.ts").write_bytes((artifacts["int8"] / "student_int8.ts").read_bytes())
    manifest = json.loads((folder / "artifact.json").read_text())
    manifest["program_sha256"] = file_sha256(folder / "student.ts")
    (folder / "artifact.json").write_text(json.dumps(manifest))
    one_error(["score", "--model", str(folder), "--split", "test", "--out", str(tmp_path / "p.parquet")], "mismatched")


def test_the_probe_catches_a_program_with_other_weights(trained, artifacts, tmp_path, one_error):
    """A program of the same features and quantisation but other weights (a retrained model's):
    only the probe can tell."""
    folder = _copy(artifacts["none"], tmp_path)
    probe = folder / "probe.safetensors"
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(probe))
    tensors["expected"] = tensors["expected"] * 0.5
    save_file(tensors, str(probe))
    one_error(["score", "--model", str(folder), "--split", "test", "--out", str(tmp_path / "p.parquet")], "probe", "mismatched")


def test_int8_tables_have_no_per_table_lookup(trained, tmp_path, one_error):
    one_error(["export", "--model", str(trained), "--out", str(tmp_path / "a"), "--quantize", "int8", "--lookup", "per-table"], "int8", "per-table")
    one_error(["export", "--model", str(trained), "--out", str(tmp_path / "a"), "--fused-max-batch", "0"], "--fused-max-batch")
    assert not (tmp_path / "a").exists()


def test_export_refuses_a_non_empty_folder_and_keeps_it(trained, artifacts, one_error):
    before = {p.name: p.read_bytes() for p in artifacts["none"].iterdir()}
    one_error(["export", "--model", str(trained), "--out", str(artifacts["none"])], "not empty", "--overwrite")
    assert {p.name: p.read_bytes() for p in artifacts["none"].iterdir()} == before


def test_export_of_a_model_that_is_not_the_student(tmp_path, real_data_dir, one_error):
    out = tmp_path / "dlrm"
    assert cli_main(["train", "--config", str(ROOT / "configs/rec/expert_dlrm.yaml"), "--out", str(out), *QUICK[:-1], "train.max_steps_per_epoch=1"]) == 0
    one_error(["export", "--model", str(out), "--out", str(tmp_path / "a")], "student")
    assert not (tmp_path / "a").exists()
