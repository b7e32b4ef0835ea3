from pathlib import Path

import polars as pl
import pytest

from recsys_committee.data.schema import DataValidationError, read_movielens


def _rewrite(path: Path, transform) -> None:
    lines = path.read_text().splitlines()
    path.write_text("\n".join(transform(lines)) + "\n")


def test_tiny_fixture_reads(tiny_dir):
    raw = read_movielens(tiny_dir, "ml-tiny")
    assert (raw.inter.height, raw.users.height, raw.items.height) == (10, 3, 4)
    assert raw.inter["rating"].dtype == pl.Float64


def test_real_row_counts(real_data_dir):
    raw = read_movielens(real_data_dir)
    assert (raw.inter.height, raw.users.height, raw.items.height) == (100_000, 943, 1_682)


def test_missing_column_names_file_and_column(tiny_dir):
    _rewrite(tiny_dir / "ml-tiny.inter", lambda ls: ["\t".join(l.split("\t")[:3]) for l in ls])
    with pytest.raises(DataValidationError, match=r"ml-tiny\.inter.*missing column.*timestamp"):
        read_movielens(tiny_dir, "ml-tiny")


def test_wrong_type_names_column(tiny_dir):
    _rewrite(tiny_dir / "ml-tiny.inter", lambda ls: ls[:1] + ["1\t1\tfive\t100"] + ls[2:])
    with pytest.raises(DataValidationError, match=r"ml-tiny\.inter.*'rating'.*five"):
        read_movielens(tiny_dir, "ml-tiny")


def test_duplicate_rows_refused(tiny_dir):
    _rewrite(tiny_dir / "ml-tiny.inter", lambda ls: ls + [ls[1]])
    with pytest.raises(DataValidationError, match=r"duplicate rows on \['user_id', 'item_id', 'timestamp'\]"):
        read_movielens(tiny_dir, "ml-tiny")


def test_unknown_user_id_out_of_range(tiny_dir):
    _rewrite(tiny_dir / "ml-tiny.inter", lambda ls: ls + ["99\t1\t3\t700"])
    with pytest.raises(DataValidationError, match=r"'user_id'.*not in .*ml-tiny\.user.*99"):
        read_movielens(tiny_dir, "ml-tiny")


def test_unknown_item_id_out_of_range(tiny_dir):
    _rewrite(tiny_dir / "ml-tiny.inter", lambda ls: ls + ["1\t77\t3\t700"])
    with pytest.raises(DataValidationError, match=r"'item_id'.*not in .*ml-tiny\.item.*77"):
        read_movielens(tiny_dir, "ml-tiny")


def test_rating_out_of_range(tiny_dir):
    _rewrite(tiny_dir / "ml-tiny.inter", lambda ls: ls + ["1\t4\t9\t700"])
    with pytest.raises(DataValidationError, match="rating"):
        read_movielens(tiny_dir, "ml-tiny")


def test_empty_file(tiny_dir):
    (tiny_dir / "ml-tiny.inter").write_text("")
    with pytest.raises(DataValidationError, match=r"ml-tiny\.inter: file is empty"):
        read_movielens(tiny_dir, "ml-tiny")


def test_header_only_file(tiny_dir):
    _rewrite(tiny_dir / "ml-tiny.inter", lambda ls: ls[:1])
    with pytest.raises(DataValidationError, match="no rows"):
        read_movielens(tiny_dir, "ml-tiny")


def test_parquet_with_missing_column(tiny_dir):
    frame = pl.read_csv(tiny_dir / "ml-tiny.inter", separator="\t")
    frame = frame.rename({c: c.split(":")[0] for c in frame.columns}).drop("rating")
    frame.write_parquet(tiny_dir / "ml-tiny.inter.parquet")
    with pytest.raises(DataValidationError, match=r"ml-tiny\.inter\.parquet.*missing column.*rating"):
        read_movielens(tiny_dir, "ml-tiny")


def test_corrupt_parquet(tiny_dir):
    (tiny_dir / "ml-tiny.inter.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataValidationError, match="not a readable parquet"):
        read_movielens(tiny_dir, "ml-tiny")
