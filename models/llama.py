"""The Llama re-implementation, top to bottom: RMSNorm, RoPE, GQA attention, SwiGLU MLP, Block, Llama.

KV cache layout (everywhere in tinyexport): one ``(k, v)`` pair per layer, each ``(B, n_kv, S, hd)``,
the layout of transformers, SDPA, Optimum and onnxruntime-genai. The forward is functional:

    logits, kv = model(tokens, input_pos, kv)

``tokens`` (B, T) int64, ``input_pos`` (T,) int64 absolute positions of those tokens. How new keys and
values enter the cache is a ``KVWriter`` (a backend switch): ``index_copy`` writes into a fixed-size
cache at ``input_pos`` (torch runner, TFLite-style fixed cache), ``concat`` appends and returns a longer
cache (ONNX/Optimum-style ``past_key_values`` -> ``present``). Converters may pass their own writer with
the same contract (TFLite uses ``dynamic_update_slice``). Keys at slot ``s`` are visible to a query at
position ``p`` iff ``s <= p`` -- for both writers, because slot index equals position.

GQA never repeats K/V: the query heads sharing one KV head are folded into the row axis,
``(B, n_h, T, hd) -> (B, n_kv, g*T, hd)``, so attention is one batched matmul per KV head. Head counts
may differ per layer (``ModelConfig.layer_heads``, after head pruning); each layer's cache has its own n_kv.

``kv_cache_dtype="int8"``: a layer's cache is ``(k, v, k_scale, v_scale)`` -- int8 values and fp32 scales
(B, n_kv, S, 1), one per token and KV head -- quantized when written and dequantized when read, so the
new tokens attend to their own keys and values exactly as later tokens will. ``compute_dtype="bfloat16"``:
the attention and MLP run in bf16; embeddings, norms, the residual stream and the LM head stay fp32.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ATTENTION_IMPLS, ModelConfig

KVCache = tuple[tuple[Tensor, ...], ...]  # per layer (k, v), or (k, v, k_scale, v_scale) for an int8 cache
KV_SCALE_MIN = 1e-8  # smallest amax a scale divides by: an all-zero K/V row quantizes to zeros, not NaN
LogitsPositions = Literal["all", "last"]


# ----------------------------------------------------------------------------------------------- norms
class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


# ------------------------------------------------------------------------------------------------ rope
def rope_tables(head_dim: int, theta: float, length: int) -> tuple[Tensor, Tensor]:
    """cos/sin tables (length, head_dim), computed exactly as transformers' LlamaRotaryEmbedding does.

    Always on the CPU (also under a ``torch.device("meta")`` context), so a model built on the meta
    device and then given real weights with ``load_state_dict(assign=True)`` has real tables.
    """
    cpu = torch.device("cpu")
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64, device=cpu).float() / head_dim))
    freqs = torch.arange(length, dtype=torch.int64, device=cpu).float()[:, None] * inv_freq[None, :]  # (L, hd/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (L, hd)
    return emb.cos(), emb.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """x (B, H, T, hd); cos/sin (T, hd). Half-split rotation (HF layout, not interleaved)."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


# ---------------------------------------------------------------------------------------- cache writes
@dataclass(frozen=True)
class KVWriter:
    """How new K/V (B, n_kv, T, hd) enter a layer's cache. ``grows``: the cache gets longer (concat)."""

    name: str
    write: Callable[[Tensor, Tensor, Tensor], Tensor]  # (cache, new, input_pos) -> cache'
    grows: bool


def _write_index_copy(cache: Tensor, new: Tensor, input_pos: Tensor) -> Tensor:
    return cache.index_copy(2, input_pos, new)


def _write_index_copy_inplace(cache: Tensor, new: Tensor, input_pos: Tensor) -> Tensor:
    return cache.index_copy_(2, input_pos, new)  # eager only: avoids copying the whole cache per step


def _write_concat(cache: Tensor, new: Tensor, input_pos: Tensor) -> Tensor:
    return torch.cat((cache, new), dim=2)


KV_WRITERS: dict[str, KVWriter] = {
    "index_copy": KVWriter("index_copy", _write_index_copy, grows=False),
    "index_copy_inplace": KVWriter("index_copy_inplace", _write_index_copy_inplace, grows=False),
    "concat": KVWriter("concat", _write_concat, grows=True),
}


