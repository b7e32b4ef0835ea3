"""Image classifiers for the committee: a ResNet-style CNN family and the MobileNetV2 foundation model.

Why one CNN family for the student and the experts: docs/METHOD.md wants experts that "share the
student's architectural characteristics"; they differ from the student in width and depth
only. Every model returns ``StudentOutput`` (logits, hidden h = the pooled features before the
head, h0 = the pooled stem output, computed anyway and cheap) so any of them can be a student;
as teachers they are called through hooks and only their logits are read.

Models are registered (``@register_vision_model``): a new one is one decorated builder plus a
YAML entry naming it.
"""

from __future__ import annotations

from recsys_committee.errors import UserError

from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from recsys_committee.committee.types import StudentOutput
from recsys_committee.registry import Registry
from vision_committee.data import MEAN, NUM_CLASSES, STD

VISION_MODELS: Registry[Callable[..., nn.Module]] = Registry("vision model")
register_vision_model = VISION_MODELS.register

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MOBILENET_WEIGHTS = Path("data/weights/mobilenet_v2-b0353104.pth")


class PretrainedWeightsError(UserError, RuntimeError):
    """The ImageNet weights are missing or do not fit the model; the message names the file."""


def build_vision_model(name: str, **params: Any) -> nn.Module:
    return VISION_MODELS.build(name, **params)


class BasicBlock(nn.Module):
    """The ResNet basic block (two 3x3 convs + identity or 1x1 projection shortcut)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class ResNetCNN(nn.Module):
    """Stem (3x3, stride ``stem_stride``) then one stage per width, each stage halving the
    resolution after the first; global average pooling gives h; a linear head gives logits.

    Why a strided stem by default: at 28x28 a full-resolution first stage costs most of the
    FLOPs and little accuracy on Fashion-MNIST; 2 CPU cores must train a committee of these.
    """

    def __init__(self, widths: Sequence[int] = (32, 64, 128), blocks: Sequence[int] = (1, 1, 1), stem_stride: int = 2,
                 num_classes: int = NUM_CLASSES, dropout: float = 0.0) -> None:
        super().__init__()
        if len(widths) != len(blocks) or not widths:
            raise ValueError(f"widths {list(widths)} and blocks {list(blocks)} must be non-empty and of the same length")
        self.stem = nn.Sequential(nn.Conv2d(1, widths[0], 3, stem_stride, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
        stages, c_in = [], widths[0]
        for i, (width, n) in enumerate(zip(widths, blocks)):
            layers = [BasicBlock(c_in if j == 0 else width, width, 2 if (i > 0 and j == 0) else 1) for j in range(n)]
            stages.append(nn.Sequential(*layers))
            c_in = width
        self.stages = nn.Sequential(*stages)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(c_in, num_classes)

    def forward(self, batch: Any) -> StudentOutput:
        stem = self.stem(batch.images)
        hidden = self.stages(stem).mean(dim=(2, 3))
        return StudentOutput(logits=self.head(self.dropout(hidden)), hidden=hidden, h0=stem.mean(dim=(2, 3)))


@register_vision_model("resnet_cnn")
def resnet_cnn(widths: Sequence[int] = (32, 64, 128), blocks: Sequence[int] = (1, 1, 1), stem_stride: int = 2, dropout: float = 0.0) -> ResNetCNN:
    return ResNetCNN(widths, blocks, stem_stride, dropout=dropout)


class MobileNetClassifier(nn.Module):
    """torchvision MobileNetV2 on Fashion-MNIST: the 1-channel 28x28 image (normalised with the
    dataset's statistics) is resized to ``image_size`` (bilinear), repeated to 3 channels and
    renormalised with ImageNet's statistics, so the pretrained filters see what they expect.
    The 1000-class ImageNet head is replaced by a fresh 10-class one (fine-tuned)."""

    def __init__(self, net: nn.Module, image_size: int) -> None:
        super().__init__()
        self.net = net
        self.image_size = image_size
        scale = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        shift = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self.register_buffer("in_scale", STD / scale, persistent=False)  # x_imagenet = x * STD/std + (MEAN - mean)/std
        self.register_buffer("in_shift", (MEAN - shift) / scale, persistent=False)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        x = images
        if x.shape[-1] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return x.expand(-1, 3, -1, -1) * self.in_scale + self.in_shift

    def forward(self, batch: Any) -> StudentOutput:
        hidden = self.net.features(self.prepare(batch.images)).mean(dim=(2, 3))
        # as a student (not its role here) the gate would read the pooled features: h0 = h
        return StudentOutput(logits=self.net.classifier(hidden), hidden=hidden, h0=hidden)


def load_imagenet_mobilenet_v2(weights: str | Path = MOBILENET_WEIGHTS) -> nn.Module:
    """torchvision's MobileNetV2 with the packaged IMAGENET1K_V1 weights, every key matched, in eval mode."""
    from torchvision.models import mobilenet_v2

    path = Path(weights)
    if not path.is_file():
        raise PretrainedWeightsError(f"MobileNetV2 ImageNet weights not found at {path}: run `make data` (python -m vision_committee.downloads mobilenet-v2)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file
        raise PretrainedWeightsError(f"{path} is not a readable torch state dict: {exc}") from exc
    net = mobilenet_v2()
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise PretrainedWeightsError(f"{path} does not fit torchvision's mobilenet_v2 (every key must match): {exc}") from exc
    return net.eval()  # inference mode (dropout off, BatchNorm statistics frozen) until a trainer says otherwise


@register_vision_model("mobilenet_v2")
def mobilenet_v2_foundation(image_size: int = 64, pretrained: bool = True, weights: str = str(MOBILENET_WEIGHTS), dropout: float = 0.2) -> MobileNetClassifier:
    """The foundation model: ImageNet-pretrained MobileNetV2 with a new 10-class head."""
    from torchvision.models import mobilenet_v2

    net = load_imagenet_mobilenet_v2(weights) if pretrained else mobilenet_v2()
    net.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(net.last_channel, NUM_CLASSES))
    return MobileNetClassifier(net, image_size)


def imagenet_mobilenet_v2_params(weights: str | Path = MOBILENET_WEIGHTS) -> int:
    """Parameters of the ImageNet MobileNetV2 actually loaded (1000-class head): the model the
    3.6x compression is measured against, counted, not quoted."""
    return sum(p.numel() for p in load_imagenet_mobilenet_v2(weights).parameters())
