"""The LM teacher on a tiny real slice: offline load, head/top_k/full, memoised features, the
feature cache, top_k training from a token cache, the live adapter (token taps, masks, reenter)
and the cached one."""

import os

import pytest
import torch

from recsys_committee.committee import Committee, CommitteeConfig, CommitteeConfigError, ReenterNotSupportedError, TapPathError
from recsys_committee.committee.teacher import TeacherContext
from recsys_committee.train.teacher_cache import StaleCacheError, build_cache, open_cache
from recsys_committee.models import build_model, count_params
from recsys_committee.models.lm.adapters import LMTeacherAdapter
from recsys_committee.models.lm.cache import POOLED, TOKEN_MASK, LMCacheCompute, attach_token_cache, lm_cache_key, token_tap
from recsys_committee.models.lm.encoder import LMDataError, load_tokenizer, masked_mean
from recsys_committee.models.lm.model import build_lm_model
from recsys_committee.models.lm.teacher import lm_cached_teacher, lm_minilm_teacher
from recsys_committee.train.checkpoint import save_checkpoint

pytestmark = pytest.mark.realdata
ROWS = 96


@pytest.fixture(scope="module")
def small(real_data_dir):
    from recsys_committee.data.logs.movielens import load_movielens

    data = load_movielens(real_data_dir, max_rows=ROWS)
    return data, data.raw


@pytest.fixture(scope="module")
def model(small):
    data, raw = small
    torch.manual_seed(0)
    return build_lm_model(data, raw, include_ratings=True, include_stats=True, history_n=3)


def batch_of(data, rows):
    return data.train.batch(torch.as_tensor(rows))


def test_offline_load_and_size(model):
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    assert count_params(model.lm) == 22_713_216
    assert model.num_rows == ROWS and model.input_ids.dtype == torch.int32
    # the candidate comes first, so truncation at 64 tokens never cuts it
    tok = load_tokenizer()
    first = tok.convert_ids_to_tokens(model.input_ids[0, :3].tolist())
    assert first == ["[CLS]", "movie", ":"]


def test_forward_head_mode_memoises_the_encoder(model, small):
    data, _ = small
    calls = []
    handle = model.lm.register_forward_hook(lambda *_: calls.append(1))
    try:
        model.train()
        assert not model.lm.training  # frozen encoder stays in eval (no dropout)
        batch = batch_of(data, range(16))
        out = model(batch)
        assert out.logits.shape == (16,) and out.hidden.shape == (16, 256) and out.h0.shape == (16, 384)
        torch.nn.functional.binary_cross_entropy_with_logits(out.logits, batch.labels).backward()
        assert all(p.grad is None for p in model.lm.parameters())
        assert all(p.grad is not None for p in model.head.parameters())
        model(batch)
        model(batch_of(data, range(8, 24)))  # 8 new rows
        assert len(calls) == 2  # the second call ran the encoder on the 8 new rows only
    finally:
        handle.remove()
        model.zero_grad(set_to_none=True)


def test_finetune_modes(small):
    data, raw = small
    m = build_lm_model(data, raw, finetune="top_k", top_k=2)
    trainable = {n.split(".")[2] for n, p in m.lm.named_parameters() if p.requires_grad}
    assert trainable == {"4", "5"}
    m.set_finetune("full")
    assert all(p.requires_grad for n, p in m.lm.named_parameters() if not n.startswith("pooler"))
    out = m(batch_of(data, range(4)))
    out.logits.sum().backward()
    assert m.lm.encoder.layer[0].attention.self.query.weight.grad is not None
    with pytest.raises(ValueError, match="finetune"):
        m.set_finetune("lora")


def test_registry_builder_needs_the_data(small):
    data, raw = small
    with pytest.raises(LMDataError, match="needs the data"):
        build_model("lm_teacher", data.cardinalities, data.num_dense)
    m = build_model("lm_teacher", data.cardinalities, data.num_dense, history_n=2, data=data, raw=raw)
    assert m.text_options.history_n == 2


def test_feature_cache_head_training_reads_the_cache(small, tmp_path, monkeypatch):
    data, raw = small
    cache_dir = tmp_path / "cache"
    m = build_model("lm_teacher", data.cardinalities, data.num_dense, feature_cache=str(cache_dir), cache_dtype="float32",
                    data=data, raw=raw)
    assert bool(m.memo_valid.all())

    def no_encoder(*_args):
        raise AssertionError("the encoder ran although the cache was complete")

    monkeypatch.setattr(LMCacheCompute, "__call__", no_encoder)
    m2 = build_model("lm_teacher", data.cardinalities, data.num_dense, feature_cache=str(cache_dir), data=data, raw=raw)
    monkeypatch.undo()
    assert torch.equal(m.pooled_memo, m2.pooled_memo)  # read back, exact in fp32
    with torch.no_grad():
        hidden, mask = m2.encode(torch.arange(4))
    assert torch.allclose(masked_mean(hidden, mask), m2.pooled_memo[:4], atol=1e-5)
    with pytest.raises(StaleCacheError, match="text.include_stats"):
        build_model("lm_teacher", data.cardinalities, data.num_dense, feature_cache=str(cache_dir), include_stats=True,
                    data=data, raw=raw)


