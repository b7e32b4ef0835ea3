"""Fashion-MNIST for the committee: read by torchvision from the fetched IDX files, held in memory.

Why in memory: 70,000 images of 28x28 are 55 MB as uint8; a per-image ``Dataset`` + DataLoader
would spend more time in Python than the small CNNs spend computing on 2 CPU cores. The
images are read through ``torchvision.datasets.FashionMNIST`` (``download=False``: nothing is
ever fetched at run time) and normalised exactly as the standard per-image transform would
(``test_data.py`` checks the two agree).

Splits: the official 10,000 test images are the test split; ``VAL_ROWS`` images held out of the
official 60,000 training images by a fixed permutation are the validation split (model
selection uses it only). Every image has a global ``example_ids`` (train 0..59999, test
60000..69999) so cached teacher outputs can be looked up by id.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch

from recsys_committee.errors import UserError
from recsys_committee.train.rows import RowSplit

NUM_CLASSES = 10
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST training-set pixel statistics (after ToTensor)
VAL_ROWS = 5000
SPLIT_SEED = 20240221  # fixes which training images are held out for validation
TRAIN_IMAGES = 60_000


class VisionDataError(UserError, RuntimeError):
    """The Fashion-MNIST files are missing or malformed; the message says how to fetch them."""


def standard_transform():
    """The per-image transform the in-memory path reproduces: ToTensor then Normalize."""
    from torchvision import transforms

    return transforms.Compose([transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))])


def normalize(images_uint8: torch.Tensor) -> torch.Tensor:
    """[N, 28, 28] uint8 -> [N, 1, 28, 28] float, as ``standard_transform`` does per image."""
    return ((images_uint8.float() / 255.0 - MEAN) / STD).unsqueeze(1)


@dataclass
class VisionBatch:
    """A batch the committee core can cut into routed sub-batches (``committee.types.Batch``)."""

    images: torch.Tensor  # [B, 1, 28, 28] float, normalised
    labels: torch.Tensor  # [B] long
    example_ids: torch.Tensor  # [B] long, global image ids (keys of cached teacher outputs)

    def subset(self, index: torch.Tensor) -> "VisionBatch":
        return VisionBatch(self.images[index], self.labels[index], self.example_ids[index])

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: torch.device | str) -> "VisionBatch":
        if self.labels.device == torch.device(device):
            return self
        return VisionBatch(self.images.to(device), self.labels.to(device), self.example_ids.to(device))


@dataclass
class VisionSplit(RowSplit):
    images: torch.Tensor
    labels: torch.Tensor
    example_ids: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batch(self, rows: torch.Tensor) -> VisionBatch:
        return VisionBatch(self.images[rows], self.labels[rows], self.example_ids[rows])


@dataclass
class VisionData:
    train: VisionSplit
    val: VisionSplit
    test: VisionSplit
    num_classes: int = NUM_CLASSES
    everything: Optional[VisionSplit] = None  # all 70,000 images by id (kept when train is a slice)
    transfer: Optional[VisionSplit] = None  # train images the slice does not use, label -1 (distillation's transfer rows)

    def with_transfer(self) -> "VisionData":
        """The same data whose train split also holds the transfer images (labels -1: every
        loss that reads a label skips them; the teachers still answer on them)."""
        if self.transfer is None or len(self.transfer) == 0:
            raise VisionDataError("committee.transfer is on but there are no transfer images: set data.transfer_per_row > 0 with a "
                                  "data.max_rows slice that leaves training images unused")
        t = self.transfer
        train = VisionSplit(torch.cat([self.train.images, t.images]), torch.cat([self.train.labels, t.labels]),
                            torch.cat([self.train.example_ids, t.example_ids]))
        return dataclasses.replace(self, train=train)

    def splits(self) -> dict[str, VisionSplit]:
        return {"train": self.train, "val": self.val, "test": self.test}

    def all_images(self) -> VisionSplit:
        """Every image once, ordered by global id (what a teacher cache is built over, so one
        cache serves any training slice)."""
        if self.everything is not None:
            return self.everything
        parts = [self.train, self.val, self.test]
        ids = torch.cat([p.example_ids for p in parts])
        order = torch.argsort(ids)
        return VisionSplit(torch.cat([p.images for p in parts])[order], torch.cat([p.labels for p in parts])[order], ids[order])


def read_fashion_mnist(root: str | Path, train: bool):
    """The torchvision dataset over ``root/FashionMNIST/raw`` (never downloads)."""
    from torchvision.datasets import FashionMNIST

    try:
        return FashionMNIST(str(root), train=train, download=False, transform=standard_transform())
    except RuntimeError as exc:  # torchvision: "Dataset not found. You can use download=True ..."
        raise VisionDataError(
            f"Fashion-MNIST not found under {Path(root) / 'FashionMNIST' / 'raw'} ({exc}). "
            "Fetch it with `make data` (python -m vision_committee.downloads fashion-mnist)."
        ) from None


def load_fashion_mnist(root: str | Path = "data", max_train_rows: Optional[int] = None, transfer_per_row: int = 0) -> VisionData:
    """Train / val / test splits. ``max_train_rows`` keeps the first rows of the (shuffled)
    training split only: the validation and test splits stay whole, so slices stay comparable.
    ``transfer_per_row``: that many of the training images the slice leaves unused per image it
    uses (the next ones of the same shuffle, never a validation image), labels dropped (-1)."""
    train_set, test_set = read_fashion_mnist(root, True), read_fashion_mnist(root, False)
    if len(train_set) != TRAIN_IMAGES or train_set.data.shape[1:] != (28, 28):
        raise VisionDataError(f"Fashion-MNIST training set under {root} has shape {tuple(train_set.data.shape)}, expected (60000, 28, 28)")
    images, labels = normalize(train_set.data), train_set.targets.long()
    perm = torch.randperm(TRAIN_IMAGES, generator=torch.Generator().manual_seed(SPLIT_SEED))
    val_rows, train_rows = perm[:VAL_ROWS], perm[VAL_ROWS:]
    unused = torch.zeros(0, dtype=torch.long)
    if max_train_rows is not None:
        train_rows, unused = train_rows[:max_train_rows], train_rows[max_train_rows:]
    transfer_rows = unused[: int(transfer_per_row) * len(train_rows)]
    test = VisionSplit(normalize(test_set.data), test_set.targets.long(), torch.arange(len(test_set)) + TRAIN_IMAGES)
    return VisionData(
        train=VisionSplit(images[train_rows], labels[train_rows], train_rows.clone()),
        val=VisionSplit(images[val_rows], labels[val_rows], val_rows.clone()),
        test=test,
        everything=VisionSplit(torch.cat([images, test.images]), torch.cat([labels, test.labels]), torch.arange(TRAIN_IMAGES + len(test))),
        transfer=VisionSplit(images[transfer_rows], torch.full((len(transfer_rows),), -1, dtype=torch.long), transfer_rows.clone()) if len(transfer_rows) else None,
    )
