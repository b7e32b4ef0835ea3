import pytest
import torch

from committee_toys import MLPTeacher, ToyStudent, TransformerTeacher, make_batch

D_IN = 6


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def batch():
    return make_batch(n=12, d_in=D_IN)


@pytest.fixture
def student():
    return ToyStudent(D_IN)


@pytest.fixture
def teachers():
    return [MLPTeacher(D_IN, name="mlp"), TransformerTeacher(D_IN, name="tfm"), MLPTeacher(D_IN, name="mlp2", hidden=20)]
