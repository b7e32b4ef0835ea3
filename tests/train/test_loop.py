import json
import re
from pathlib import Path

import pytest
import torch

from recsys_committee.cli import main as cli_main
from recsys_committee.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from recsys_committee.train.config import load_config
from recsys_committee.train.loop import NonFiniteLossError, fit, preemptions, with_next
from recsys_committee.train.runner import seed_everything
from recsys_committee.train.optimizers import build_optimizers
from recsys_committee.rec_domain import REC, load_trained_model, run_train

ROOT = Path(__file__).resolve().parents[2]
FAST = ["train.epochs=2", "train.progress=false", "train.batch_size=256", "model.params.hidden=[64,32]"]


def fit_plain(model, loss_fn, data, cfg, gen, **kwargs):
    """The loop as the runner drives it: explicit optimisers, the domain's evaluation."""
    optimizers = build_optimizers(list(model.parameters()), REC.sparse_parameters(model), cfg.optim)
    evaluate = lambda m, split: REC.evaluate(m, data, split, cfg, None)  # noqa: E731
    return fit(model, model, loss_fn, data, cfg.train, gen, optimizers, evaluate, **kwargs), optimizers


def test_short_real_run_learns_and_writes_contract(ml_slice, tmp_path):
    cfg = load_config(ROOT / "configs/rec/student.yaml", FAST)
    metrics = run_train(cfg, tmp_path, data=ml_slice)
    assert metrics["val"]["auc"] > 0.6  # clearly above chance on real data
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert isinstance(on_disk["params"], int)
    assert {"auc", "logloss", "gauc"} <= set(on_disk["test"]) and on_disk["epoch_seconds"] > 0
    assert (tmp_path / "config.yaml").exists() and (tmp_path / "curve.png").stat().st_size > 1000
    # model.safetensors holds the best-validation weights and rebuilds without the config
    model = load_trained_model(tmp_path / "model.safetensors")
    assert sum(p.numel() for p in model.parameters()) == metrics["params"]


def test_same_seed_same_result(ml_slice, tmp_path):
    cfg = load_config(ROOT / "configs/rec/student.yaml", FAST + ["train.epochs=1", "train.max_steps_per_epoch=10"])
    a = run_train(cfg, tmp_path / "a", data=ml_slice)
    b = run_train(cfg, tmp_path / "b", data=ml_slice)
    assert a["val"]["auc"] == b["val"]["auc"]


def test_nan_loss_stops_with_step_and_term_and_keeps_checkpoint(ml_slice, tmp_path):
    cfg = load_config(ROOT / "configs/rec/student.yaml", FAST + ["train.epochs=3", "train.max_steps_per_epoch=5", "train.patience=5"])
    gen = seed_everything(0)
    from recsys_committee.models import build_model

    model = build_model("student", ml_slice.cardinalities, ml_slice.num_dense, data=ml_slice, hidden=[16])
    saved = []

    def loss_fn(batch, step):
        bce = torch.nn.functional.binary_cross_entropy_with_logits(model(batch).logits, batch.labels)
        poison = torch.tensor(float("nan")) if step >= 7 else torch.tensor(0.0)
        return bce + poison, {"task": bce, "poison": poison}

    def on_best(predictor, epoch, val):
        save_checkpoint(tmp_path / "model.safetensors", {"state_dict": predictor.state_dict(), "epoch": epoch})
        saved.append(epoch)

    with pytest.raises(NonFiniteLossError, match=r"step 7: term 'total'"):
        fit_plain(model, loss_fn, ml_slice, cfg, gen, on_best=on_best)
    assert saved == [0]
    assert load_checkpoint(tmp_path / "model.safetensors")["epoch"] == 0  # last good checkpoint kept


def test_corrupt_checkpoint_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"
    save_checkpoint(path, {"state_dict": {"w": torch.ones(3)}})
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(CheckpointError, match=re.escape(f"{path} is corrupt")):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.safetensors")
    save_file({"w": torch.ones(3)}, str(tmp_path / "foreign.safetensors"))  # safetensors, but not ours
    with pytest.raises(CheckpointError, match="foreign.safetensors is not a diverse-distill/2 checkpoint"):
        load_checkpoint(tmp_path / "foreign.safetensors")
    torch.save({"foo": 1}, tmp_path / "old.pt")  # a pickle is named as one and never unpickled
    with pytest.raises(CheckpointError, match="old.pt is a torch pickle"):
        load_checkpoint(tmp_path / "old.pt")


