"""The LM teacher: all-MiniLM-L6-v2 reading a text rendering of each example, with a task head.

Why this design:
  * The texts are rendered and tokenised ONCE, when the model is built, and held as buffers
    indexed by example id; ``forward(batch)`` only looks rows up by ``batch.example_ids``. No
    tokenizer runs inside a training step.
  * On CPU the encoder is frozen (``finetune: head``, docs/DATA.md: ~37 examples/s forward). Then the
    mean-pooled output of each example is computed at most once: read from a teacher cache
    (``feature_cache``, built and resumed by ``train/teacher_cache.py``) or memoised in memory
    the first time a row is seen. Training the head costs an MLP on [B, 384] per step.
    ``top_k`` (the top k layers train) and ``full`` run the encoder every step: a GPU preset.
  * As a committee teacher it stays what docs/METHOD.md asks: frozen, tapped by module path through
    hooks (``encoder.layer.3``, relative to the BertModel), its padding masked, and able to take
    the student's question as an extra token at the tapped layer (``reenter``); forward hooks
    append the token and widen the attention mask, nothing in the model is edited.

Teacher kinds registered here: ``lm_minilm`` (live encoder) and ``lm_cached`` (a teacher cache
served by id, see ``train/teacher_cache.py``; it cannot ``reenter``).

The model and both teachers need the data to render their texts: they take ``data`` (a
``RecData`` or ``FeatureTable``) and ``raw`` (``RawTables``: titles, genres, profiles) as
keyword arguments that the runner passes, never the YAML.

This module holds only the registrations (the ``lm_teacher`` model and the two teacher kinds).
The pieces live beside it, one job each, because each is used on its own (the cache command
needs the model and the cache key but no teacher; a committee needs the adapters but not the
model builder): ``encoder`` (loading, tokens, pooling), ``model`` (the model), ``cache`` (the
cache key and compute), ``checkpoint`` (trained weights and their text options), ``adapters``
and ``reenter`` (the committee side), all in ``models/lm/``.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from recsys_committee.committee.config import CommitteeConfigError
from recsys_committee.committee.teacher import TeacherContext, register_teacher
from recsys_committee.data.features.table import FeatureTable
from recsys_committee.data.logs.schema import RawTables
from recsys_committee.models.lm.adapters import CachedLMTeacher, LMTeacherAdapter
from recsys_committee.models.lm.cache import POOLED, LMCacheCompute, attach_token_cache, lm_cache_key, table_digest
from recsys_committee.models.lm.checkpoint import load_lm_teacher_model, load_lm_weights
from recsys_committee.models.lm.encoder import _table_and_raw
from recsys_committee.models.lm.model import LMTeacherModel, build_lm_model
from recsys_committee.models.registry import register_model
from recsys_committee.errors import ConfigError


@register_model("lm_teacher")
def lm_teacher(
    cardinalities: dict[str, int],
    num_dense: int,
    *,
    model_dir: Optional[str] = None,
    max_length: int = 64,
    finetune: str = "head",
    top_k: int = 2,
    history_n: int = 5,
    include_ratings: bool = False,
    include_stats: bool = False,
    id_tokens: bool = False,
    head_hidden: list[int] = (256,),
    dropout: float = 0.1,
    autocast: Optional[str] = None,
    init_checkpoint: Optional[str] = None,
    feature_cache: Optional[str] = None,
    token_cache: Optional[str] = None,
    cache_taps: list[str] = ("encoder.layer.3", POOLED),
    cache_dtype: str = "float16",
    cache_shard_rows: int = 4096,
    cache_batch_size: int = 64,
    data: Any = None,
    raw: Optional[RawTables] = None,
    layout: Any = None,  # the MiniLM reads texts, not the feature layout
) -> LMTeacherModel:
    """all-MiniLM-L6-v2 (22.7M) + an MLP head on its mean-pooled output.

    ``finetune``: head (encoder frozen; CPU) | top_k (top ``top_k`` layers train) | full.
    ``init_checkpoint``: start from a trained lm_teacher model.safetensors (same text options).
    ``feature_cache`` (head mode): a teacher-cache folder holding ``cache_taps`` (must include
    ``pooled``); built there (resumably) if missing, then the head trains on its pooled
    features and the encoder never runs in training. The ``cache_*`` keys are also what
    ``recsys-committee cache`` builds, so both commands share one cache.
    ``token_cache`` (top_k mode): a teacher-cache folder of the token states of
    ``encoder.layer.{5 - top_k}`` (built there if missing); the top ``top_k`` layers and the head
    train on them and the lower layers never run. ``autocast: bf16`` runs the trained layers in
    bfloat16 (about 2x faster on CPUs with AMX / AVX512-BF16).
    ``data``/``raw`` are passed by the runner (they are not config keys).
    """
    model = build_lm_model(
        data, raw, model_dir=model_dir, max_length=max_length, finetune=finetune, top_k=top_k, history_n=history_n,
        include_ratings=include_ratings, include_stats=include_stats, id_tokens=id_tokens, head_hidden=head_hidden, dropout=dropout,
        autocast=autocast,
    )
    if init_checkpoint:
        load_lm_weights(model, init_checkpoint)
    if token_cache:
        if finetune != "top_k":
            raise ConfigError("model.params.token_cache needs finetune: top_k (its token states feed the trained top layers)")
        if feature_cache:
            raise ConfigError("model.params: feature_cache (head mode) and token_cache (top_k mode) exclude each other")
        table, _ = _table_and_raw(data, raw, "lm_teacher")
        attach_token_cache(model, table, token_cache, dtype=cache_dtype, shard_rows=cache_shard_rows, batch_size=cache_batch_size)
    if feature_cache:
        if finetune != "head":
            raise ConfigError("model.params.feature_cache needs finetune: head (a cache holds the frozen encoder's features)")
        if POOLED not in cache_taps:
            raise ConfigError(f"model.params.cache_taps must include '{POOLED}' (the head reads it), got {list(cache_taps)}")
        from recsys_committee.train.teacher_cache import open_or_build

        table, _ = _table_and_raw(data, raw, "lm_teacher")
        cache = open_or_build(
            feature_cache, lm_cache_key(model, table, list(cache_taps), cache_dtype, with_logits=False),
            model.num_rows, LMCacheCompute(model, list(cache_taps), with_logits=False),
            shard_rows=cache_shard_rows, batch_size=cache_batch_size, description="LM teacher cache",
            meta={"teacher_params": sum(p.numel() for p in model.lm.parameters())},
        )
        model.use_features(cache.load([POOLED])[POOLED])
    return model


@register_teacher("lm_minilm")
def lm_minilm_teacher(
    *,
    name: str,
    checkpoint: Optional[str] = None,
    tap: str = "encoder.layer.3",
    always_on: bool = False,
    pool_tokens: bool = False,
    model_dir: Optional[str] = None,
    max_length: Optional[int] = None,
    history_n: Optional[int] = None,
    include_ratings: Optional[bool] = None,
    include_stats: Optional[bool] = None,
    id_tokens: Optional[bool] = None,
    context: TeacherContext,
) -> LMTeacherAdapter:
    """The live MiniLM teacher. With ``checkpoint`` (a trained lm_teacher model.safetensors) it has task
    logits and the checkpoint's text options; without, the pretrained encoder gives features only.
    Its texts are rendered from the run's data (``context.data``)."""
    model = load_lm_teacher_model(
        checkpoint, context.data, None, model_dir=model_dir, max_length=max_length, history_n=history_n,
        include_ratings=include_ratings, include_stats=include_stats, id_tokens=id_tokens,
    )
    return LMTeacherAdapter(model, name=name, tap=tap, always_on=always_on, with_logits=checkpoint is not None, pool_tokens=pool_tokens)


