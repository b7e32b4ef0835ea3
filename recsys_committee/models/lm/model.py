"""The LM teacher model: MiniLM -> mean pool over real tokens -> MLP head -> one logit.

Why its own module: the registered ``lm_teacher`` builder, the cache command, checkpoint
loading and the committee adapters all build or wrap this one model, and it depends on none of
them. Its texts are tokenised once at build and looked up by example id in ``forward``; in
head mode the frozen encoder's pooled output is memoised per row or served from a teacher cache;
in top_k mode the token states of the layer below the trained ones can be served from a token
cache, so the frozen lower layers never run in training (``use_token_states``).
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Optional, Sequence

import torch
from torch import nn

from recsys_committee.committee.types import StudentOutput
from recsys_committee.data.logs.schema import RawTables
from recsys_committee.models.lm.encoder import (
    LMDataError,
    _table_and_raw,
    load_encoder,
    load_tokenizer,
    masked_mean,
    module_digest,
    tokenize,
)
from recsys_committee.models.lm.text import TextOptions, render_texts
from recsys_committee.models.lm.templates import render_template_texts, spec_texts
from transformers.masking_utils import create_bidirectional_mask  # noqa: E402 - after models/lm/encoder set HF_HUB_OFFLINE

FINETUNE_MODES = ("head", "top_k", "full")
AUTOCAST = {None: None, "bf16": torch.bfloat16}  # the precision the trained layers run in


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
        autocast: Optional[str] = None,
    ) -> None:
        super().__init__()
        if autocast not in AUTOCAST:
            raise ValueError(f"autocast must be one of {[k for k in AUTOCAST if k]} or null, got '{autocast}'")
        self.autocast = autocast
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
        # top_k mode: the output of encoder.layer[token_layer] for every row (fp16 [N, L, d])
        self.register_buffer("token_states", None, persistent=False)
        self.token_layer: Optional[int] = None
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

    def lower_digest(self, layer: int) -> str:
        """Digest of what a token cache of ``encoder.layer.{layer}`` depends on: the embeddings
        and layers 0..layer. A model whose upper layers were trained keeps this digest, so its
        token cache is the pretrained encoder's."""
        h = hashlib.sha256(module_digest(self.lm.embeddings).encode())
        for block in self.lm.encoder.layer[: layer + 1]:
            h.update(module_digest(block).encode())
        return h.hexdigest()

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
        """Last hidden states [B, l, d] and the mask [B, l]. With token states (top_k from a
        token cache) only the layers above ``token_layer`` run."""
        ids, mask = self.inputs(example_ids)
        if self.token_states is not None:
            rows = example_ids.to(self.token_states.device).long()
            states = self.token_states[rows, : ids.shape[1]].float()
            return self.run_layers(states, mask, self.token_layer + 1), mask
        out = self.lm(input_ids=ids, attention_mask=mask.long())
        return out.last_hidden_state, mask

    def run_layers(self, hidden: torch.Tensor, mask: torch.Tensor, start: int, stop: Optional[int] = None) -> torch.Tensor:
        """``encoder.layer[start:stop]`` on token states [B, l, d] (padding masked), called as
        the BertEncoder calls them (forward hooks on the layers fire). The trained layers
        (``start >= num_layers - top_k``) run under ``autocast``; the output is fp32."""
        attention = create_bidirectional_mask(config=self.lm.config, inputs_embeds=hidden, attention_mask=mask.long())
        dtype = AUTOCAST[self.autocast]
        with torch.autocast(hidden.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None and self.finetune == "top_k"
                            and start >= self.num_layers - self.top_k):
            for block in self.lm.encoder.layer[start:stop]:
                hidden = block(hidden, attention)
        return hidden.float()

    def lower_states(self, example_ids: torch.Tensor, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The output of ``encoder.layer.{layer}`` [B, l, d] (fp32) and the mask: the embeddings and
        layers 0..layer only, what a token cache stores."""
        ids, mask = self.inputs(example_ids)
        hidden = self.lm.embeddings(input_ids=ids)
        return self.run_layers(hidden, mask, 0, layer + 1), mask

    def use_token_states(self, states: torch.Tensor, layer: int) -> None:
        """Serve ``encoder.layer.{layer}``'s token states [N, max_length, d] from a token cache:
        from then on only the layers above it run (finetune: top_k with ``layer`` = the one just
        below the trained ones), so training never runs the frozen lower layers."""
        if self.finetune != "top_k":
            raise ValueError(f"token states feed the trained top layers: they need finetune: top_k, not '{self.finetune}'")
        below = self.num_layers - self.top_k - 1
        if layer != below:
            raise ValueError(f"finetune: top_k with top_k={self.top_k} trains encoder.layer.{below + 1}..{self.num_layers - 1}: "
                             f"it needs the token states of encoder.layer.{below}, got encoder.layer.{layer}")
        expect = (self.num_rows, self.input_ids.shape[1], self.hidden_size)
        if tuple(states.shape) != expect:
            raise ValueError(f"token states have shape {tuple(states.shape)}, expected {expect} (rows, max_length, hidden)")
        self.token_states = states.to(self.out.weight.device)
        self.token_layer = layer

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
        tokens = f", token_states=encoder.layer.{self.token_layer}" if self.token_layer is not None else ""
        return f"rows={self.num_rows}, max_length={self.max_length}, finetune={self.finetune!r}{tokens}, text={self.text_options}"


def build_lm_model(data: Any = None, raw: Optional[RawTables] = None, *, model_dir: Optional[str] = None, texts: bool = True,
                   **options: Any) -> LMTeacherModel:
    """Load the encoder and (``texts``) render + tokenise every row of the data once.

    ``options``: the ``TextOptions`` fields (history_n, include_ratings, include_stats, id_tokens)
    and the ``LMTeacherModel`` keywords (max_length, finetune, top_k, head_hidden, dropout,
    autocast), split here by name so each is declared once (the registered ``lm_teacher`` builder
    is the schema a config is checked against)."""
    text_fields = {f.name for f in dataclasses.fields(TextOptions)}
    text = TextOptions(**{k: v for k, v in options.items() if k in text_fields})
    encoder = load_encoder(model_dir)
    model = LMTeacherModel(encoder, text_options=text, **{k: v for k, v in options.items() if k not in text_fields})
    if texts:
        table, raw = _table_and_raw(data, raw, "lm_teacher")
        templates = spec_texts(data)
        if getattr(data, "render_lm_texts", None) is not None:  # a prepared dataset's sample renders them from its shards
            texts = data.render_lm_texts(text)
        elif templates is None:  # the built-in MovieLens texts
            texts = render_texts(table, raw.users, raw.items, text)
        else:
            if text.include_ratings or text.include_stats or text.id_tokens:
                raise LMDataError("include_ratings / include_stats / id_tokens belong to the MovieLens texts (text: {preset: movielens}); "
                                  "with text: templates put what the LM should read in the templates")
            texts = render_template_texts(table, raw.inter, templates, text.history_n, where=f"{data.spec.path}: text")
        model.set_tokens(*tokenize(load_tokenizer(model_dir), texts, model.max_length))
    return model
