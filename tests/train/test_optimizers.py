"""Per-module learning rates (``optim.lr_by_module``): the groups, the longest-prefix rule, the
schedule scaling each group's own base rate, and a prefix that matches nothing refused."""

import pytest
import torch
from torch import nn

from recsys_committee.train.config import ConfigError, OptimConfig
from recsys_committee.train.loop import make_scheduler
from recsys_committee.train.optimizers import build_optimizers


def _model() -> nn.Module:
    return nn.ModuleDict({"lm": nn.ModuleDict({"low": nn.Linear(2, 2), "top": nn.Linear(2, 2)}), "head": nn.Linear(2, 1)})


def _lrs(optimizer: torch.optim.Optimizer, model: nn.Module) -> dict[str, float]:
    by_id = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    return {n: by_id[id(p)] for n, p in model.named_parameters()}


def test_each_parameter_trains_at_its_longest_matching_prefix_and_the_schedule_scales_each_group():
    model = _model()
    cfg = OptimConfig(lr=1e-3, lr_by_module={"lm": 1e-4, "lm.top": 5e-5}, schedule="cosine", warmup_steps=2)
    params = list(model.parameters())
    opt = build_optimizers(params, [], cfg, names={id(p): n for n, p in model.named_parameters()}).dense
    lrs = _lrs(opt, model)
    assert lrs["head.weight"] == 1e-3 and lrs["lm.low.bias"] == 1e-4 and lrs["lm.top.weight"] == 5e-5
    sched = make_scheduler(opt, cfg, total_steps=10)
    first = _lrs(opt, model)  # warm-up step 0: half of each group's own base rate
    assert first["head.weight"] == pytest.approx(5e-4) and first["lm.top.weight"] == pytest.approx(2.5e-5)
    for _ in range(3):
        opt.step()
        sched.step()
    later = _lrs(opt, model)
    assert later["head.weight"] / later["lm.low.weight"] == pytest.approx(10.0)  # the ratio holds through the schedule


def test_a_prefix_that_matches_no_trained_parameter_is_refused():
    model = _model()
    names = {id(p): n for n, p in model.named_parameters()}
    with pytest.raises(ConfigError, match="lm.encoder"):
        build_optimizers(list(model.parameters()), [], OptimConfig(lr_by_module={"lm.encoder": 1e-4}), names=names)
    with pytest.raises(ConfigError, match="positive learning rate"):
        OptimConfig(lr_by_module={"lm": -1.0})
    # "lm.to" is not a module of lm.top: prefixes match whole name parts
    with pytest.raises(ConfigError, match="lm.to"):
        build_optimizers(list(model.parameters()), [], OptimConfig(lr_by_module={"lm.to": 1e-4}), names=names)


def _trained_copy(model: nn.Module, fused: bool, steps: int = 20) -> tuple[nn.Module, torch.optim.Optimizer]:
    import copy

    model = copy.deepcopy(model)
    opt = build_optimizers(list(model.parameters()), [], OptimConfig(lr=1e-2, weight_decay=0.01, fused_adamw=fused)).dense
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x = torch.randn(16, 2, generator=gen)
        loss = model["head"](torch.relu(model["lm"]["top"](model["lm"]["low"](x)))).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, opt


def test_the_fused_adamw_is_the_default_and_makes_the_loops_update():
    """New runs train the dense part with torch's fused AdamW; ``optim.fused_adamw: false`` (how
    runs recorded before the option trained) keeps the per-parameter loop. Both give the same
    weights up to float rounding after 20 steps, and the weights moved far more than that."""
    torch.manual_seed(0)
    model = _model()
    assert OptimConfig().fused_adamw is True
    fused, fused_opt = _trained_copy(model, fused=True)
    loop, loop_opt = _trained_copy(model, fused=False)
    assert fused_opt.defaults["fused"] is True and not loop_opt.defaults["fused"]
    for (name, a), b, start in zip(fused.named_parameters(), loop.parameters(), model.parameters()):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-5), name
        assert (a - start).abs().max() > 1e-2, name  # 20 steps at lr 1e-2 moved every weight
