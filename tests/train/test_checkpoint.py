"""Model files are safetensors: bit-exact, loadable with no pickle at all, atomic, and an old
torch-pickle file is refused by name."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from recsys_committee.train.checkpoint import CheckpointError, FORMAT, load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def bits(t: torch.Tensor) -> bytes:
    return t.detach().contiguous().flatten().view(torch.uint8).numpy().tobytes()


def assert_bit_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert set(a) == set(b)
    for key in a:
        assert (a[key].dtype, a[key].shape) == (b[key].dtype, b[key].shape), key
        assert bits(a[key]) == bits(b[key]), key


@pytest.fixture
def tiny_data(tiny_dir):
    from recsys_committee.data.logs.movielens import load_movielens

    return load_movielens(tiny_dir, "ml-tiny")


def test_round_trip_is_bit_exact_for_every_dtype_view_and_tied_weight(tmp_path):
    torch.manual_seed(0)
    base = torch.randn(6, 4)
    base[0, 0] = float("nan")  # a NaN survives bit for bit (torch.equal would call it unequal)
    tied = torch.nn.Linear(4, 4)
    state = {
        "f32": base,
        "f16": torch.randn(3, 5).half(),
        "bf16": torch.randn(7).bfloat16(),
        "f64": torch.randn(2, 2, dtype=torch.float64),
        "i64": torch.arange(-5, 5),
        "i8": torch.tensor([-128, 0, 127], dtype=torch.int8),
        "bool": torch.tensor([True, False, True]),
        "transposed": base.t(),  # a non-contiguous view of f32's storage
        "row": base[2],  # another view of the same storage
        "empty": torch.empty(0, 3),
        "scalar": torch.tensor(3.5),
        "a.weight": tied.weight,  # tied: two keys, one parameter
        "b.weight": tied.weight,
    }
    payload = {"state_dict": state, "model": "m", "params": {"hidden": [64, 32], "dropout": 0.1, "flag": True, "none": None},
               "cardinalities": {"user_id": 944, "item_id": 1683}, "num_dense": 2, "epoch": 3, "val_auc": float("nan"),
               "best": float("-inf"), "method": "diverse_distill"}
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, payload)
    back = load_checkpoint(path)
    assert_bit_equal(state, back["state_dict"])
    from safetensors.torch import load_file

    assert_bit_equal(state, load_file(str(path)))  # a plain safetensors file: any safetensors reader gets the weights
    assert back["format"] == FORMAT
    assert {k: v for k, v in back.items() if k not in ("state_dict", "format", "val_auc")} == {k: v for k, v in payload.items() if k not in ("state_dict", "val_auc")}
    assert back["val_auc"] != back["val_auc"]  # NaN comes back as NaN
    assert not list(tmp_path.glob("*.tmp"))


def test_real_models_round_trip_bit_for_bit(tmp_path, tiny_data):
    from recsys_committee.models import build_model
    from vision_committee.models import build_vision_model

    for name in ("student", "expert_dlrm", "expert_din_dcn"):
        model = build_model(name, tiny_data.cardinalities, tiny_data.num_dense, data=tiny_data)
        save_checkpoint(tmp_path / f"{name}.safetensors", {"state_dict": model.state_dict()})
        assert_bit_equal(model.state_dict(), load_checkpoint(tmp_path / f"{name}.safetensors")["state_dict"])
    cnn = build_vision_model("resnet_cnn", widths=[8, 16, 32])
    save_checkpoint(tmp_path / "cnn.safetensors", {"state_dict": cnn.state_dict()})
    assert_bit_equal(cnn.state_dict(), load_checkpoint(tmp_path / "cnn.safetensors")["state_dict"])


def _no_unpickling(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model file was unpickled")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)


def test_model_files_load_without_any_unpickling(tmp_path, tiny_data, monkeypatch):
    """Rebuilding a recommendation and a vision model from their files never unpickles."""
    from recsys_committee.rec_domain import REC, load_trained_model
    from recsys_committee.train.config import load_config
    from vision_committee.checkpoint import load_vision_model, vision_payload
    from vision_committee.models import build_vision_model

    cfg = load_config(ROOT / "configs/rec/expert_dlrm.yaml", ["model.params.top=[16,8]"])
    rec = REC.build_model(cfg, tiny_data)
    save_checkpoint(tmp_path / "rec.safetensors", REC.model_payload(cfg, tiny_data, rec.state_dict(), 2, {"auc": 0.7}, None))
    cnn = build_vision_model("resnet_cnn", widths=[8, 16, 32])
    save_checkpoint(tmp_path / "cnn.safetensors", vision_payload("resnet_cnn", {"widths": [8, 16, 32]}, cnn.state_dict(), 1, {"top1": 0.5}, "no_kd"))
    _no_unpickling(monkeypatch)
    loaded = load_trained_model(tmp_path / "rec.safetensors", tiny_data)
    assert_bit_equal(rec.state_dict(), loaded.state_dict())
    assert_bit_equal(cnn.state_dict(), load_vision_model(tmp_path / "cnn.safetensors").state_dict())
    # an old pickle is refused by name without being unpickled
    (tmp_path / "old.pt").write_bytes(b"\x80\x02}q\x00.")
    with pytest.raises(CheckpointError, match="old.pt is a torch pickle"):
        load_trained_model(tmp_path / "old.pt")


def test_a_torch_pickle_is_refused_by_name(tmp_path):
    """A torch.save file (zip) given as a model file is refused, naming it, without loading it."""
    lin = torch.nn.Linear(3, 2)
    old = tmp_path / "model.pt"
    torch.save({"format": "diverse-distill/1", "state_dict": lin.state_dict()}, old)
    with pytest.raises(CheckpointError, match="model.pt is a torch pickle; it is not loaded"):
        load_checkpoint(old)


def test_a_failed_save_keeps_the_last_good_file(tmp_path):
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, {"state_dict": {"w": torch.ones(2)}, "epoch": 0})
    good = path.read_bytes()
    with pytest.raises(ValueError, match="JSON"):
        save_checkpoint(path, {"state_dict": {"w": torch.zeros(2)}, "epoch": object()})
    with pytest.raises(ValueError, match="not a tensor"):
        save_checkpoint(path, {"state_dict": {"w": torch.zeros(2), "extra": 3}, "epoch": 1})
    assert path.read_bytes() == good and sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_a_missing_pt_path_points_at_the_safetensors_file(tmp_path):
    save_checkpoint(tmp_path / "model.safetensors", {"state_dict": {}})
    with pytest.raises(CheckpointError, match="model files are now .safetensors"):
        load_checkpoint(tmp_path / "model.pt")


def test_no_unsafe_torch_load_in_the_packages():
    offenders = [str(p.relative_to(ROOT)) for pkg in ("recsys_committee", "vision_committee") for p in (ROOT / pkg).rglob("*.py")
                 if "weights_only=False" in p.read_text()]
    assert offenders == []
