"""The data-backed tests' one decision on missing data: skip by default, fail under ``make test``
(``DD_REQUIRE_DATA=1``), naming the missing file and the fix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from needs_data import REQUIRE_VAR, missing_data, require_files

ROOT = Path(__file__).resolve().parents[1]


def test_missing_data_fails_under_the_variable_and_names_the_file_and_the_fix(tmp_path: Path, monkeypatch) -> None:
    absent = tmp_path / "nowhere" / "ml-100k.inter"
    monkeypatch.setenv(REQUIRE_VAR, "1")
    with pytest.raises(pytest.fail.Exception) as failed:
        missing_data(absent, "real MovieLens-100K")
    message = str(failed.value)
    assert str(absent) in message and "make data" in message and "real MovieLens-100K" in message
    with pytest.raises(pytest.fail.Exception, match=re.escape(str(absent))):
        require_files("real MovieLens-100K", absent)


@pytest.mark.parametrize("value", [None, "", "0"])
def test_missing_data_skips_without_the_variable(tmp_path: Path, monkeypatch, value) -> None:
    absent = tmp_path / "nowhere" / "train-images-idx3-ubyte"
    if value is None:
        monkeypatch.delenv(REQUIRE_VAR, raising=False)
    else:
        monkeypatch.setenv(REQUIRE_VAR, value)
    with pytest.raises(pytest.skip.Exception) as skipped:
        missing_data(absent, "Fashion-MNIST")
    assert str(absent) in str(skipped.value) and "make data" in str(skipped.value)


def test_require_files_passes_when_present_and_names_the_first_missing_one(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(REQUIRE_VAR, "1")
    present = tmp_path / "a.inter"
    present.write_text("x")
    assert require_files("data", present) is None  # nothing raised
    first, second = tmp_path / "b.user", tmp_path / "c.item"
    with pytest.raises(pytest.fail.Exception) as failed:
        require_files("data", present, first, second)
    assert str(first) in str(failed.value) and str(second) not in str(failed.value)


def test_make_test_targets_require_the_data() -> None:
    """``make test`` and ``make test-all`` fetch the data, then run pytest with DD_REQUIRE_DATA=1."""
    makefile = (ROOT / "Makefile").read_text()
    for target in ("test", "test-all"):
        recipe = re.search(rf"^{re.escape(target)}:[^\n]*\n((?:\t[^\n]*\n)+)", makefile, re.M)
        assert recipe is not None, target
        assert "$(DATA_STAMP)" in recipe.group(0), target
        pytest_lines = [line for line in recipe.group(1).splitlines() if "pytest" in line]
        assert pytest_lines and all(f"{REQUIRE_VAR}=1 " in line for line in pytest_lines), (target, pytest_lines)


def test_no_test_skips_on_missing_data_by_itself() -> None:
    """A data-backed test goes through ``needs_data`` (which fails under make test), never a bare skip."""
    offenders = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        if path.name in ("needs_data.py", Path(__file__).name):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "pytest.skip(" in line and re.search(r"fetch|make data|not found|weights", line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}")
    assert offenders == []
