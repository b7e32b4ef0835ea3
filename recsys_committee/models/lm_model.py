"""The LM teacher model: MiniLM -> mean pool over real tokens -> MLP head -> one logit.

Why its own module: the registered ``lm_teacher`` builder, the cache command, checkpoint
loading and the committee adapters all build or wrap this one model, and it depends on none of
them. Its texts are tokenised once at build and looked up by example id in ``forward``; in
head mode the frozen encoder's pooled output is memoised per row or served from a teacher cache.
"""

from __future__ import annotations

import hashlib
from typing import Any, Optional, Sequence

import torch
from torch import nn

from recsys_committee.committee.types import StudentOutput
from recsys_committee.data.schema import RawTables
from recsys_committee.models.lm_encoder import (
    LMDataError,
    _table_and_raw,
    load_encoder,
    load_tokenizer,
    masked_mean,
    module_digest,
    tokenize,
)
from recsys_committee.models.text import TextOptions, render_texts
from recsys_committee.models.text_templates import render_template_texts, spec_texts

FINETUNE_MODES = ("head", "top_k", "full")


def make_head(in_dim: int, hidden: Sequence[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), nn.ReLU(), nn.Dropout(dropout)]
        in_dim = width
    return nn.Sequential(*layers)


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
        templates = spec_texts(data)
        if templates is None:  # the built-in MovieLens texts
            texts = render_texts(table, raw.users, raw.items, options)
        else:
            if options.include_ratings or options.include_stats or options.id_tokens:
                raise LMDataError("include_ratings / include_stats / id_tokens belong to the MovieLens texts (text: {preset: movielens}); "
                                  "with text: templates put what the LM should read in the templates")
            texts = render_template_texts(table, raw.inter, templates, options.history_n, where=f"{data.spec.path}: text")
        model.set_tokens(*tokenize(load_tokenizer(model_dir), texts, max_length))
    return model
