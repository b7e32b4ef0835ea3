import pytest

from recsys_committee.train.config import ConfigError, load_config


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


def test_every_shipped_config_loads():
    from pathlib import Path

    for path in sorted(Path(__file__).resolve().parents[2].glob("configs/rec/**/*.yaml")):
        load_config(path)