def test_lm_cache_round_trip_and_stale(model, small, tmp_path):
    data, _ = small
    taps = ["encoder.layer.3", POOLED]
    compute = LMCacheCompute(model, taps, with_logits=True)
    key = lm_cache_key(model, data.table, taps, "float32", with_logits=True)
    build_cache(tmp_path / "c32", key, model.num_rows, compute, shard_rows=64, batch_size=32, progress=False)
    direct = compute(torch.arange(ROWS))
    loaded = open_cache(tmp_path / "c32", expect=key, verify=True).load()
    for name in ("encoder.layer.3", POOLED, "logits"):
        assert torch.equal(loaded[name], direct[name]), name
    key16 = {**key, "dtype": "float16"}
    c16 = build_cache(tmp_path / "c16", key16, model.num_rows, compute, shard_rows=64, batch_size=32, progress=False)
    half = c16.load(dtype=torch.float32)
    for name in ("encoder.layer.3", POOLED):
        err = float((half[name] - direct[name]).abs().max())
        assert 0 < err <= c16.max_abs_error[name] + 1e-7 and c16.max_abs_error[name] < 5e-3
    # another head (e.g. the teacher retrained) -> the stale error names it
    with pytest.raises(StaleCacheError, match="head: cache"):
        open_cache(tmp_path / "c32", expect={"head": "0" * 64})


# ------------------------------------------------------------------------------ teachers
@pytest.fixture(scope="module")
def checkpoint(model, small, tmp_path_factory):
    data, _ = small
    path = tmp_path_factory.mktemp("lm") / "model.safetensors"
    params = {"history_n": 3, "include_ratings": True, "include_stats": True}
    save_checkpoint(path, {"model": "lm_teacher", "params": params, "cardinalities": data.cardinalities,
                           "num_dense": data.num_dense, "state_dict": model.state_dict()})
    return path


def test_live_teacher_tokens_mask_and_logits(model, small, checkpoint):
    data, raw = small
    teacher = lm_minilm_teacher(name="lm", checkpoint=str(checkpoint), tap="encoder.layer.3", context=TeacherContext(data))
    batch = batch_of(data, range(12))
    out = teacher.probe(batch)
    assert teacher.feature_kind == "tokens" and out.features.shape[::2] == (12, 384)
    assert out.mask.dtype == torch.bool and out.mask.shape == out.features.shape[:2]
    model.eval()
    assert torch.allclose(out.logits, model(batch).logits, atol=1e-5)  # live == memoised head outputs
    assert all(not p.requires_grad for p in teacher.parameters())
    pooled = lm_minilm_teacher(name="lm", tap="encoder.layer.3", pool_tokens=True, context=TeacherContext(data)).run(batch)
    assert pooled.features.shape == (12, 384) and pooled.logits is None and pooled.mask is None
    with pytest.raises(TapPathError, match="encoder.layer"):
        LMTeacherAdapter(model, "lm", tap="encoder.layer.9")
    with pytest.raises(CommitteeConfigError, match="history_n"):
        lm_minilm_teacher(name="lm", checkpoint=str(checkpoint), history_n=5, context=TeacherContext(data))


def test_reenter_question_gets_gradient_teacher_does_not(small, checkpoint):
    data, raw = small
    teacher = lm_minilm_teacher(name="lm", checkpoint=str(checkpoint), tap="encoder.layer.3", context=TeacherContext(data))
    assert teacher.supports_reenter
    batch = batch_of(data, range(6))
    question = torch.randn(6, 384, requires_grad=True)
    answer = teacher.reenter(batch, question)
    assert answer.shape == (6, 384)
    answer.pow(2).sum().backward()
    assert question.grad is not None and question.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())
    # padding is masked: a row answers the same alone or in a padded batch
    alone = teacher.reenter(batch.subset(torch.tensor([2])), question[2:3])
    assert torch.allclose(alone, answer[2:3], atol=1e-4)
    last = lm_minilm_teacher(name="lm", tap="encoder.layer.5", context=TeacherContext(data))
    assert not last.supports_reenter  # no upper layer left to carry the question