def test_cli_reports_bad_config_clearly(tmp_path, capsys):
    code = cli_main(["train", "--config", str(ROOT / "configs/rec/student.yaml"), "--out", str(tmp_path), "train.epoch=1"])
    assert code == 2
    err = capsys.readouterr().err
    assert "command-line override 'train.epoch=1'" in err and "Did you mean 'train.epochs'" in err
    assert "student.yaml" not in err  # the file is fine: the message names the command line


def test_override_of_a_bare_leaf_suggests_the_full_dotted_key(tmp_path, capsys):
    code = cli_main(["train", "--config", str(ROOT / "configs/rec/student.yaml"), "--out", str(tmp_path), "epochs=3"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "command-line override 'epochs=3'" in err and "Did you mean 'train.epochs'" in err


def test_cli_unknown_model_name(tmp_path, capsys, real_data_dir):
    code = cli_main(["train", "--config", str(ROOT / "configs/rec/student.yaml"), "--out", str(tmp_path), "model.name=expert_dlrn", "data.max_rows=2000"])
    assert code == 2
    assert "Did you mean 'expert_dlrm'" in capsys.readouterr().err


def test_cosine_schedule_warms_up_then_decays_to_zero():
    from recsys_committee.train.config import OptimConfig
    from recsys_committee.train.loop import lr_factor

    cfg = OptimConfig(schedule="cosine", warmup_steps=4)
    factors = [lr_factor(step, 20, cfg) for step in range(20)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]  # linear warm-up ends at the base lr
    assert all(a >= b for a, b in zip(factors[4:], factors[5:]))  # then never increases
    assert factors[-1] < 0.01 and lr_factor(10, 20, OptimConfig()) == 1.0  # constant stays put


def test_bad_schedule_is_named():
    from recsys_committee.train.config import ConfigError

    with pytest.raises(ConfigError, match="optim.schedule"):
        load_config(ROOT / "configs/rec/student.yaml", ["optim.schedule=linear_decay"])


def test_loop_applies_the_schedule_to_the_dense_optimizer(ml_slice, tmp_path):
    from recsys_committee.models import build_model

    cfg = load_config(ROOT / "configs/rec/student.yaml", FAST + ["train.epochs=2", "train.max_steps_per_epoch=5", "optim.schedule=cosine", "optim.embedding_optimizer=dense"])
    gen = seed_everything(0)
    model = build_model("student", ml_slice.cardinalities, ml_slice.num_dense, data=ml_slice, hidden=[16])
    optimizers = build_optimizers(list(model.parameters()), REC.sparse_parameters(model), cfg.optim)
    seen = []

    def loss_fn(batch, step):  # the rate the coming optimizer step will use
        seen.append(optimizers.dense.param_groups[0]["lr"])
        return torch.nn.functional.binary_cross_entropy_with_logits(model(batch).logits, batch.labels), {}

    fit(model, model, loss_fn, ml_slice, cfg.train, gen, optimizers, lambda m, split: REC.evaluate(m, ml_slice, split, cfg, None))
    assert len(seen) == 10 and seen[0] == pytest.approx(cfg.optim.lr) and seen[-1] < 0.05 * cfg.optim.lr
    assert all(a >= b for a, b in zip(seen, seen[1:]))  # torch's LambdaLR drives it: decays every step


def test_with_next_pairs_each_item_with_the_one_after_and_reads_no_further():
    """The loop's look-ahead: (item, next) pairs, None after the last, and an item is pulled from
    the source only when the pair before it is handed out (the reader's generator draws as the
    loop always drew)."""
    pulled = []

    def source():
        for i in range(4):
            pulled.append(i)
            yield i

    pairs = with_next(source())
    assert next(pairs) == (0, 1) and pulled == [0, 1]
    assert list(pairs) == [(1, 2), (2, 3), (3, None)]
    assert list(with_next(iter([]))) == []


def test_preemptions_count_this_threads_involuntary_switches():
    """The counter behind a history's ``steady_preemptions_per_s``: this thread's involuntary
    context switches (Linux): being run off the core by another busy thread on it counts."""
    import os
    import threading
    import time

    if preemptions() is None:
        pytest.skip("no per-thread rusage on this platform")
    allowed = os.sched_getaffinity(0)
    core = sorted(allowed)[0]

    def spin(seconds: float) -> None:
        os.sched_setaffinity(0, {core})
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass

    os.sched_setaffinity(0, {core})
    try:
        busy = threading.Thread(target=spin, args=(0.3,))
        start = preemptions()
        busy.start()
        spin(0.3)  # two busy threads on one core: the kernel switches between them
        busy.join()
        assert preemptions() > start
    finally:
        os.sched_setaffinity(0, allowed)
