"""README and benchmarks/README.md against the repository: every command parses with the CLI it
names (no unknown flag, no missing file, no unknown config key), and every number in their
tables is the one in the results file the row cites.

Why: a newcomer copies the README's commands verbatim and believes its tables; both drift
silently when flags, configs or results change. The commands are parsed, not run (a training
run is minutes), except ``--help`` of the benchmark scripts, which must list every flag used.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
READMES = [ROOT / "README.md", ROOT / "benchmarks" / "README.md"]
REC_CLI = ".venv/bin/recsys-committee"
VISION_CLI = ".venv/bin/python -m vision_committee"


def commands(text: str) -> list[str]:
    """Indented code lines that run something, with ``\\`` continuations joined."""
    lines, out, pending = text.splitlines(), [], ""
    for line in lines:
        if not line.startswith("    "):
            pending = ""
            continue
        body = line.strip()
        if pending:
            body = pending + " " + body
            pending = ""
        if body.endswith("\\"):
            pending = body[:-1].strip()
            continue
        if body.startswith((REC_CLI, VISION_CLI, "make ", "python benchmarks/", "bash benchmarks/", ".venv/bin/python benchmarks/")):
            out.append(body)
    return out


def readme_commands() -> list[str]:
    return commands((ROOT / "README.md").read_text())


def check_run_command(argv: list[str], parser, load) -> None:
    """Parse ``argv`` with the CLI's own parser (an unknown flag exits 2), check the files it
    names exist (outputs under runs/ may come from an earlier command), and load the config
    with its overrides (an unknown key raises)."""
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        raise AssertionError(f"the CLI refuses: {' '.join(argv)}") from exc
    for flag in ("config", "teachers", "data", "model", "input", "history"):
        value = getattr(args, flag, None)
        if value and not value.startswith("runs/"):
            assert (ROOT / value).exists(), f"--{flag} {value} does not exist ({' '.join(argv)})"
    if getattr(args, "config", None):
        load(args)


@pytest.mark.parametrize("page", ["README.md", "docs/DATA_SPEC.md", "docs/TRAINING.md", "docs/SERVING.md", "docs/CLUSTER.md"])
def test_documented_commands_parse_and_name_existing_files(page, monkeypatch):
    from recsys_committee import cli as rec_cli
    from recsys_committee.train.config import load_config
    from vision_committee import cli as vision_cli

    monkeypatch.chdir(ROOT)
    found = commands((ROOT / page).read_text())
    assert sum(c.startswith(REC_CLI) for c in found) >= 2, found
    if page == "README.md":
        assert sum(c.startswith(REC_CLI) for c in found) >= 8 and any(c.startswith(VISION_CLI) for c in found), found
    makefile = (ROOT / "Makefile").read_text()
    for command in found:
        words = shlex.split(command)
        if command.startswith(REC_CLI):
            check_run_command(words[1:], rec_cli.build_parser(), rec_cli._load)
        elif command.startswith(VISION_CLI):
            check_run_command(words[3:], vision_cli.build_parser(), lambda a: load_config(a.config, list(a.overrides)))
        elif words[0] == "make":
            assert re.search(rf"^{re.escape(words[1])}:", makefile, re.M), f"no make target '{words[1]}'"


def test_benchmark_commands_in_the_readmes_use_existing_flags():
    """``python benchmarks/X.py --flag``: the script exists and declares the flag (read from its
    ``add_argument`` calls: running ``--help`` would import torch and the package for each)."""
    wanted: dict[Path, set[str]] = {}
    for command in commands("\n".join(path.read_text() for path in READMES)):
        words = shlex.split(command.split("&&")[0]) if "benchmarks/" in command else []
        if not words or words[0] not in ("python", ".venv/bin/python", "bash"):
            continue
        script = ROOT / words[1]
        assert script.is_file(), command
        wanted.setdefault(script, set()).update(w for w in words[2:] if w.startswith("--"))
    assert len(wanted) >= 3, f"only {len(wanted)} benchmark scripts found in the READMEs' commands"
    for script, flags in wanted.items():
        text = script.read_text()  # and the benchmarks modules it builds its parser from (sweep.py)
        text += "".join((script.parent / f"{m}.py").read_text() for m in re.findall(r"^from (\w+) import", text, re.M) if (script.parent / f"{m}.py").is_file())
        declared = set(re.findall(r"add_argument\(\s*[\"'](--[\w-]+)", text))
        assert script.suffix != ".py" or declared, f"{script.name} declares no flag"
        for flag in sorted(flags):
            assert flag in declared, f"{script.name} has no {flag}"


def test_readme_data_spec_snippet_is_the_shipped_file():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"\n\n((?:    .*\S.*\n)+)\nIt is `(configs/data/[^`]+)`", text)
    assert block is not None, "the spec snippet must be followed by 'It is `configs/data/...`'"
    snippet = yaml.safe_load("\n".join(line[4:] for line in block.group(1).splitlines()))
    assert snippet == yaml.safe_load((ROOT / block.group(2)).read_text())


def test_commands_reader_joins_continuations_and_skips_prose():
    text = "intro\n\n    .venv/bin/recsys-committee train \\\n        --config a.yaml --out runs/x\n    not a command\n\nprose .venv/bin/recsys-committee\n"
    assert commands(text) == [".venv/bin/recsys-committee train --config a.yaml --out runs/x"]


# ----------------------------------------------------------------------------- cited numbers
def tables(text: str) -> list[list[list[str]]]:
    """Markdown tables as rows of cells (header first, the --- row dropped)."""
    found, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                current.append(cells)
        elif current:
            found.append(current)
            current = []
    return found


def lookup(source: str):
    """``results/FILE.json: a.b.c`` -> that value (paths relative to benchmarks/)."""
    file, _, dotted = source.partition(":")
    node = json.loads((ROOT / "benchmarks" / file.strip()).read_text())
    for key in dotted.strip().split("."):
        node = node[int(key)] if isinstance(node, list) else node[key]
    return node


def shown(value: float, cell: str) -> str:
    """``value`` printed the way ``cell`` prints a number (decimals, percent, thousands)."""
    number = cell.replace("**", "").strip()
    percent = number.endswith("%")
    digits = number.rstrip("%").replace(",", "")
    decimals = len(digits.split(".")[1]) if "." in digits else 0
    scaled = value * 100 if percent else value
    text = f"{scaled:,.{decimals}f}" if "," in number else f"{scaled:.{decimals}f}"
    return text + ("%" if percent else "")


def cited_rows(path: Path) -> list[tuple[str, str]]:
    """(value cell, source cell) of every table row; a table with a number and no ``source``
    column fails: every number in the READMEs' tables comes from a results file."""
    rows = []
    for table in tables(path.read_text()):
        header = [h.lower() for h in table[0]]
        has_number = any(re.search(r"\d", c) for row in table[1:] for c in row)
        assert "source" in header or not has_number, f"{path.name}: a table with numbers and no source column: {table[0]}"
        if "source" in header:
            value_col, source_col = header.index("value"), header.index("source")
            rows += [(row[value_col], row[source_col]) for row in table[1:]]
    return rows


