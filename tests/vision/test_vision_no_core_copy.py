"""The vision side reuses the committee core: it defines no QA module, gate or loss of its own."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "vision_committee"
CORE_WORDS = ("question", "answer", "qa", "gate", "loss", "committee", "distil")
CORE_REGISTRARS = ("register_loss", "register_gate", "register_method")


def _sources() -> dict[str, ast.Module]:
    return {p.name: ast.parse(p.read_text()) for p in sorted(PACKAGE.glob("*.py"))}


def test_no_class_or_function_of_the_core_is_redefined() -> None:
    offenders = []
    for name, tree in _sources().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(w in node.name.lower() for w in CORE_WORDS):
                offenders.append(f"{name}: class {node.name}")
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in CORE_REGISTRARS:
                offenders.append(f"{name}: calls {node.func.id if isinstance(node.func, ast.Name) else node.func.attr}")
            if isinstance(node, (ast.Attribute, ast.Name)) and getattr(node, "id", getattr(node, "attr", "")) in CORE_REGISTRARS:
                offenders.append(f"{name}: uses {getattr(node, 'id', getattr(node, 'attr', ''))}")
    assert not offenders, offenders


def test_the_core_is_imported_from_recsys_committee() -> None:
    imported = {node.module for tree in _sources().values() for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert "recsys_committee.committee" in imported
    assert "recsys_committee.committee.teacher" in imported
    assert not any(m.startswith("vision_committee.committee") for m in imported)
