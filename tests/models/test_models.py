import pytest
import torch

from recsys_committee.models import MODELS, build_model, count_params
from recsys_committee.registry import UnknownNameError


@pytest.mark.parametrize("name", ["student", "expert_dlrm", "expert_din_dcn"])
def test_forward_backward(ml_slice, name):
    torch.manual_seed(0)
    model = build_model(name, ml_slice.cardinalities, ml_slice.num_dense, data=ml_slice)
    batch = ml_slice.train.batch(torch.arange(64))
    out = model(batch)
    assert out.logits.shape == (64,)
    assert out.hidden.ndim == 2 and out.hidden.shape[0] == 64
    assert out.h0.ndim == 2 and out.h0.shape[0] == 64
    torch.nn.functional.binary_cross_entropy_with_logits(out.logits, batch.labels).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads)
    assert all(torch.isfinite(g).all() for g in grads)


def test_default_sizes(ml100k):
    student = count_params(build_model("student", ml100k.cardinalities, ml100k.num_dense, data=ml100k, hidden=[864, 256]))
    assert 550_000 < student < 650_000
    for expert in ("expert_dlrm", "expert_din_dcn"):
        assert count_params(build_model(expert, ml100k.cardinalities, ml100k.num_dense, data=ml100k)) > 2.5 * student


def test_unknown_model_and_param(ml_slice):
    with pytest.raises(UnknownNameError, match="Did you mean 'student'"):
        build_model("studnet", ml_slice.cardinalities, ml_slice.num_dense, data=ml_slice)
    with pytest.raises(UnknownNameError, match="unknown parameter 'hiden'.*Did you mean 'hidden'"):
        build_model("student", ml_slice.cardinalities, ml_slice.num_dense, data=ml_slice, hiden=[8])
    assert {"student", "expert_dlrm", "expert_din_dcn"} <= set(MODELS.names())


def test_empty_history_is_finite(ml_slice):
    # The first rows in time have no history at all: pooled/attended embeddings must not be NaN.
    _, offsets = ml_slice.train.jagged["history_long"]
    empty = torch.nonzero(offsets[1:] == offsets[:-1]).flatten()[:8]
    batch = ml_slice.train.batch(empty)
    assert len(empty) == 8 and int(batch.sparse["history_long"][1].sum()) == 0
    for name in ("student", "expert_din_dcn"):
        out = build_model(name, ml_slice.cardinalities, ml_slice.num_dense, data=ml_slice)(batch)
        assert torch.isfinite(out.logits).all()


def _shipped_student(data):
    from recsys_committee.train.config import load_config

    cfg = load_config("configs/rec/student.yaml", [])
    return build_model(cfg.model.name, data.cardinalities, data.num_dense, data=data, **cfg.model.params)


def test_shipped_student_reads_every_cheap_input(ml_slice):
    """The dense vector and every history the experts read; within the 38x budget of the LM
    teacher (22,812,033 parameters with its head)."""
    torch.manual_seed(0)
    student = _shipped_student(ml_slice)
    assert {"history_long", "history_liked", "history_disliked", "history_long_rating"} <= set(student.embeddings.features)
    assert 22_812_033 / count_params(student) >= 38.0
    # no new item table: every item history shares the candidate's
    tables = {c.name: c.feature_names for c in student.embeddings.ebc.embedding_bag_configs()}
    assert sum("item_id" in f for f in tables.values()) == 1 and {"history_long", "history_liked"} <= set(tables["t_item"])
    student.eval()
    batch = ml_slice.train.batch(torch.arange(32))
    before = student(batch).logits
    batch.dense = batch.dense + 1.0
    assert not torch.allclose(before, student(batch).logits)  # the dense vector is read


def test_spec_without_dense_columns_or_histories_trains(real_data_dir):
    """Only user, item and time: no dense feature, no history (batching used to fail here)."""
    from recsys_committee.data.features.loading import load_spec_data
    from recsys_committee.data.logs.movielens import MOVIELENS_SPEC
    from recsys_committee.data.logs.spec import load_spec

    spec = load_spec(MOVIELENS_SPEC, {"features": {}, "text": None, "max_rows": 3_000})
    data = load_spec_data(spec)
    assert data.num_dense == 0 and not data.table.jagged
    student = _shipped_student(data)
    batch = data.train.batch(torch.arange(64))
    assert batch.dense.shape == (64, 0)
    out = student(batch)
    torch.nn.functional.binary_cross_entropy_with_logits(out.logits, batch.labels).backward()
    assert all(torch.isfinite(p.grad).all() for p in student.parameters() if p.grad is not None)
    assert student.embeddings.features == ["user_id", "item_id"]


@pytest.mark.parametrize("name", ["student", "expert_dlrm", "expert_din_dcn"])
def test_user_dropout_hides_the_user_id_in_training_only(ml_slice, name):
    """P = 1: a training forward cannot tell users apart by id (every row's user embedding is a
    fresh untrained-scale draw); in eval mode nothing is dropped and the id is read again."""
    torch.manual_seed(0)
    model = build_model(name, ml_slice.cardinalities, ml_slice.num_dense, data=ml_slice, user_dropout=1.0)
    batch = ml_slice.train.batch(torch.arange(32))
    other = ml_slice.train.batch(torch.arange(32))
    users = other.sparse["user_id"][0]
    other.sparse["user_id"] = ((users + 1) % ml_slice.cardinalities["user_id"], other.sparse["user_id"][1])
    model.train()
    torch.manual_seed(1)
    a = model(batch).logits
    torch.manual_seed(1)
    assert torch.allclose(a, model(other).logits)  # the id is not read
    model.eval()
    assert not torch.allclose(model(batch).logits, model(other).logits)  # eval reads it
    with pytest.raises(Exception, match="user_dropout must be in"):
        build_model(name, ml_slice.cardinalities, ml_slice.num_dense, data=ml_slice, user_dropout=1.5)