@register_teacher("lm_cached")
def lm_cached_teacher(
    *,
    name: str,
    cache: str,
    tap: str = "encoder.layer.3",
    checkpoint: Optional[str] = None,
    always_on: bool = False,
    context: TeacherContext,
) -> CachedLMTeacher:
    """The LM teacher's cached features (``tap``, mean-pooled [N, 384]) and logits by example id.

    Logits: the cache's own (built from a trained checkpoint), or, with ``checkpoint`` a head-
    mode lm_teacher whose encoder built the cache, ``head(cached pooled)`` computed here. The
    checkpoint's encoder/head/text options and (when ``data`` is given) the rows are checked
    against the cache key: a mismatch is a StaleCacheError naming what differs.
    """
    from recsys_committee.train.teacher_cache import open_cache

    expect: dict[str, Any] = {"taps": [tap]}
    model = None
    if checkpoint is not None:
        model = load_lm_teacher_model(checkpoint, texts=False)
        expect["weights"] = model.encoder_digest()
        expect["text"] = {**model.text_options.as_dict(), "max_length": model.max_length}
    data = context.data
    if data is not None:
        table = data if isinstance(data, FeatureTable) else data.table
        expect["data"] = table_digest(table)
    handle = open_cache(cache, expect=expect)
    names = [tap]
    logits = None
    if "logits" in handle.outputs and (model is None or handle.key.get("head") == model.head_digest()):
        names.append("logits")
    elif model is not None:
        if POOLED not in handle.outputs:
            raise CommitteeConfigError(
                f"cache {cache} has no logits for this checkpoint's head and no '{POOLED}' output to compute them from; "
                f"rebuild it with taps including '{POOLED}' (recsys-committee cache ... --rebuild-cache)"
            )
        names.append(POOLED)
    tensors = handle.load(names)
    if "logits" in tensors:
        logits = tensors["logits"].float()
    elif model is not None:
        model.eval()
        with torch.no_grad():
            logits = model.head_forward(tensors[POOLED].float())[0]
    teacher = CachedLMTeacher(tensors[tap].float(), logits, name=name, always_on=always_on)
    teacher.teacher_params = handle.index.get("meta", {}).get("teacher_params")
    return teacher
