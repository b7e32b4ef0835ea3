"""Typed run configs from plain YAML, with ``key.sub=value`` overrides.

Why: RecBole's order (defaults < file < command line) without magic: no YAML tags that import
or call code, unknown keys refused with the close matches, values checked against the
dataclass field types so ``train.epochs=ten`` fails here and not in epoch one.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, TypeVar, Union

import yaml

from recsys_committee.errors import ConfigError

T = TypeVar("T")


@dataclass
class DataConfig:
    """Where a run's data comes from. Every key is optional and the domain fills what is unset
    (why: the core knows no dataset; each domain has its own default source).

    ``spec``: a data-spec YAML or a prepared folder (``--data``; recommendation). ``dataset``: a
    domain's built-in reader (vision: ``fashion_mnist``). ``root`` / ``name``: where that
    reader's files are. The rest override the source's own settings when set."""

    spec: Optional[str] = None
    dataset: Optional[str] = None
    root: Optional[str] = None
    name: Optional[str] = None
    history_len: Optional[int] = None
    long_history_len: Optional[int] = None
    fractions: Optional[list[float]] = None  # train, val, test shares
    max_rows: Optional[int] = None  # keep the first rows in time (real-data slices for tests)
    transfer_per_row: Optional[int] = None  # overrides the spec's transfer.sampled.per_row (0: no sampled transfer rows)
    # a prepared dataset (--data DATASET_DIR) read in memory as a seeded sample: this many train
    # rows, val / test rows in proportion (a model trained on a sample: the LM teacher at scale)
    sample_rows: Optional[int] = None
    sample_seed: int = 0

    def __post_init__(self) -> None:
        if self.fractions is not None and (len(self.fractions) != 3 or any(not f > 0 for f in self.fractions) or abs(sum(self.fractions) - 1.0) > 1e-6):
            raise ConfigError(f"data.fractions must be three positive shares (train, val, test) summing to 1, got {self.fractions}")


@dataclass
class ModelConfig:
    name: str = "student"
    params: dict[str, Any] = field(default_factory=dict)  # checked against the builder's signature


SCHEDULES = ("constant", "cosine")


@dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 0.0
    # Embedding tables: "rowwise_adagrad" | "adagrad" | "sgd" run as TorchRec-style fused
    # optimisers in backward (what DMP fuses into FBGEMM kernels); "dense" = same Adam as the rest.
    embedding_optimizer: str = "rowwise_adagrad"
    embedding_lr: float = 0.05
    # Learning-rate schedule of the dense optimiser over the run's steps: "constant", or "cosine"
    # (linear warm-up over ``warmup_steps``, then cosine decay to 0 at the last planned step).
    # The fused in-backward table optimisers keep ``embedding_lr``.
    schedule: str = "constant"
    warmup_steps: int = 0
    # Learning rates of parts of the model, by parameter-name prefix (the longest match wins), e.g.
    # {lm.encoder.layer: 1.0e-4} for the fine-tuned LM layers under a freshly initialised head at ``lr``.
    lr_by_module: dict[str, float] = dataclasses.field(default_factory=dict)
    # The dense AdamW as one fused kernel per step (torch's ``fused=True``, CPU and CUDA) instead
    # of a Python loop over the parameters: the same update up to float rounding, several times
    # faster on a student's many small tensors. Runs recorded before this option existed ran the
    # loop: their results name ``optim.fused_adamw: false``, which reproduces them.
    fused_adamw: bool = True

    def __post_init__(self) -> None:
        for prefix, lr in dict(self.lr_by_module or {}).items():
            try:  # YAML 1.1 reads "1e-4" (no dot) as a string
                lr = self.lr_by_module[prefix] = float(lr) if isinstance(lr, str) else lr
            except ValueError:
                pass
            if not isinstance(prefix, str) or not isinstance(lr, (int, float)) or isinstance(lr, bool) or lr <= 0:
                raise ConfigError(f"optim.lr_by_module maps a parameter-name prefix to a positive learning rate, got {prefix!r}: {lr!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"optim.schedule must be one of {SCHEDULES}, got '{self.schedule}'")
        if self.warmup_steps < 0:
            raise ConfigError(f"optim.warmup_steps must be >= 0, got {self.warmup_steps}")


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 512
    eval_batch_size: int = 8192
    patience: int = 2  # epochs without a better validation AUC before stopping
    max_steps_per_epoch: Optional[int] = None
    progress: bool = True
    deterministic: bool = True
    # Distributed runs (Ray Train): a torch.distributed.checkpoint every N steps and at every
    # epoch end (0 = epoch ends only); resumed from the latest one after a worker failure.
    checkpoint_every: int = 0
    # Sharded runs: issue the next batch's sparse input distribution (TorchRec's all-to-alls of
    # the student's ids) during this step, as TorchRec's TrainPipelineSparseDist orders it; the
    # numbers are the same either way (train/input_prefetch.py).
    overlap_input_dist: bool = True
    # Distillation runs keep the C heap's freed memory for the next step instead of returning it
    # to the system between steps (recsys_committee/heap.py: the teachers' forwards then run as
    # fast inside a committee step as alone). The resident set stays at the step's peak.
    hold_heap: bool = True


@dataclass
class DistConfig:
    """Multi-worker settings (``--num-workers`` etc. on the command line fill these)."""

    num_workers: int = 1
    use_gpu: bool = False
    storage_path: Optional[str] = None  # Ray Train storage (checkpoints); default: <out>/ray
    max_failures: int = 2  # worker-group restarts from the last checkpoint before giving up
    # "table_wise" | "row_wise" | "column_wise" | "table_row_wise" | "data_parallel" forces one
    # sharding type for every table; null lets TorchRec's planner choose per table.
    sharding_type: Optional[str] = None
    cpus_per_worker: int = 1
    # Fault drill for tests and the resume benchmark: this rank SIGKILLs itself when it reaches
    # ``kill_at_step`` in its first attempt (never after a resume).
    kill_rank: Optional[int] = None
    kill_at_step: Optional[int] = None


@dataclass
class RunConfig:
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    dist: DistConfig = field(default_factory=DistConfig)
    # Committee distillation (None for plain training): teachers and the committee settings.
    teachers: list[dict[str, Any]] = field(default_factory=list)
    committee: Optional[dict[str, Any]] = None
    # "{teacher_dir}" in a teacher's checkpoint path is replaced by this (demo/benchmarks set it)
    teacher_dir: str = "runs/teachers"


def dotted_keys(cls: type = None, prefix: str = "") -> list[str]:
    """Every settable dotted key of a config dataclass (``train.epochs``, ``optim.lr``, ...)."""
    cls = cls or RunConfig
    hints = typing.get_type_hints(cls)
    keys = []
    for f in dataclasses.fields(cls):
        annotation = hints[f.name]
        if dataclasses.is_dataclass(annotation):
            keys += dotted_keys(annotation, f"{prefix}{f.name}.")
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


def _unknown_key(key: str, known: list[str], where: str) -> ConfigError:
    # a bare leaf name set at the wrong level (``epochs`` for ``train.epochs``): the full key first
    close = [k for k in dotted_keys() if k.rsplit(".", 1)[-1] == key and k != f"{where}{key}"]
    close += [f"{where}{c}" for c in difflib.get_close_matches(key, known, n=3, cutoff=0.5) if f"{where}{c}" not in close]
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return ConfigError(f"unknown config key '{where}{key}'.{hint} Known keys here: {', '.join(known)}")


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return value
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], where)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"'{where}' must be a mapping, got {type(value).__name__}")
        return from_dict(annotation, value, prefix=f"{where}.")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"'{where}' must be a list, got {value!r}")
        (inner,) = typing.get_args(annotation) or (Any,)
        return [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"'{where}' must be a mapping, got {value!r}")
        return dict(value)
    if annotation is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, str):
        try:  # YAML 1.1 reads "1e-4" (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if annotation in (int, str, bool, float) and not (isinstance(value, annotation) and not (annotation is int and isinstance(value, bool))):
        raise ConfigError(f"'{where}' must be {annotation.__name__}, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, refusing unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ConfigError(f"'{prefix.rstrip('.') or 'config'}' must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise _unknown_key(key, names, prefix)
        kwargs[key] = _coerce(value, hints[key], f"{prefix}{key}")
    return cls(**kwargs)


def apply_override(data: dict[str, Any], override: str) -> None:
    """``a.b.c=value`` (value parsed as YAML: numbers, lists, null) into a nested dict."""
    if "=" not in override:
        raise ConfigError(f"override '{override}' must look like key.sub=value")
    dotted, raw = override.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{override}': value is not valid YAML ({exc})") from exc
    keys = dotted.strip().split(".")
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{override}': '{key}' is not a mapping")
    node[keys[-1]] = value


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())  # safe_load: no tags that import or call code
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML ({exc})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        merged[key] = _deep_merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged


def load_with_bases(path: str | Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """``base: other.yaml`` (relative to the file) is loaded first and deep-merged under it."""
    path = Path(path).resolve()
    if path in seen:
        raise ConfigError(f"{path}: 'base' chain loops back to itself")
    data = load_yaml(path)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{path}: 'base' must be a file name, got {base!r}")
    return _deep_merge(load_with_bases(path.parent / base, seen + (path,)), data)


def load_config(path: str | Path | None, overrides: list[str] = ()) -> RunConfig:
    """Defaults < the file (and its ``base`` chain) < ``key.sub=value`` overrides. An error names
    where the bad key came from: the file, or the command-line override that set it."""
    data = load_with_bases(path) if path else {}
    try:
        from_dict(RunConfig, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}" if path else str(exc)) from None
    for override in overrides:
        apply_override(data, override)
        try:
            from_dict(RunConfig, data)
        except ConfigError as exc:
            raise ConfigError(f"command-line override '{override}': {exc}") from None
    return from_dict(RunConfig, data)


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def dump_config(cfg: RunConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