def quantize_kv(x: Tensor) -> tuple[Tensor, Tensor]:
    """x (B, n_kv, T, hd) -> int8 values and fp32 scales (B, n_kv, T, 1): symmetric, one scale per token
    and head, scale = amax/127, so |x - q * scale| <= scale / 2 for every element."""
    x = x.float()
    scale = x.abs().amax(dim=-1, keepdim=True).clamp(min=KV_SCALE_MIN) / 127.0  # (B, n_kv, T, 1)
    q = torch.clamp(torch.round(x / scale), -127.0, 127.0).to(torch.int8)
    return q, scale


def dequantize_kv(q: Tensor, scale: Tensor) -> Tensor:
    """int8 (B, n_kv, S, hd) and scales (B, n_kv, S, 1) -> fp32 (B, n_kv, S, hd)."""
    return q.to(torch.float32) * scale


# ------------------------------------------------------------------------------------------- attention
# Each implementation takes grouped queries q (B, n_kv, R, hd) with R = g*T rows, keys/values
# (B, n_kv, S, hd) and a boolean mask (R, S) or (B, 1, R, S) (True = visible), and returns (B, n_kv, R, hd).
AttentionFn = Callable[[Tensor, Tensor, Tensor, Tensor, float], Tensor]


def attend_standard(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, scale: float) -> Tensor:
    """Materialised softmax(QK^T)V: the reference."""
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale  # (B, n_kv, R, S)
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    probs = torch.softmax(scores.float(), dim=-1).to(q.dtype)
    return torch.matmul(probs, v)


