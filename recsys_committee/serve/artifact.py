"""``recsys-committee export``: a model directory -> a serving artifact folder; and its loader.

The folder (``ARTIFACT_DIR``):
  * ``student.ts`` or ``student_int8.ts``: the TorchScript program (``serve/program.py``); it
    also carries, as TorchScript extra files, ``artifact.json``, ``features.json`` and
    ``data_spec.json``, so the one file is self-contained (feature order, vocabularies, dense
    statistics, the spec that featurises raw rows);
  * ``artifact.json``: format, the program's file name and sha256, the KJT feature order, the
    tables, the quantisation, the source model's sha256;
  * ``probe.safetensors``: a probe batch (KJT values/lengths) and the outputs the exported
    model gave for it at export time. Loading re-runs it: a program that was replaced, or that
    belongs to another export, fails with one line instead of serving wrong scores.
  * ``data_spec.json`` / ``features.json``: the model directory's, so ``score --model
    ARTIFACT_DIR`` featurises raw rows as training did.

Why a probe and a sha256 both: the sha256 catches a corrupt file, the probe a program that is
intact but not the one this ``artifact.json`` describes (a copied-in program of another model).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from recsys_committee.data.model_input.model_data import FEATURES_FILE, SPEC_FILE, model_file
from recsys_committee.errors import UserError
from recsys_committee.files import file_sha256
from recsys_committee.serve.program import ServingStudent, inference_tables, script, script_by_size
from recsys_committee.train.out_dir import check_out

FORMAT = "recsys-committee-artifact/1"
MANIFEST = "artifact.json"
PROBE = "probe.safetensors"
PROGRAMS = {"none": "student.ts", "int8": "student_int8.ts"}
ARTIFACT_FILES = (MANIFEST, PROBE, SPEC_FILE, FEATURES_FILE, *PROGRAMS.values())
# fp32 rows in the fused lookup: the same sums in another order (~1e-7). An int8 row is
# dequantised from one fp16 scale and bias: probabilities move by ~1e-3 at most.
PROBE_TOLERANCE = {"none": 1e-6, "int8": 5e-3}
PROBE_ROWS = 64
# fp32 table lookups: "auto" (the default) runs the fused lookup up to FUSED_MAX_BATCH rows and the
# per-table one above; "per_table" / "fused" always run that one. int8 tables are always fused.
LOOKUPS = ("auto", "per_table", "fused")
# Where the fused lookup stops being the faster one for the ML-100K student on one CPU thread
# (benchmarks/serving.py measures both lookups by batch size and records the crossover in
# serving.json): up to ~10 rows the one fused call wins (batch 1: ~0.26 against ~0.39 ms), from
# 12-16 rows on the per-table calls do, and by 2x at 128 rows and more.
FUSED_MAX_BATCH = 8


class ArtifactError(UserError):
    """A missing, corrupt or mismatched artifact."""


def is_artifact(path: Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def table_facts(program: ServingStudent) -> dict[str, dict[str, Any]]:
    """Rows, dimension and features of each embedding table (from the EBC's own configs)."""
    return {c.name: {"rows": c.num_embeddings, "dim": c.embedding_dim, "features": list(c.feature_names)} for c in program.ebc.embedding_bag_configs()}


def dense_cost(program: ServingStudent) -> tuple[int, list[int]]:
    """Multiply-adds x 2 per row of the dense part (cross layers, MLP, head: every matrix outside
    the tables) and the widest matrix's [in, out]: what a compute bound is measured against."""
    flops, widest = 0, [0, 0]
    for name, p in program.named_parameters():
        if p.dim() == 2 and not name.startswith("ebc."):
            flops += 2 * p.numel()
            if p.numel() > widest[0] * widest[1]:
                widest = [int(p.shape[1]), int(p.shape[0])]
    return flops, widest


def weight_bytes(program: torch.nn.Module) -> dict[str, int]:
    """Bytes of the tables (with int8: rows + their scale/bias) and of the dense layers (a
    by-batch-size program holds both lookups' tables and two copies of the dense layers)."""
    sizes = {"tables": 0, "dense": 0}
    for name, t in [*program.named_parameters(), *program.named_buffers()]:
        sizes["tables" if "ebc" in name.split(".") else "dense"] += t.numel() * t.element_size()
    return sizes


def probe_batch(program: ServingStudent, rows: int = PROBE_ROWS, seed: int = 0) -> tuple[KeyedJaggedTensor, torch.Tensor]:
    """A deterministic batch with ids inside every table and bags of 0-3 ids (empty bags too)."""
    g = torch.Generator().manual_seed(seed)
    rows_of = {f: t["rows"] for t in table_facts(program).values() for f in t["features"]}
    lengths = torch.randint(0, 4, (len(program.features), rows), generator=g)
    lengths[0] = 1  # the first feature (the user) is single-valued, as in every request
    values = [torch.randint(0, rows_of[f], (int(lengths[i].sum()),), generator=g) for i, f in enumerate(program.features)]
    kjt = KeyedJaggedTensor.from_lengths_sync(keys=list(program.features), values=torch.cat(values), lengths=lengths.flatten())
    return kjt, torch.randn(rows, program.num_dense, generator=g)  # standardised dense values


def export_artifact(model_dir: Path, out: Path, quantize: str = "none", overwrite: bool = False, fused_tables: bool = False,
                    lookup: str = "auto", fused_max_batch: int = FUSED_MAX_BATCH) -> dict[str, Any]:
    """Build the program from the model directory's student, script it, check the scripted
    program against the eager student on the probe, and write the folder (files written to a
    temporary folder first: a failed export leaves OUT as it was).

    fp32 tables (``lookup``): ``auto``, the default, holds two programs and runs TorchRec's
    inference EBC (one fused lookup for all tables: about half the latency at batch 1) up to
    ``fused_max_batch`` rows and the training EBC (one lookup per table: the best throughput at
    large batches on CPU) above; ``per_table`` is the training EBC alone (outputs bit-identical
    to the student); ``fused`` (also ``fused_tables``) the inference EBC alone. int8 tables are
    always fused. See ``benchmarks/serving.py`` for the measurements."""
    from safetensors.torch import save_file

    from recsys_committee.models.trained import load_trained_model

    if quantize not in PROGRAMS:
        raise ArtifactError(f"--quantize {quantize!r}: expected one of {sorted(PROGRAMS)}")
    lookup = "fused" if fused_tables else lookup.replace("-", "_")
    if lookup not in LOOKUPS:
        raise ArtifactError(f"--lookup {lookup!r}: expected one of {list(LOOKUPS)}")
    if quantize == "int8" and lookup == "per_table":
        raise ArtifactError("--quantize int8 stores the tables in the fused inference lookup; --lookup per-table is fp32 only")
    if fused_max_batch < 1:
        raise ArtifactError(f"--fused-max-batch must be a positive row count, got {fused_max_batch}")
    model_dir, out = Path(model_dir), Path(out)
    check_out(out, overwrite)
    source = model_file(model_dir)
    eager = ServingStudent(load_trained_model(source).eval())
    lookup = "fused" if quantize == "int8" else lookup
    kjt, dense = probe_batch(eager)
    with torch.no_grad():
        expected_fp32 = eager(kjt, dense)
        if lookup == "auto":
            scripted = script_by_size(eager, fused_max_batch)
        else:
            scripted = script(inference_tables(eager, quantize) if lookup == "fused" else eager)
        got = scripted(kjt, dense)
        # every program the artifact may run, on the probe: both of a by-size program
        outputs = [scripted.small(kjt, dense), scripted.large(kjt, dense)] if lookup == "auto" else [got]
    gap = max(float((o - expected_fp32).abs().max()) for o in outputs)
    if gap > PROBE_TOLERANCE[quantize]:
        raise ArtifactError(f"the exported program's outputs differ from the student's by {gap:.2e} (> {PROBE_TOLERANCE[quantize]:g}) on the probe batch")
    flops, widest = dense_cost(eager)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "program": PROGRAMS[quantize],
        "quantize": quantize,
        "table_lookup": {"auto": f"fused (TorchRec inference EBC) up to {fused_max_batch} rows a call, per table (the training EBC) above",
                         "fused": "fused (TorchRec inference EBC)", "per_table": "per table (the training EBC)"}[lookup],
        "lookup": lookup,
        **({"fused_max_batch": fused_max_batch} if lookup == "auto" else {}),
        "inputs": {"features": "KeyedJaggedTensor with keys in 'features' order, one bag per row each", "dense": "float [B, num_dense], standardised with features.json's dense_mean / dense_std" + ("" if not eager.reads_dense else " (read by the student)")},
        "output": "click probability [B]",
        "features": eager.features,
        "tables": table_facts(eager),
        "params": sum(p.numel() for p in eager.parameters()),
        "dense_flops_per_row": flops,
        "widest_matrix": widest,
        "source": {"model_file": str(source.resolve()), "sha256": file_sha256(source)},
        "probe_max_abs_diff_vs_fp32_student": gap,
    }
    extra = {MANIFEST: json.dumps({k: manifest[k] for k in ("format", "quantize", "lookup", "features", "tables")})}
    for name in (SPEC_FILE, FEATURES_FILE):
        if (model_dir / name).is_file():
            extra[name] = (model_dir / name).read_text()
    staging = out.with_name(out.name + ".export-tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    program_path = staging / PROGRAMS[quantize]
    torch.jit.save(scripted, str(program_path), _extra_files=extra)
    save_file({"values": kjt.values(), "lengths": kjt.lengths(), "dense": dense, "expected": got.contiguous()}, str(staging / PROBE))
    for name in (SPEC_FILE, FEATURES_FILE):
        if name in extra:
            (staging / name).write_text(extra[name])
    manifest["weight_bytes"] = weight_bytes(scripted)
    manifest["program_sha256"] = file_sha256(program_path)
    manifest["program_bytes"] = program_path.stat().st_size
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
    out.mkdir(parents=True, exist_ok=True)
    for name in ARTIFACT_FILES:  # --overwrite: the previous artifact's files go, nothing else in OUT
        if (out / name).exists():
            (out / name).unlink()
    for path in staging.iterdir():
        path.replace(out / path.name)
    staging.rmdir()
    return manifest


@dataclass
class Artifact:
    """A loaded, checked artifact: the program, its manifest and folder."""

    program: torch.jit.ScriptModule
    manifest: dict[str, Any]
    folder: Path

    @property
    def features(self) -> list[str]:
        return list(self.manifest["features"])

    def __call__(self, kjt: KeyedJaggedTensor, dense: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.program(kjt, dense)

    def predict(self, dataset: Any, batch_size: int = 8192) -> torch.Tensor:
        """Probabilities for every row of a ``RecDataset`` (the batches' KJT in the program's
        feature order), in row order."""
        rows = torch.arange(len(dataset))
        outs = []
        for i in range(0, rows.numel(), batch_size):
            batch = dataset.batch(rows[i : i + batch_size])
            if i == 0:  # every batch of a dataset has the same columns
                missing = [f for f in self.features if f not in batch.sparse]
                if missing:
                    raise ArtifactError(f"{self.folder}: the data has no feature(s) {missing} that the artifact reads")
            outs.append(self(batch.kjt(self.features), batch.dense))
        return torch.cat(outs) if outs else torch.zeros(0)


def load_artifact(folder: Path, check: bool = True) -> Artifact:
    """Load ``folder``'s program after checking its sha256, and (``check``) re-run the probe."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{folder}: no {MANIFEST}: not an artifact folder written by 'recsys-committee export'") from None
    except ValueError as exc:
        raise ArtifactError(f"{folder / MANIFEST} is corrupt (not JSON: {exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactError(f"{folder / MANIFEST}: not a {FORMAT} manifest")
    program_path = folder / str(manifest.get("program"))
    if not program_path.is_file():
        raise ArtifactError(f"{folder}: the program {manifest.get('program')!r} named in {MANIFEST} is missing")
    if file_sha256(program_path) != manifest.get("program_sha256"):
        raise ArtifactError(f"{program_path}: sha256 does not match {MANIFEST} (the program is corrupt or was replaced)")
    extra = {MANIFEST: ""}
    try:
        program = torch.jit.load(str(program_path), _extra_files=extra)
    except Exception as exc:
        raise ArtifactError(f"{program_path}: not a loadable TorchScript program ({type(exc).__name__})") from exc
    embedded = json.loads(extra[MANIFEST] or "{}")
    if embedded.get("features") != manifest.get("features") or embedded.get("quantize") != manifest.get("quantize"):
        raise ArtifactError(f"{program_path}: the program was exported with features {embedded.get('features')} / quantize "
                            f"{embedded.get('quantize')!r}, but {MANIFEST} says {manifest.get('features')} / {manifest.get('quantize')!r}: mismatched artifact")
    artifact = Artifact(program.eval(), manifest, folder)
    if check:
        _check_probe(artifact)
    return artifact


def _check_probe(artifact: Artifact) -> None:
    from safetensors.torch import load_file

    path = artifact.folder / PROBE
    try:
        probe = load_file(str(path))
    except Exception as exc:
        raise ArtifactError(f"{path}: missing or corrupt ({type(exc).__name__})") from exc
    kjt = KeyedJaggedTensor.from_lengths_sync(keys=artifact.features, values=probe["values"], lengths=probe["lengths"])
    try:
        got = artifact(kjt, probe["dense"])
    except Exception as exc:
        raise ArtifactError(f"{artifact.folder}: the program fails on its own probe batch ({type(exc).__name__}): mismatched artifact") from exc
    gap = float((got - probe["expected"]).abs().max()) if got.shape == probe["expected"].shape else float("inf")
    if artifact.manifest.get("lookup") == "auto":  # the probe's rows take one branch: run the other too
        for branch in ("small", "large"):
            try:
                with torch.no_grad():
                    out = getattr(artifact.program, branch)(kjt, probe["dense"])
            except Exception as exc:
                raise ArtifactError(f"{artifact.folder}: the program's {branch}-batch lookup fails on the probe batch ({type(exc).__name__}): mismatched artifact") from exc
            gap = max(gap, float((out - probe["expected"]).abs().max()) if out.shape == got.shape else float("inf"))
    if gap > PROBE_TOLERANCE["none"]:
        raise ArtifactError(f"{artifact.folder}: the program's outputs on the probe batch differ from those recorded at export by {gap:.2e}: mismatched artifact")


def describe(manifest: dict[str, Any], folder: Optional[Path] = None) -> dict[str, Any]:
    """What ``export`` prints."""
    keys = ("program", "quantize", "lookup", "table_lookup", "params", "program_bytes", "probe_max_abs_diff_vs_fp32_student")
    return {k: manifest[k] for k in keys} | ({"out": str(folder)} if folder else {})
