"""Analytical FLOPs of one Llama forward pass, per layer and per component. Pure Python: no torch,
no weights -- only the ``ModelConfig``.

Conventions (one multiply-add = 2 FLOPs):

* Matmuls are counted as executed by the re-implementation: a projection of ``T`` tokens
  ``(T, n) @ (n, m)`` is ``2*T*n*m``; attention scores and values are dense over the ``S`` keys
  attended (the causal mask is applied to a full ``T x S`` score matrix, as in ``standard`` attention
  and in an exported graph), ``2*B*n_heads*T*S*head_dim`` each. GQA shrinks the K/V projections
  (``kv_dim``), not the score/value products: every query head still sees ``S`` keys. These are the
  terms ``torch.utils.flop_counter.FlopCounterMode`` counts, and they agree with it exactly.
* Element-wise work is counted with the per-element costs in ``ELEMENTWISE`` below. FlopCounterMode
  counts none of it (it only knows matmul-like ops), so its total equals our matmul total.
* The embedding lookup is a gather (0 FLOPs); the causal mask is a select (0 FLOPs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tinyexport.errors import UserError
from tinyexport.models.config import ModelConfig

LogitsPositions = Literal["all", "last"]

# FLOPs per element of the non-matmul operations (documented in the README's FLOPs section).
ELEMENTWISE: dict[str, int] = {
    "rmsnorm_per_element": 4,  # square, sum, multiply by rsqrt, multiply by weight
    "rmsnorm_per_row": 3,  # divide by dim, add eps, rsqrt
    "rope_per_element": 3,  # x*cos + rotate_half(x)*sin: 2 multiplies, 1 add
    "rope_negate_per_half": 1,  # rotate_half negates half of each head vector
    "softmax_per_score": 6,  # scale by 1/sqrt(hd), max, subtract, exp, sum, divide
    "silu_per_element": 4,  # x / (1 + exp(-x)): negate, exp, add, divide
    "product_per_element": 1,  # silu(gate) * up
    "residual_per_element": 1,  # one add per residual connection
}

MATMUL_COMPONENTS = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "attn_scores",
    "attn_values",
    "gate_proj",
    "up_proj",
    "down_proj",
    "lm_head",
)
LAYER_COMPONENTS = (
    "attn_norm",
    "q_proj",
    "k_proj",
    "v_proj",
    "rope",
    "attn_scores",
    "softmax",
    "attn_values",
    "o_proj",
    "mlp_norm",
    "gate_proj",
    "up_proj",
    "swiglu_act",
    "swiglu_product",
    "down_proj",
    "residual",
)
HEAD_COMPONENTS = ("final_norm", "lm_head")

# Components summed into the groups the README and the table report shares for.
GROUPS: dict[str, tuple[str, ...]] = {
    "attention projections (q, k, v, o)": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "attention products (scores, values)": ("attn_scores", "attn_values"),
    "softmax": ("softmax",),
    "FFN (SwiGLU: gate, up, down, act, product)": ("gate_proj", "up_proj", "down_proj", "swiglu_act", "swiglu_product"),
    "norms": ("attn_norm", "mlp_norm", "final_norm"),
    "RoPE": ("rope",),
    "residual adds": ("residual",),
    "lm_head": ("lm_head",),
}


class FlopsInputError(UserError, ValueError):
    """Non-positive sequence length, batch size or key count."""


@dataclass(frozen=True)
class FlopsEstimate:
    config: ModelConfig
    seq_len: int  # new tokens in this forward (T)
    batch_size: int
    key_len: int  # keys each query attends to (S)
    logits: LogitsPositions
    softmax: bool
    layers: tuple[dict[str, int], ...]
    head: dict[str, int] = field(default_factory=dict)

    @property
    def components(self) -> dict[str, int]:
        """Total FLOPs per component over all layers and the head."""
        totals = {name: sum(layer[name] for layer in self.layers) for name in LAYER_COMPONENTS}
        totals.update(self.head)
        return totals

    @property
    def total_flops(self) -> int:
        return sum(self.components.values())

    @property
    def matmul_flops(self) -> int:
        comps = self.components
        return sum(comps[name] for name in MATMUL_COMPONENTS)

    @property
    def flops_per_token(self) -> float:
        return self.total_flops / (self.batch_size * self.seq_len)

    def shares(self) -> dict[str, float]:
        total = self.total_flops
        return {name: value / total for name, value in self.components.items()}

    def group_shares(self) -> dict[str, float]:
        comps, total = self.components, self.total_flops
        return {group: sum(comps[n] for n in names) / total for group, names in GROUPS.items()}

    def to_json(self, name: str) -> dict:
        return {
            "config": {"name": name, **self.config.to_dict()},
            "seq_len": self.seq_len,
            "batch_size": self.batch_size,
            "key_len": self.key_len,
            "logits": self.logits,
            "softmax_flops": self.softmax,
            "total_flops": self.total_flops,
            "matmul_flops": self.matmul_flops,
            "flops_per_token": self.flops_per_token,
            "components": self.components,
            "shares": self.shares(),
            "group_shares": self.group_shares(),
            "elementwise_costs": dict(ELEMENTWISE),
            "layers": [
                {"layer": i, "total_flops": sum(layer.values()), **layer} for i, layer in enumerate(self.layers)
            ],
            "head": dict(self.head),
        }


def _rmsnorm(rows: int, dim: int) -> int:
    return rows * (ELEMENTWISE["rmsnorm_per_element"] * dim + ELEMENTWISE["rmsnorm_per_row"])


def layer_flops(config: ModelConfig, seq_len: int, batch_size: int, key_len: int, softmax: bool) -> dict[str, int]:
    """FLOPs of one decoder block for ``seq_len`` new tokens attending ``key_len`` keys."""
    c, rows = config, batch_size * seq_len
    h, q_dim, kv_dim, inter, hd = c.hidden_size, c.q_dim, c.kv_dim, c.intermediate_size, c.head_dim
    scores = batch_size * c.num_heads * seq_len * key_len  # elements of the score matrix
    rope_vectors = rows * (c.num_heads + c.num_kv_heads)  # head vectors rotated (q and k)
    return {
        "attn_norm": _rmsnorm(rows, h),
        "q_proj": 2 * rows * h * q_dim,
        "k_proj": 2 * rows * h * kv_dim,
        "v_proj": 2 * rows * h * kv_dim,
        "rope": rope_vectors * (ELEMENTWISE["rope_per_element"] * hd + ELEMENTWISE["rope_negate_per_half"] * hd // 2),
        "attn_scores": 2 * scores * hd,
        "softmax": ELEMENTWISE["softmax_per_score"] * scores if softmax else 0,
        "attn_values": 2 * scores * hd,
        "o_proj": 2 * rows * q_dim * h,
        "mlp_norm": _rmsnorm(rows, h),
        "gate_proj": 2 * rows * h * inter,
        "up_proj": 2 * rows * h * inter,
        "swiglu_act": ELEMENTWISE["silu_per_element"] * rows * inter,
        "swiglu_product": ELEMENTWISE["product_per_element"] * rows * inter,
        "down_proj": 2 * rows * inter * h,
        "residual": 2 * ELEMENTWISE["residual_per_element"] * rows * h,
    }


def estimate(
    config: ModelConfig,
    seq_len: int,
    batch_size: int = 1,
    *,
    key_len: int | None = None,
    logits: LogitsPositions = "all",
    softmax: bool = True,
) -> FlopsEstimate:
    """FLOPs of a forward over ``seq_len`` tokens.

    ``key_len``: keys each query attends (default ``seq_len``: a prefill from an empty cache; a decode
    step at cache fill ``p`` is ``seq_len=1, key_len=p+1``; a fixed-length cache attends all its slots).
    ``logits``: ``"all"`` runs lm_head on every position (training, HF, verification), ``"last"`` on
    the last one only (what an exported prefill needs to pick the next token).
    """
    key_len = seq_len if key_len is None else key_len
    for name, value in (("seq_len", seq_len), ("batch_size", batch_size), ("key_len", key_len)):
        if not isinstance(value, int) or value <= 0:
            raise FlopsInputError(f"{name} must be a positive integer, got {value!r}")
    if logits not in ("all", "last"):
        raise FlopsInputError(f"logits must be 'all' or 'last', got {logits!r}")
    one = layer_flops(config, seq_len, batch_size, key_len, softmax)
    logit_rows = batch_size * (seq_len if logits == "all" else 1)
    head = {
        "final_norm": _rmsnorm(logit_rows, config.hidden_size),
        "lm_head": 2 * logit_rows * config.hidden_size * config.vocab_size,
    }
    return FlopsEstimate(
        config, seq_len, batch_size, key_len, logits, softmax, tuple(dict(one) for _ in range(config.num_layers)), head
    )


def decode_flops_per_token(config: ModelConfig, keys: int) -> int:
    """FLOPs of one decode step attending ``keys`` cache slots (lm_head on the one position)."""
    return estimate(config, 1, key_len=keys, logits="last").total_flops


def counted_matmul_flops(config: ModelConfig, seq_len: int, *, logits: LogitsPositions = "all") -> dict[str, int]:
    """Count our model's matmul FLOPs with ``torch.utils.flop_counter.FlopCounterMode``, per component.

    The model is built and run under ``FakeTensorMode`` (shapes only: no weights allocated, none
    loaded), a prefill of ``seq_len`` tokens into an empty cache of ``seq_len`` slots. Needs torch.
    """
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils.flop_counter import FlopCounterMode

    from tinyexport.models.llama import Llama, empty_kv_cache

    with FakeTensorMode():
        model = Llama(config, max_seq_len=seq_len, attention="standard")
        tokens = torch.zeros((1, seq_len), dtype=torch.long)
        with FlopCounterMode(display=False) as counter:
            model(tokens, torch.arange(seq_len), empty_kv_cache(config, seq_len), logits=logits)
    counts = {module: sum(ops.values()) for module, ops in counter.get_flop_counts().items()}
    per_module = {
        "q_proj": "attn.wq",
        "k_proj": "attn.wk",
        "v_proj": "attn.wv",
        "o_proj": "attn.wo",
        "gate_proj": "mlp.w_gate",
        "up_proj": "mlp.w_up",
        "down_proj": "mlp.w_down",
    }
    out = {
        name: sum(counts.get(f"Llama.layers.{i}.{suffix}", 0) for i in range(config.num_layers))
        for name, suffix in per_module.items()
    }
    attention_bmm = sum(counts.get(f"Llama.layers.{i}.attn", 0) for i in range(config.num_layers)) - sum(
        out[n] for n in ("q_proj", "k_proj", "v_proj", "o_proj")
    )
    out["attn_products"] = attention_bmm  # scores + values (two bmm per layer)
    out["lm_head"] = counts.get("Llama.lm_head", 0)
    out["total"] = counter.get_total_flops()
    return out
