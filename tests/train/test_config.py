from pathlib import Path

import pytest
import yaml

from recsys_committee.train.config import ConfigError, RunConfig, load_config


def test_defaults_file_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 3\ntrain:\n  epochs: 4\nmodel:\n  name: expert_dlrm\n")
    cfg = load_config(path, ["train.epochs=7", "model.params.top=[32,16]", "optim.lr=1e-4"])
    assert cfg.seed == 3 and cfg.train.epochs == 7 and cfg.model.name == "expert_dlrm"
    assert cfg.model.params == {"top": [32, 16]} and cfg.optim.lr == 1e-4
    assert cfg.train.batch_size == 512  # default kept


def test_unknown_key_lists_close_matches(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epoch: 4\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'train\.epoch'.*Did you mean 'train\.epochs'"):
        load_config(path)


def test_unknown_override_key():
    with pytest.raises(ConfigError, match=r"'optim\.learning_rate'"):
        load_config(None, ["optim.learning_rate=1"])


def test_wrong_type():
    with pytest.raises(ConfigError, match=r"'train\.epochs' must be int"):
        load_config(None, ["train.epochs=ten"])


def test_malformed_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_config(path)


def test_yaml_tags_that_call_code_are_refused(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("seed: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_config(path)


def test_override_without_equals():
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(None, ["train.epochs"])


ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
# every folder under configs/ and how its YAML files are read: run configs through load_config,
# data specs through load_spec. A new folder fails test_every_shipped_config_loads until it is here.
RUN_CONFIG_FOLDERS = {"rec": "rec", "vision": "vision"}
DATA_SPEC_FOLDERS = {"data"}
# configs run with a teachers file replacing their base's list (benchmarks/reproduce_rec.py --teachers)
WITH_TEACHERS_FILE = {"rec/logit_kd_lm.yaml": "rec/teachers/experts_lm.yaml"}


def _chain(path: Path) -> list[dict]:
    """The file's own YAML, then its ``base`` file's, and so on (read here with yaml, not the loader)."""
    chain = []
    while path is not None:
        data = yaml.safe_load(path.read_text()) or {}
        base = data.pop("base", None)
        chain.append(data)
        path = (path.parent / base).resolve() if base else None
    return chain


def _leaves(data: dict, prefix: tuple = ()) -> dict[tuple, object]:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(_leaves(value, prefix + (key,)))
        else:
            out[prefix + (key,)] = value
    return out


def _lookup(cfg, path: tuple):
    node = cfg
    for key in path:
        node = node[key] if isinstance(node, dict) else getattr(node, key)
    return node


def _same(loaded, written) -> bool:
    if isinstance(loaded, float) and isinstance(written, (str, int)) and not isinstance(written, bool):
        return loaded == float(written)  # YAML 1.1 reads 1e-4 as a string; the loader coerces
    return loaded == written


def _check_run_config(path: Path, domain: str) -> RunConfig:
    from recsys_committee.committee import TEACHERS
    from recsys_committee.committee.baselines import method_spec
    from recsys_committee.committee.gate import GATES
    from recsys_committee.committee.losses import LOSSES
    from recsys_committee.registry import check_kwargs
    from recsys_committee.train.runner import committee_config

    cfg = load_config(path)
    assert isinstance(cfg, RunConfig)
    # every value the file (or a base it did not override) writes is the loaded value
    chain, written = _chain(path), {}
    for data in chain:  # the file first: a key it sets hides the same key of its bases
        for key, value in _leaves(data).items():
            written.setdefault(key, value)
    assert written, path
    for key, value in written.items():
        assert _same(_lookup(cfg, key), value), (path, ".".join(map(str, key)), _lookup(cfg, key), value)

    # the model is registered and takes the params the file gives it (a file that names no model
    # is a fragment: a base of other configs, or a teachers list; test_every_shipped_config_loads)
    if domain == "vision":
        from vision_committee.domain import VisionDomain

        VisionDomain().check_config(cfg)
        assert cfg.data.dataset == "fashion_mnist", path
    if ("model", "name") in written:
        if domain == "rec":
            from recsys_committee.models import MODELS as models
        else:
            from vision_committee.models import VISION_MODELS as models
        check_kwargs(models.get(cfg.model.name), cfg.model.params, where=f"{path}: model '{cfg.model.name}'")

    # every teacher names a registered kind with arguments its builder takes, once per name
    names = [t["name"] for t in cfg.teachers]
    assert len(set(names)) == len(names), (path, names)
    for spec in cfg.teachers:
        # kind and logit_target are read by the runner for every kind (train/runner.py build_teachers)
        kwargs = {k: v for k, v in spec.items() if k not in ("kind", "logit_target")}
        assert isinstance(spec.get("logit_target", True), bool), (path, spec["name"])
        check_kwargs(TEACHERS.get(spec["kind"]), {**kwargs, "context": None}, where=f"{path}: teacher '{spec['name']}'")

    # a committee section parses (keys, types, ranges) and names a method, gate, losses and
    # (single-teacher baselines) a teacher that exist
    if cfg.committee is not None:
        ccfg = committee_config(cfg)
        assert ccfg.method == cfg.committee.get("method", "diverse_distill"), path
        spec = method_spec(ccfg.method)
        if spec.gated:
            GATES.get(ccfg.gate)
        for loss in [*(ccfg.losses or ()), *ccfg.weights, *ccfg.loss_options]:
            LOSSES.get(loss)
        if spec.teachers == "single":
            teachers_file = WITH_TEACHERS_FILE.get(str(path.relative_to(CONFIGS)))
            usable = [t["name"] for t in load_config(CONFIGS / teachers_file).teachers] if teachers_file else names
            assert ccfg.teacher in usable, (path, ccfg.teacher, usable)
        if spec.teachers != "none":
            assert names, f"{path}: method {ccfg.method} needs teachers"
    return cfg


def _check_data_spec(path: Path):
    from recsys_committee.data.logs.spec import DataSpec, load_spec

    spec = load_spec(path)
    data = yaml.safe_load(path.read_text())
    assert isinstance(spec, DataSpec) and spec.path == str(path)
    source, columns, features = data["source"], data["columns"], data.get("features", {})

    def where(name):  # relative source paths are relative to the directory commands run in
        return None if source.get(name) is None else str(Path.cwd() / source[name])

    assert (spec.interactions, spec.users, spec.items) == (where("interactions"), where("users"), where("items"))
    assert (spec.user, spec.item, spec.time, spec.rating) == (columns["user"], columns["item"], columns.get("time"), columns.get("rating"))
    label = columns["label"]
    assert (spec.label.column, spec.label.min) == ((label["from"], label["min"]) if isinstance(label, dict) else (label, None))
    assert spec.ids == data.get("ids", "vocab")
    categorical = [next(iter(c)) if isinstance(c, dict) else c for c in features.get("categorical", [])]
    assert [c.name for c in spec.categorical] == categorical
    assert [m.name for m in spec.multi_valued] == list(features.get("multi_valued", {}))
    assert list(spec.derived) == list(features.get("derived", {}))
    assert spec.split_kind == data["split"]["kind"] and spec.fractions == data["split"]["fractions"]
    assert spec.transfer == data.get("transfer", {})
    return spec


def test_every_shipped_config_loads():
    """Every YAML under configs/ goes through the project's own loader for its folder, and what
    was loaded is what the file says: run configs (rec, vision) through load_config, with each
    written value (base chain included) found in the RunConfig, the model, teachers and committee
    names resolved in their registries; data specs (data) through load_spec, field by field."""
    import recsys_committee.rec_domain  # noqa: F401  the domains register their models and teachers
    import vision_committee.domain  # noqa: F401

    files = sorted(CONFIGS.rglob("*.y*ml"))
    folders = {p.relative_to(CONFIGS).parts[0] for p in files}
    assert folders == set(RUN_CONFIG_FOLDERS) | DATA_SPEC_FOLDERS, f"a configs/ folder without a loader here: {folders}"
    loaded = {}
    for path in files:
        folder = path.relative_to(CONFIGS).parts[0]
        loaded[path] = _check_data_spec(path) if folder in DATA_SPEC_FOLDERS else _check_run_config(path, RUN_CONFIG_FOLDERS[folder])
    assert len(loaded) == len(files) and len(files) >= 50
    # a run config that names no model is a fragment: a base of another shipped config, or a
    # teachers list (configs/rec/teachers: only `teachers:`)
    bases = {(p.parent / b).resolve() for p in files if (b := (yaml.safe_load(p.read_text()) or {}).get("base"))}
    for path in files:
        if path.relative_to(CONFIGS).parts[0] in RUN_CONFIG_FOLDERS and not any("name" in (d.get("model") or {}) for d in _chain(path)):
            own = yaml.safe_load(path.read_text())
            assert path.resolve() in bases or set(own) == {"teachers"}, f"{path}: no model and not a base of any config"
    rel = {str(p.relative_to(CONFIGS)): v for p, v in loaded.items()}
    # spot checks a broken base chain or a wrong loader would miss above
    assert rel["vision/diverse_distill.yaml"].data.max_rows == 6000  # from vision/base.yaml, three bases up
    assert rel["vision/diverse_distill.yaml"].model.name == "resnet_cnn"
    assert [t["name"] for t in rel["vision/diverse_distill.yaml"].teachers] == ["foundation", "expert_wide", "expert_deep"]
    assert rel["rec/ablations/dd_tap_embeddings.yaml"].committee["method"] == "diverse_distill"
    assert {t["tap"] for t in rel["rec/ablations/dd_tap_embeddings.yaml"].teachers} == {"embeddings"}  # its own list replaces the base's
    assert [t["kind"] for t in rel["rec/teachers/experts_lm.yaml"].teachers] == ["lm_cached", "rec_model", "rec_model"]
    assert rel["data/ml-100k.yaml"].users.endswith("data/ml-100k/ml-100k.user") and rel["data/ml-100k-interactions.yaml"].users is None
    assert [c.name for c in rel["data/ml-100k.yaml"].categorical] == ["age_bucket", "gender", "occupation", "zip_prefix", "year_bucket"]


def test_vision_baselines_distil_with_the_shipped_kd_weight():
    """gap.py compares the shipped vision method with the multi-teacher baselines like for like:
    their KD terms carry the shipped KD weight (configs/vision/*.yaml), so a change to one that
    forgets the others fails here instead of tilting the comparison."""
    from recsys_committee.train.runner import committee_config

    def weight(config: str, loss: str) -> float:  # as the runner reads it: the file's weights over the defaults
        return committee_config(load_config(CONFIGS / "vision" / config)).merged_weights()[loss]

    shipped_cfg = committee_config(load_config(CONFIGS / "vision" / "diverse_distill.yaml"))
    kd_term = next(n for n in shipped_cfg.losses or ["kd"] if n in ("kd", "confidence_kd"))  # the shipped method's KD term
    shipped = weight("diverse_distill.yaml", kd_term)
    assert weight("camkd.yaml", "camkd") == shipped
    assert weight("avg_kd.yaml", "avg_kd") == shipped
