import csv

import pytest
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys_committee.data.features.split import temporal_split


def test_split_sizes_and_order(ml100k):
    assert (len(ml100k.train), len(ml100k.val), len(ml100k.test)) == (80_000, 10_000, 10_000)
    ts = torch.from_numpy(ml100k.table.frame["timestamp"].to_numpy())
    assert ts[ml100k.split.train].max() <= ts[ml100k.split.val].min()
    assert ts[ml100k.split.val].max() <= ts[ml100k.split.test].min()


def test_most_test_users_are_cold(ml100k, real_data_dir):
    """Warm users recomputed from the raw ratings file: the first 80,000 ratings in time are the
    train split, the last 10,000 the test split (docs/METHOD.md: ~85% of test rows are cold)."""
    with open(real_data_dir / "ml-100k.inter", newline="") as f:
        rows = sorted((float(t), int(u), int(i)) for u, i, _, t in list(csv.reader(f, delimiter="\t"))[1:])
    train_users = {u for _, u, _ in rows[:80_000]}
    test_users = [u for _, u, _ in rows[90_000:]]
    assert len(rows) == 100_000 and len(train_users) == 751
    assert ml100k.warm_users().tolist() == sorted(train_users)
    assert sorted(ml100k.test.users.tolist()) == sorted(test_users)
    warm = torch.isin(ml100k.test.users, ml100k.warm_users())
    assert int(warm.sum()) == sum(u in train_users for u in test_users) == 1_418  # 14.2% warm, 85.8% cold


def test_bad_fractions():
    with pytest.raises(ValueError, match="fractions"):
        temporal_split(10, (0.5, 0.5, 0.5))


def test_kjt_shapes_and_lengths(ml_slice):
    rows = torch.tensor([5, 100, 2000, 7])
    batch = ml_slice.train.batch(rows)
    kjt = batch.kjt(["user_id", "history", "genres"])
    assert isinstance(kjt, KeyedJaggedTensor)
    assert kjt.keys() == ["user_id", "history", "genres"]
    assert kjt.stride() == 4
    jt = kjt.to_dict()
    assert jt["user_id"].lengths().tolist() == [1, 1, 1, 1]
    hist_v, hist_o = ml_slice.train.jagged["history"]
    for i, r in enumerate(rows.tolist()):
        assert jt["history"].lengths()[i] == hist_o[r + 1] - hist_o[r]
        assert jt["history"].to_dense()[i].tolist() == hist_v[hist_o[r] : hist_o[r + 1]].tolist()
    assert (jt["history"].lengths() <= 20).all()


def test_subset_equals_direct_batch(ml_slice):
    full = ml_slice.train.batch(torch.arange(50))
    # twice from the same batch (the second reads the column stacks the first one kept), then empty
    for rows in ([3, 10, 42], [0, 1, 2, 3, 49], [7], [49, 3, 3, 0], []):  # unsorted, repeated (padding) rows too
        index = torch.tensor(rows, dtype=torch.long)
        sub = full.subset(index)
        direct = ml_slice.train.batch(index)
        assert list(sub.sparse) == list(direct.sparse)
        for key, (values, lengths) in direct.sparse.items():
            assert torch.equal(sub.sparse[key][0], values) and sub.sparse[key][0].dtype == values.dtype, key
            assert torch.equal(sub.sparse[key][1], lengths) and sub.sparse[key][1].dtype == lengths.dtype, key
        assert torch.equal(sub.labels, direct.labels) and torch.equal(sub.dense, direct.dense)
        assert sub.kjt(list(direct.sparse)).values().tolist() == direct.kjt(list(direct.sparse)).values().tolist()


def test_unknown_feature_in_kjt(ml_slice):
    with pytest.raises(KeyError, match="no sparse feature"):
        ml_slice.train.batch(torch.arange(2)).kjt(["nope"])


def test_epoch_covers_every_row_once(ml_slice):
    seen = torch.cat([b.example_ids for b in ml_slice.val.batches(300, shuffle=True, generator=torch.Generator().manual_seed(0))])
    assert torch.equal(torch.sort(seen).values, ml_slice.val.example_ids)
