"""The vision side reuses the core: it holds only vision code, copies no function of
``recsys_committee`` and imports no TorchRec."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "vision_committee"
CORE_WORDS = ("question", "answer", "qa", "gate", "loss", "committee", "distil")
CORE_REGISTRARS = ("register_loss", "register_gate", "register_method")
# the runner's jobs: a vision function with one of these names is a second copy of it
RUNNER_NAMES = ("fit", "run_train", "run_distill", "build_teachers", "begin_run", "finish_run", "committee_params",
                "batches", "num_batches", "predict", "predict_logits", "count_params", "main_error_path")


def _sources(package: Path) -> dict[str, ast.Module]:
    return {str(p.relative_to(package.parent)): ast.parse(p.read_text()) for p in sorted(package.rglob("*.py"))}


def _bodies(trees: dict[str, ast.Module]) -> dict[str, str]:
    """{ast of a function body (docstring dropped): 'file: name'} for functions of 2+ statements."""
    out = {}
    for name, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body[1:] if node.body and isinstance(node.body[0], ast.Expr) and isinstance(getattr(node.body[0], "value", None), ast.Constant) else node.body
                if len(body) >= 2:
                    out[ast.dump(ast.Module(body=body, type_ignores=[]))] = f"{name}: {node.name}"
    return out


def test_no_class_or_function_of_the_core_is_redefined() -> None:
    offenders = []
    for name, tree in _sources(PACKAGE).items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(w in node.name.lower() for w in CORE_WORDS):
                offenders.append(f"{name}: class {node.name}")
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in RUNNER_NAMES:
                offenders.append(f"{name}: def {node.name} (the core's runner has it)")
            if isinstance(node, (ast.Attribute, ast.Name)) and getattr(node, "id", getattr(node, "attr", "")) in CORE_REGISTRARS:
                offenders.append(f"{name}: uses {getattr(node, 'id', getattr(node, 'attr', ''))}")
    assert not offenders, offenders


def test_no_function_body_is_copied_from_recsys_committee() -> None:
    """A duplicated function is caught whatever it is called: same statements, same AST."""
    core = _bodies(_sources(ROOT / "recsys_committee"))
    copies = [f"{where} == {core[body]}" for body, where in _bodies(_sources(PACKAGE)).items() if body in core]
    assert not copies, copies


def test_the_core_is_imported_from_recsys_committee() -> None:
    imported = {node.module for tree in _sources(PACKAGE).values() for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert "recsys_committee.train.runner" in imported  # the one runner
    assert "recsys_committee.committee.teacher" in imported
    assert not any(m.startswith("vision_committee.committee") for m in imported)


def test_vision_runs_with_torchrec_blocked(tmp_path: Path) -> None:
    """Import every vision module, and train and distil a tiny model end to end, in a process
    where ``import torchrec`` fails: nothing on the vision path may load it."""
    script = f"""
import sys
sys.modules["torchrec"] = None  # any import of torchrec (or a submodule) now raises ImportError
import importlib, pkgutil, torch
import vision_committee
for m in pkgutil.walk_packages(vision_committee.__path__, "vision_committee."):
    if not m.name.endswith("__main__"):
        importlib.import_module(m.name)
from recsys_committee.train.config import load_config
from vision_committee.data import VisionData, VisionSplit
from vision_committee.domain import run_vision_distill, run_vision_train
g = torch.Generator().manual_seed(0)
def split(n, start):
    return VisionSplit(torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g), torch.arange(start, start + n))
data = VisionData(split(64, 0), split(32, 64), split(32, 96))
fast = ["train.epochs=1", "train.progress=false", "train.batch_size=32", "train.eval_batch_size=64", "model.params.widths=[8,8,8]"]
run_vision_train(load_config("{ROOT}/configs/vision/expert_deep.yaml", fast), __import__("pathlib").Path("{tmp_path}/t"), data=data)
teachers = '[{{"name": "t", "kind": "vision_model", "checkpoint": "{tmp_path}/t/model.safetensors", "tap": "stages"}}]'
m = run_vision_distill(load_config("{ROOT}/configs/vision/diverse_distill_dense.yaml", fast + ["teachers=" + teachers]), __import__("pathlib").Path("{tmp_path}/d"), data=data)
assert m["teacher_forwards"]["run"] == 64, m["teacher_forwards"]
print("torchrec loaded:", [k for k in sys.modules if k.startswith("torchrec") and sys.modules[k] is not None])
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "torchrec loaded: []" in done.stdout
