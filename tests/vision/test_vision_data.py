"""Fashion-MNIST read through torchvision from the fetched IDX files: counts, splits, transform."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vision_committee.data import MEAN, NUM_CLASSES, STD, VAL_ROWS, VisionDataError, load_fashion_mnist, read_fashion_mnist, standard_transform


def test_official_counts_and_classes(fashion_root: Path) -> None:
    train, test = read_fashion_mnist(fashion_root, True), read_fashion_mnist(fashion_root, False)
    assert (len(train), len(test)) == (60_000, 10_000)
    assert len(train.classes) == NUM_CLASSES == 10
    assert sorted(train.targets.unique().tolist()) == list(range(10))
    assert torch.bincount(test.targets).tolist() == [1000] * 10


def test_splits_are_disjoint_and_cover_the_training_set(fashion) -> None:
    assert (len(fashion.train), len(fashion.val), len(fashion.test)) == (60_000 - VAL_ROWS, VAL_ROWS, 10_000)
    train_ids, val_ids = set(fashion.train.example_ids.tolist()), set(fashion.val.example_ids.tolist())
    assert not train_ids & val_ids and len(train_ids | val_ids) == 60_000
    assert fashion.test.example_ids.min() == 60_000
    everything = fashion.all_images()
    assert torch.equal(everything.example_ids, torch.arange(70_000))
    rows = fashion.val.example_ids[:5]
    assert torch.equal(everything.images[rows], fashion.val.images[:5])


def test_in_memory_normalisation_equals_the_standard_transform(fashion_root: Path, fashion) -> None:
    raw = read_fashion_mnist(fashion_root, False)
    for i in (0, 1, 9999):
        image, label = raw[i]  # PIL -> standard_transform, one image at a time
        assert torch.allclose(image, fashion.test.images[i], atol=1e-6)
        assert label == int(fashion.test.labels[i])
    # the transform itself on pixels whose values are written out: ToTensor (/255), then Normalize
    # with mean 0.2860 and std 0.3530 (test_normalisation_constants_are_the_training_sets)
    from PIL import Image

    image = standard_transform()(Image.fromarray(np.array([[0, 51, 128, 255]], dtype=np.uint8)))
    expected = torch.tensor([[[-0.8101983, -0.2436261, 0.6117869, 2.0226629]]])
    assert image.shape == (1, 1, 4) and torch.allclose(image, expected, atol=1e-6)


def test_normalisation_constants_are_the_training_sets(fashion_root: Path) -> None:
    """MEAN and STD are the official training images' pixel mean and std (after ToTensor), to
    the 4 decimals they are written with."""
    pixels = read_fashion_mnist(fashion_root, True).data.double() / 255
    assert abs(float(pixels.mean()) - MEAN) <= 5e-5 and abs(float(pixels.std()) - STD) <= 5e-5


def test_max_rows_slices_train_only(fashion_root: Path) -> None:
    data = load_fashion_mnist(fashion_root, max_train_rows=1000)
    assert (len(data.train), len(data.val), len(data.test)) == (1000, VAL_ROWS, 10_000)


def test_batches_cover_each_row_once_and_subset(fashion_slice) -> None:
    g = torch.Generator().manual_seed(0)
    seen = torch.cat([b.example_ids for b in fashion_slice.train.batches(100, shuffle=True, generator=g)])
    assert sorted(seen.tolist()) == sorted(fashion_slice.train.example_ids.tolist())
    batch = fashion_slice.train.batch(torch.arange(10))
    sub = batch.subset(torch.tensor([2, 5]))
    assert len(sub) == 2 and torch.equal(sub.images[1], batch.images[5])


def test_missing_files_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(VisionDataError, match="make data"):
        load_fashion_mnist(tmp_path)


def test_transfer_images_are_unused_train_images_without_labels(fashion_root: Path) -> None:
    data = load_fashion_mnist(fashion_root, max_train_rows=1000, transfer_per_row=2)
    train_ids, val_ids = set(data.train.example_ids.tolist()), set(data.val.example_ids.tolist())
    transfer_ids = set(data.transfer.example_ids.tolist())
    assert len(transfer_ids) == 2000 and not transfer_ids & (train_ids | val_ids) and max(transfer_ids) < 60_000
    assert bool((data.transfer.labels == -1).all())
    assert torch.equal(data.all_images().images[data.transfer.example_ids[:3]], data.transfer.images[:3])
    mixed = data.with_transfer()
    assert len(mixed.train) == 3000 and len(mixed.val) == VAL_ROWS
    with pytest.raises(VisionDataError, match="no transfer images"):
        load_fashion_mnist(fashion_root, max_train_rows=1000).with_transfer()