def test_reenter_in_a_committee_step(small, checkpoint):
    data, raw = small
    torch.manual_seed(0)
    student = build_model("student", data.cardinalities, data.num_dense, data=data, embedding_dim=8, hidden=[16, 8])
    teacher = lm_minilm_teacher(name="lm", checkpoint=str(checkpoint), context=TeacherContext(data))
    probe = batch_of(data, range(8))
    cfg = CommitteeConfig(method="diverse_distill", gate="dense", answer_mode="reenter", dq=8)
    committee = Committee.build(student, [teacher], probe, cfg)
    result = committee(probe, step=0)
    result.loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert committee.qa.question.parameters().__next__().grad is not None


def test_cached_teacher_and_reenter_is_a_config_error(model, small, checkpoint, tmp_path):
    data, raw = small
    taps = ["encoder.layer.3", POOLED]
    key = lm_cache_key(model, data.table, taps, "float16", with_logits=False)  # the CPU recipe: no logits
    build_cache(tmp_path, key, model.num_rows, LMCacheCompute(model, taps, with_logits=False), shard_rows=64, progress=False)
    teacher = lm_cached_teacher(name="lm", cache=str(tmp_path), checkpoint=str(checkpoint), context=TeacherContext(data))
    batch = batch_of(data, range(10))
    out = teacher.run(batch)
    model.eval()
    assert out.features.shape == (10, 384)
    assert torch.allclose(out.logits, model(batch).logits, atol=5e-3)  # head(fp16 cached pooled)
    assert lm_cached_teacher(name="lm", cache=str(tmp_path), context=TeacherContext()).run(batch).logits is None
    with pytest.raises(StaleCacheError, match="taps"):
        lm_cached_teacher(name="lm", cache=str(tmp_path), tap="encoder.layer.1", context=TeacherContext())
    student = build_model("student", data.cardinalities, data.num_dense, data=data, embedding_dim=8, hidden=[16, 8])
    cfg = CommitteeConfig(method="diverse_distill", gate="dense", answer_mode="reenter", dq=8)
    with pytest.raises(ReenterNotSupportedError, match="'lm'"):
        Committee.build(student, [teacher], batch, cfg)
    with pytest.raises(ReenterNotSupportedError, match="lm_minilm"):
        teacher.reenter(batch, torch.zeros(10, 384))


def test_init_checkpoint_must_match_the_texts(small, checkpoint):
    from recsys_committee.train.checkpoint import CheckpointError

    data, raw = small
    kwargs = {"include_ratings": True, "include_stats": True, "data": data, "raw": raw}
    m = build_model("lm_teacher", data.cardinalities, data.num_dense, history_n=3, init_checkpoint=str(checkpoint), **kwargs)
    assert m.head_digest() == lm_minilm_teacher(name="lm", checkpoint=str(checkpoint), context=TeacherContext(data)).model.head_digest()
    with pytest.raises(CheckpointError, match="trained on other texts.*history_n"):
        build_model("lm_teacher", data.cardinalities, data.num_dense, history_n=5, init_checkpoint=str(checkpoint), **kwargs)