def attend_sdpa(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, scale: float) -> Tensor:
    """torch.nn.functional.scaled_dot_product_attention with the same grouping and mask."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)


def make_attend_flash(block_size: int = 128) -> AttentionFn:
    """Tiled online-softmax attention in plain torch (exportable, no custom kernel).

    Rows and keys are processed in ``block_size`` tiles, so the largest temporary is
    (B, n_kv, block, block) instead of (B, n_kv, R, S). Key tile 0 always holds position 0, which
    every query may see, so the running max is finite after the first tile and fully masked later
    tiles contribute exactly zero.

    Eager (not under ``torch.export``), the softmax tile is updated in place and each finished output
    tile is written over the query rows it came from (those rows are never read again), so the call
    allocates nothing of full size: its peak is a few tiles (``scripts/attention_peak_memory.py``).
    ``q`` is then returned holding the output; callers pass a temporary (``Attention`` does). When
    ``q`` cannot take the output (another dtype, not contiguous, needs grad) or while exporting, the
    tiles are concatenated instead (export graphs have no in-place ops).
    """
    if block_size <= 0:
        raise ValueError(f"flash block_size must be positive, got {block_size}")

    def attend_flash(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, scale: float) -> Tensor:
        rows, keys = q.shape[-2], k.shape[-2]
        neg = torch.finfo(torch.float32).min
        in_place = (
            not (torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing())
            and not q.requires_grad
            and q.is_contiguous()
            and q.dtype == torch.float32
            and q.shape[-1] == v.shape[-1]
        )
        out_tiles = []
        for r0 in range(0, rows, block_size):
            q_tile = q[..., r0 : r0 + block_size, :].float() * scale  # (B, n_kv, br, hd): a tile-sized copy
            m = torch.full(q_tile.shape[:-1] + (1,), -math.inf, dtype=torch.float32, device=q.device)
            denom = torch.zeros_like(m)
            acc = torch.zeros(q_tile.shape, dtype=torch.float32, device=q.device)
            for s0 in range(0, keys, block_size):
                k_tile = k[..., s0 : s0 + block_size, :].float()
                v_tile = v[..., s0 : s0 + block_size, :].float()
                s = torch.matmul(q_tile, k_tile.transpose(-1, -2))  # (B, n_kv, br, bk)
                visible = mask[..., r0 : r0 + block_size, s0 : s0 + block_size]
                if in_place:
                    s.masked_fill_(~visible, neg)
                    m_new = torch.maximum(m, s.amax(dim=-1, keepdim=True))
                    p = s.sub_(m_new).exp_()  # the score tile becomes the probability tile
                    alpha = m.sub_(m_new).exp_()
                    denom.mul_(alpha).add_(p.sum(dim=-1, keepdim=True))
                    acc.mul_(alpha).add_(torch.matmul(p, v_tile))
                else:
                    s = s.masked_fill(~visible, neg)
                    m_new = torch.maximum(m, s.amax(dim=-1, keepdim=True))
                    p = torch.exp(s - m_new)
                    alpha = torch.exp(m - m_new)
                    denom = denom * alpha + p.sum(dim=-1, keepdim=True)
                    acc = acc * alpha + torch.matmul(p, v_tile)
                m = m_new
            if in_place:
                q[..., r0 : r0 + block_size, :] = acc.div_(denom)
            else:
                out_tiles.append((acc / denom).to(q.dtype))
        if in_place:
            return q
        return torch.cat(out_tiles, dim=-2) if len(out_tiles) > 1 else out_tiles[0]

    return attend_flash


def get_attention(name: str, flash_block_size: int = 128) -> AttentionFn:
    if name == "standard":
        return attend_standard
    if name == "sdpa":
        return attend_sdpa
    if name == "flash":
        return make_attend_flash(flash_block_size)
    raise ValueError(f"unknown attention implementation {name!r}; choose one of {', '.join(ATTENTION_IMPLS)}")


class Attention(nn.Module):
    def __init__(self, config: ModelConfig, layer: int, attend: AttentionFn, kv_writer: KVWriter) -> None:
        super().__init__()
        self.n_heads, self.n_kv = config.layer_heads(layer)
        self.hd = config.head_dim
        self.group = self.n_heads // self.n_kv
        self.scale = self.hd**-0.5
        self.kv_int8 = config.kv_cache_dtype == "int8"
        self.wq = nn.Linear(config.hidden_size, self.n_heads * self.hd, bias=False)
        self.wk = nn.Linear(config.hidden_size, self.n_kv * self.hd, bias=False)
        self.wv = nn.Linear(config.hidden_size, self.n_kv * self.hd, bias=False)
        self.wo = nn.Linear(self.n_heads * self.hd, config.hidden_size, bias=False)
        self.attend = attend
        self.kv_writer = kv_writer

    def forward(
        self,
        x: Tensor,
        cos: Tensor,
        sin: Tensor,
        input_pos: Tensor,
        mask: Tensor,
        cache: tuple[Tensor, ...],
        attend_len: int | None,
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        b, t, _ = x.shape
        q = self.wq(x).view(b, t, self.n_heads, self.hd).transpose(1, 2)  # (B, n_h, T, hd)
        k = self.wk(x).view(b, t, self.n_kv, self.hd).transpose(1, 2)  # (B, n_kv, T, hd)
        v = self.wv(x).view(b, t, self.n_kv, self.hd).transpose(1, 2)  # (B, n_kv, T, hd)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        new = (*quantize_kv(k), *quantize_kv(v)) if self.kv_int8 else (k, v)
        if self.kv_int8:
            new = (new[0], new[2], new[1], new[3])  # (k, v, k_scale, v_scale): int8 (B, n_kv, T, hd), fp32 (.., 1)
        stored = tuple(self.kv_writer.write(c, n, input_pos) for c, n in zip(cache, new))  # (B, n_kv, S, ..)
        seen = stored
        if attend_len is not None:  # a static span: skip the unfilled tail of a fixed cache (eager; TFLite spans)
            seen = tuple(c[:, :, :attend_len] for c in stored)
        if self.kv_int8:
            k_seen, v_seen = dequantize_kv(seen[0], seen[2]), dequantize_kv(seen[1], seen[3])
        else:
            k_seen, v_seen = seen
        if k_seen.dtype != q.dtype:  # bf16 compute over an int8 cache
            k_seen, v_seen = k_seen.to(q.dtype), v_seen.to(q.dtype)
        q = q.reshape(b, self.n_kv, self.group * t, self.hd)  # (B, n_kv, g*T, hd): heads of one KV head
        out = self.attend(q, k_seen, v_seen, mask, self.scale)  # (B, n_kv, g*T, hd)
        out = out.reshape(b, self.n_heads, t, self.hd).transpose(1, 2).reshape(b, t, self.n_heads * self.hd)
        return self.wo(out), stored


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.w_gate = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.w_up = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.w_down = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.w_down(F.silu(self.w_gate(x)) * self.w_up(x))


class Block(nn.Module):
    def __init__(self, config: ModelConfig, layer: int, attend: AttentionFn, kv_writer: KVWriter) -> None:
        super().__init__()
        self.compute_dtype = getattr(torch, config.compute_dtype)
        self.attn_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.attn = Attention(config, layer, attend, kv_writer)
        self.mlp_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MLP(config)

    def forward(
        self,
        x: Tensor,
        cos: Tensor,
        sin: Tensor,
        input_pos: Tensor,
        mask: Tensor,
        cache: tuple[Tensor, ...],
        attend_len: int | None,
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        if self.compute_dtype != torch.float32:  # mixed precision: fp32 residual and norms, bf16 inside
            h, cache = self.attn(self.attn_norm(x).to(self.compute_dtype), cos, sin, input_pos, mask, cache, attend_len)
            x = x + h.float()
            return x + self.mlp(self.mlp_norm(x).to(self.compute_dtype)).float(), cache
        h, cache = self.attn(self.attn_norm(x), cos, sin, input_pos, mask, cache, attend_len)
        x = x + h
        return x + self.mlp(self.mlp_norm(x)), cache


class Llama(nn.Module):
    """Llama decoder with an explicit functional KV cache.

    ``max_seq_len`` sizes the RoPE tables (and is the natural fixed cache length); ``attention`` picks
    the implementation by name; ``kv_writer`` is a name in ``KV_WRITERS`` or a ``KVWriter``.
    """

    def __init__(
        self,
        config: ModelConfig,
        *,
        max_seq_len: int | None = None,
        attention: str = "standard",
        flash_block_size: int = 128,
        kv_writer: str | KVWriter = "index_copy",
    ) -> None:
        super().__init__()
        self.config = config
        self.attention = attention
        self.max_seq_len = max_seq_len or config.max_position_embeddings
        attend = get_attention(attention, flash_block_size)
        self.kv_writer = KV_WRITERS[kv_writer] if isinstance(kv_writer, str) else kv_writer
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(Block(config, i, attend, self.kv_writer) for i in range(config.num_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.tok_embeddings.weight
        cos, sin = rope_tables(config.head_dim, config.rope_theta, self.max_seq_len)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def forward(
        self,
        tokens: Tensor,
        input_pos: Tensor,
        kv: Sequence[tuple[Tensor, ...]],
        *,
        logits: LogitsPositions = "all",
        attend_len: int | None = None,
        key_mask: Tensor | None = None,
    ) -> tuple[Tensor, KVCache]:
        """``key_mask`` (B, S) bool, optional: False hides a cache slot from every query of that row
        (an ONNX ``attention_mask``); the causal rule by position applies either way."""
        t = tokens.shape[1]
        x = self.tok_embeddings(tokens)  # (B, T, h)
        cos, sin = self.rope_cos[input_pos], self.rope_sin[input_pos]  # (T, hd)
        compute = self.layers[0].compute_dtype
        if compute != torch.float32:
            cos, sin = cos.to(compute), sin.to(compute)
        keys = attend_len if attend_len is not None else kv[0][0].shape[2] + (t if self.kv_writer.grows else 0)
        visible = torch.arange(keys, device=tokens.device)[None, :] <= input_pos[:, None]  # (T, S)
        masks = {}  # group size -> mask; one entry unless pruning left layers with different group sizes
        for group in dict.fromkeys(layer.attn.group for layer in self.layers):
            mask = visible.repeat(group, 1)  # (g*T, S), rows ordered like grouped queries
            if key_mask is not None:
                mask = mask & key_mask[:, None, None, :]  # (B, 1, g*T, S)
            masks[group] = mask
        new_kv = []
        for layer, cache in zip(self.layers, kv):
            x, cache = layer(x, cos, sin, input_pos, masks[layer.attn.group], cache, attend_len)
            new_kv.append(cache)
        if logits == "last":
            x = x[:, -1:, :]
        return self.lm_head(self.norm(x)), tuple(new_kv)


def empty_kv_cache(config: ModelConfig, length: int, batch: int = 1, dtype: torch.dtype | None = None) -> KVCache:
    """Zero cache of ``length`` slots per layer, layout (B, n_kv, length, hd) (+ int8 scales (B, n_kv, length, 1)).

    ``dtype`` of a float cache defaults to the config's compute dtype."""
    caches = []
    for layer in range(config.num_layers):
        shape = (batch, config.layer_heads(layer)[1], length, config.head_dim)
        if config.kv_cache_dtype == "int8":
            scale = shape[:-1] + (1,)
            caches.append(
                (
                    torch.zeros(shape, dtype=torch.int8),
                    torch.zeros(shape, dtype=torch.int8),
                    torch.zeros(scale),
                    torch.zeros(scale),
                )
            )
        else:
            float_dtype = dtype or getattr(torch, config.compute_dtype)
            caches.append((torch.zeros(shape, dtype=float_dtype), torch.zeros(shape, dtype=float_dtype)))
    return tuple(caches)
