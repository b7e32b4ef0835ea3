"""The foundation model's packaged ImageNet weights, the CNN family and the compression ratio."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from recsys_committee.committee import count_params
from vision_committee.models import (
    MOBILENET_WEIGHTS,
    PretrainedWeightsError,
    build_vision_model,
    imagenet_mobilenet_v2_params,
    load_imagenet_mobilenet_v2,
)

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).with_name("golden_mobilenet.json")


@pytest.fixture(scope="module")
def imagenet_net(imagenet_weights: Path):
    return load_imagenet_mobilenet_v2(imagenet_weights)


def fixed_input() -> torch.Tensor:
    """A deterministic, image-like input: smooth gradients and a checkerboard, 3 x 64 x 64."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64), indexing="ij")
    board = ((torch.arange(64)[:, None] // 8 + torch.arange(64)[None, :] // 8) % 2).float()
    return torch.stack([x, y, board * 2 - 1]).unsqueeze(0)


def test_imagenet_weights_load_every_key_and_classify_deterministically(imagenet_net) -> None:
    from torchvision.models import mobilenet_v2

    # the count the compression ratio uses is the loaded model's, which is torchvision's
    # architecture with its 1000-class head (every key loaded strictly)
    assert imagenet_mobilenet_v2_params() == count_params(imagenet_net) == count_params(mobilenet_v2())
    with torch.no_grad():
        first = imagenet_net(fixed_input())
        second = imagenet_net(fixed_input())
    assert torch.equal(first, second)
    golden = json.loads(GOLDEN.read_text())
    assert int(first[0].argmax()) in golden["top5_classes"][:2]  # the top two are 0.0006 apart: either may win elsewhere
    # compared by class, not by rank
    assert torch.allclose(first[0, golden["top5_classes"]], torch.tensor(golden["top5_logits"]), atol=1e-3)


def test_corrupt_or_foreign_weights_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "mobilenet.pth"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(PretrainedWeightsError, match="mobilenet.pth"):
        load_imagenet_mobilenet_v2(bad)
    torch.save({"features.0.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(PretrainedWeightsError, match="every key must match"):
        load_imagenet_mobilenet_v2(bad)
    with pytest.raises(PretrainedWeightsError, match="make data"):
        load_imagenet_mobilenet_v2(tmp_path / "absent.pth")


def test_foundation_keeps_pretrained_features_and_takes_28px_images(imagenet_net, imagenet_weights: Path, synthetic_batch) -> None:
    model = build_vision_model("mobilenet_v2", image_size=32, weights=str(imagenet_weights))
    assert torch.equal(model.net.features[0][0].weight, imagenet_net.features[0][0].weight)
    out = model.eval()(synthetic_batch)
    assert out.logits.shape == (8, 10) and out.hidden.shape == (8, 1280)


def test_student_is_3_6x_smaller_than_the_foundation_model(imagenet_weights: Path, synthetic_batch) -> None:
    from recsys_committee.train.config import load_config

    cfg = load_config(ROOT / "configs/vision/student.yaml")
    student = build_vision_model(cfg.model.name, **cfg.model.params)
    ratio = imagenet_mobilenet_v2_params(imagenet_weights) / count_params(student)
    assert 3.55 <= ratio <= 3.65, ratio
    out = student(synthetic_batch)
    assert out.logits.shape == (8, 10) and out.hidden.dim() == 2 and out.h0.dim() == 2
    for name in ("expert_wide", "expert_deep"):
        expert_cfg = load_config(ROOT / f"configs/vision/{name}.yaml")
        assert expert_cfg.model.name == cfg.model.name  # the student's family
        assert count_params(build_vision_model(expert_cfg.model.name, **expert_cfg.model.params)) > 2 * count_params(student)


def test_unknown_model_names_close_matches() -> None:
    from recsys_committee.registry import UnknownNameError

    with pytest.raises(UnknownNameError, match="resnet_cnn"):
        build_vision_model("resnet_cn")