# ------------------------------------------------------------------------------ top_k from a token cache
def _top_k_model(data, raw, seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    return build_lm_model(data, raw, include_ratings=True, include_stats=True, history_n=3, finetune="top_k", top_k=2, **kwargs)


def test_top_k_from_the_token_cache_equals_the_full_encoder_and_never_runs_the_lower_layers(small, tmp_path):
    data, raw = small
    live = _top_k_model(data, raw)
    live.eval()
    batch = batch_of(data, range(40))
    with torch.no_grad():
        reference = live(batch).logits  # all six layers run, the lower four frozen
    for dtype, tol in (("float32", 1e-5), ("float16", 5e-3)):
        cached = _top_k_model(data, raw)
        cache = attach_token_cache(cached, data.table, str(tmp_path / dtype), dtype=dtype, shard_rows=32, batch_size=16, progress=False)
        assert cache.outputs[token_tap(3)] == {"shape": [64, 384], "stored": dtype} and cache.outputs[TOKEN_MASK]["shape"] == [64]
        stored_mask = cache.load([TOKEN_MASK])[TOKEN_MASK].bool()
        assert torch.equal(stored_mask, cached.attention_mask)
        cached.eval()
        calls = []
        lower = [cached.lm.embeddings, *cached.lm.encoder.layer[:4]]
        handles = [m.register_forward_hook(lambda *_: calls.append(1)) for m in lower]
        try:
            with torch.no_grad():
                logits = cached(batch).logits
            gap = float((logits - reference).abs().max())
            assert gap <= tol, (dtype, gap)
            cached.train()
            out = cached(batch)
            torch.nn.functional.binary_cross_entropy_with_logits(out.logits, batch.labels).backward()
        finally:
            for h in handles:
                h.remove()
        assert not calls  # the frozen lower layers never ran, in eval or in training
        grads = {n.split(".")[1] for n, p in cached.lm.encoder.named_parameters() if p.grad is not None}
        assert grads == {"4", "5"} and cached.out.weight.grad is not None
        assert cached.lm.embeddings.word_embeddings.weight.grad is None
    assert 0 < float(cache.max_abs_error[token_tap(3)]) < 5e-3  # the fp16 storage error, measured per shard


def test_token_cache_is_keyed_on_the_frozen_layers_only(small, tmp_path):
    data, raw = small
    first = _top_k_model(data, raw)
    attach_token_cache(first, data.table, str(tmp_path), shard_rows=48, batch_size=48, progress=False)
    tuned = _top_k_model(data, raw, seed=1)
    with torch.no_grad():  # fine-tuned top layers and another head: the same token states
        tuned.lm.encoder.layer[5].output.dense.weight.mul_(1.5)
    attach_token_cache(tuned, data.table, str(tmp_path), shard_rows=48, batch_size=48, progress=False)
    assert torch.equal(tuned.token_states, first.token_states)
    changed = _top_k_model(data, raw)
    with torch.no_grad():
        changed.lm.encoder.layer[1].output.dense.weight.mul_(1.5)
    with pytest.raises(StaleCacheError, match="weights"):
        attach_token_cache(changed, data.table, str(tmp_path), shard_rows=48, batch_size=48, progress=False)
    other = build_lm_model(data, raw, include_ratings=True, include_stats=True, history_n=3, finetune="top_k", top_k=1)
    with pytest.raises(ValueError, match="encoder.layer.4"):
        other.use_token_states(first.token_states, 3)
    head = build_lm_model(data, raw, include_ratings=True, include_stats=True, history_n=3)
    with pytest.raises(ValueError, match="top_k"):
        head.use_token_states(first.token_states, 3)


def test_pooled_taps_and_logits_computed_through_the_token_cache(small, tmp_path):
    data, raw = small
    m = _top_k_model(data, raw)
    live = LMCacheCompute(m, ["encoder.layer.3", "encoder.layer.4", POOLED], with_logits=True)(torch.arange(20))
    attach_token_cache(m, data.table, str(tmp_path), dtype="float32", shard_rows=48, batch_size=48, progress=False)
    through = LMCacheCompute(m, ["encoder.layer.3", "encoder.layer.4", POOLED], with_logits=True)(torch.arange(20))
    for name, value in live.items():
        assert torch.allclose(through[name], value, atol=1e-5), name
    assert lm_cache_key(m, data.table, [POOLED], "float16", True)["computed_from"]["tokens"] == token_tap(3)
    with pytest.raises(ValueError, match="below encoder.layer.3"):
        LMCacheCompute(m, ["encoder.layer.2"], with_logits=False)


def test_a_top_k_trained_teacher_keeps_taps_reenter_and_its_cache(small, tmp_path):
    """The committee side of a top_k LM: its checkpoint loads as the live teacher (taps, reenter,
    the same logits as the model that trained on the token cache) and as a cache built through
    the token cache."""
    data, raw = small
    m = _top_k_model(data, raw)
    attach_token_cache(m, data.table, str(tmp_path / "tokens"), dtype="float32", shard_rows=48, batch_size=48, progress=False)
    optimizer = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.5)
    batch = batch_of(data, range(32))
    m.train()
    torch.nn.functional.binary_cross_entropy_with_logits(m(batch).logits, batch.labels).backward()
    optimizer.step()  # the top layers and the head move; the lower ones cannot
    path = tmp_path / "model.safetensors"
    params = {"history_n": 3, "include_ratings": True, "include_stats": True, "finetune": "top_k", "top_k": 2}
    save_checkpoint(path, {"model": "lm_teacher", "params": params, "cardinalities": data.cardinalities,
                           "num_dense": data.num_dense, "state_dict": m.state_dict()})
    m.eval()
    with torch.no_grad():
        trained = m(batch).logits
    live = lm_minilm_teacher(name="lm", checkpoint=str(path), tap="encoder.layer.3", context=TeacherContext(data))
    out = live.probe(batch)
    assert torch.allclose(out.logits, trained, atol=1e-5) and out.features.shape[::2] == (32, 384)
    question = torch.randn(32, 384, requires_grad=True)
    live.reenter(batch, question).pow(2).sum().backward()
    assert question.grad.abs().sum() > 0 and all(p.grad is None for p in live.parameters())
    taps = ["encoder.layer.3", POOLED]
    build_cache(tmp_path / "cache", lm_cache_key(m, data.table, taps, "float32", with_logits=True), m.num_rows,
                LMCacheCompute(m, taps, with_logits=True), shard_rows=48, progress=False)
    cached = lm_cached_teacher(name="lm", cache=str(tmp_path / "cache"), checkpoint=str(path), context=TeacherContext(data)).run(batch)
    assert torch.allclose(cached.logits, trained, atol=1e-5)
    assert torch.allclose(cached.features, masked_mean(*m.lower_states(torch.arange(32), 3)), atol=1e-5)
