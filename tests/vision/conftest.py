"""Fashion-MNIST fixtures: the real fetched set (``fashion_root`` in tests/conftest.py: skipped with
a hint when absent, failed under DD_REQUIRE_DATA) and small slices."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def fashion(fashion_root: Path):
    from vision_committee.data import load_fashion_mnist

    return load_fashion_mnist(fashion_root)


def shrink(data, train: int, val: int, test: int):
    """The same data with short val/test splits (evaluation dominates tiny test runs)."""
    from vision_committee.data import VisionData, VisionSplit

    def head(split, n):
        return VisionSplit(split.images[:n], split.labels[:n], split.example_ids[:n])

    return VisionData(head(data.train, train), head(data.val, val), head(data.test, test), everything=data.everything)


@pytest.fixture(scope="session")
def fashion_slice(fashion):
    return shrink(fashion, 512, 256, 256)


@pytest.fixture
def synthetic_batch():
    from vision_committee.data import VisionBatch

    g = torch.Generator().manual_seed(0)
    return VisionBatch(torch.randn(8, 1, 28, 28, generator=g), torch.randint(0, 10, (8,), generator=g), torch.arange(8))