@pytest.mark.parametrize("readme", READMES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_cited_number_matches_its_results_file(readme):
    rows = cited_rows(readme)
    assert len(rows) >= 5, f"{readme.name} cites fewer than 5 figures"
    for cell, source in rows:
        value = lookup(source)
        assert isinstance(value, (int, float)), f"{source} is not a number: {value!r}"
        assert shown(float(value), cell) == cell.replace("**", "").strip(), f"{readme.name}: '{cell}' but {source} = {value}"


def test_number_check_catches_a_wrong_figure():
    assert shown(0.75849, "0.7585") == "0.7585" and shown(0.75849, "0.7584") != "0.7584"
    assert shown(-0.5667, "-57%") == "-57%" and shown(596345, "596,345") == "596,345"
    assert tables("| what | value | source |\n|---|---:|---|\n| a | 1 | x |\n") == [[["what", "value", "source"], ["a", "1", "x"]]]


def test_every_results_file_a_readme_cites_records_its_commit():
    """Results files cited in a README say which commit (and configs) measured them."""
    for readme in READMES:
        for _, source in cited_rows(readme):
            file, _, dotted = source.partition(":")
            payload = json.loads((ROOT / "benchmarks" / file.strip()).read_text())
            section = payload.get(dotted.strip().split(".")[0], {})  # a file of several sections (gap.json: rec, vision)
            found = payload.get("provenance") or (section.get("provenance") if isinstance(section, dict) else None)
            assert found and found.get("commit") and found.get("configs"), f"{source}: no provenance (commit, configs)"
