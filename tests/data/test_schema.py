from pathlib import Path

import polars as pl
import pytest

from recsys_committee.data.logs.movielens import load_movielens, movielens_spec
from recsys_committee.data.logs.reader import read_rows
from recsys_committee.data.logs.schema import DataValidationError

# MovieLens-shaped files through configs/data/ml-100k.yaml: the spec reader's checks


def read_movielens(root, name="ml-100k"):
    return read_rows(movielens_spec(root, name))


def _rewrite(path: Path, transform) -> None:
    lines = path.read_text().splitlines()
    path.write_text("\n".join(transform(lines)) + "\n")


def test_tiny_fixture_reads(tiny_dir):
    data = load_movielens(tiny_dir, "ml-tiny")
    assert (data.raw.inter.height, data.raw.users.height, data.raw.items.height) == (10, 3, 4)
    assert data.raw.inter["rating"].dtype == pl.Float64


def test_real_row_counts(real_data_dir):
    data = load_movielens(real_data_dir)
    assert (data.raw.inter.height, data.raw.users.height, data.raw.items.height) == (100_000, 943, 1_682)


def test_missing_column_names_file_and_column(tiny_dir):
    _rewrite(tiny_dir / "ml-tiny.inter", lambda ls: ["\t".join(l.split("\t")[:3]) for l in ls])
    with pytest.raises(DataValidationError, match=r"ml-tiny\.inter.*no column 'timestamp'.*columns\.time"):
        read_movielens(tiny_dir, "ml-tiny")


def test_wrong_type_names_column(tiny_dir):
    _rewrite(tiny_dir / "ml-tiny.inter", lambda ls: ls[:1] + ["1\t1\tfive\t100"] + ls[2:])
    with pytest.raises(DataValidationError, match=r"ml-tiny\.inter.*'rating'.*numeric.*five"):
        read_movielens(tiny_dir, "ml-tiny")


def test_unknown_user_id_out_of_range(tiny_dir):
    _rewrite(tiny_dir / "ml-tiny.inter", lambda ls: ls + ["99\t1\t3\t700"])
    with pytest.raises(DataValidationError, match=r"'user_id'.*not in .*ml-tiny\.user.*99"):
        read_movielens(tiny_dir, "ml-tiny")


def test_unknown_item_id_out_of_range(tiny_dir):
    _rewrite(tiny_dir / "ml-tiny.inter", lambda ls: ls + ["1\t77\t3\t700"])
    with pytest.raises(DataValidationError, match=r"'item_id'.*not in .*ml-tiny\.item.*77"):
        read_movielens(tiny_dir, "ml-tiny")


def test_empty_file(tiny_dir):
    (tiny_dir / "ml-tiny.inter").write_text("")
    with pytest.raises(DataValidationError, match=r"ml-tiny\.inter: not a readable table"):
        read_movielens(tiny_dir, "ml-tiny")


def test_header_only_file(tiny_dir):
    _rewrite(tiny_dir / "ml-tiny.inter", lambda ls: ls[:1])
    with pytest.raises(DataValidationError, match="no rows"):
        read_movielens(tiny_dir, "ml-tiny")


def test_parquet_with_missing_column(tiny_dir):
    frame = pl.read_csv(tiny_dir / "ml-tiny.inter", separator="\t")
    frame = frame.rename({c: c.split(":")[0] for c in frame.columns}).drop("rating")
    frame.write_parquet(tiny_dir / "ml-tiny.inter.parquet")
    with pytest.raises(DataValidationError, match=r"ml-tiny\.inter\.parquet.*no column 'rating'"):
        read_movielens(tiny_dir, "ml-tiny")


def test_corrupt_parquet(tiny_dir):
    (tiny_dir / "ml-tiny.inter.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataValidationError, match="ml-tiny.inter.parquet: not a readable table"):
        read_movielens(tiny_dir, "ml-tiny")
