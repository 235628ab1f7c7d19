"""Optimisation transforms: functions on a checkpoint, ``(config, weights) -> (config, weights)``.

A transform is named by the user as ``name=value[:option]`` (``--transform prune-heads=0.25:activation``,
``--kv-cache int8`` for ``kv-cache=int8``) and composes left to right. Each is applied in two steps:

* ``plan``: decide what it does on these weights (head pruning ranks heads, possibly on calibration
  text) and record that in the ``Transform`` (``removed``), so the decision travels in the manifest;
* ``apply``: a pure function of the recorded transform, the config and the weights.

Re-applying a recorded transform (from a manifest) to the source checkpoint therefore gives the very
same model without the calibration data. Transforms:

``prune-heads=R[:o_proj|activation][:global][:groups]``
    Physically remove a fraction R (0 < R < 1) of the query heads. By default heads are removed inside
    their KV group, the same number from every group of a layer, so each layer stays regular GQA (its
    own group size) and no KV head is lost. ``:groups`` removes whole KV groups instead: a KV head with
    all its query heads (k/v projections and the cache shrink too; each layer keeps one group). Importance per query head: ``activation`` (default; measured
    better on SmolLM2: Δppl +34.8 vs +96.2 at R = 0.25, docs/optimize.md) the mean L2 norm of the head's
    contribution to the residual stream (its o_proj block times its attention output) on calibration
    tokens; ``o_proj`` (the seed's) the L2 norm of the head's column block in o_proj. Scores are
    divided by their layer's mean (Michel et al. 2019 normalise per layer too) unless ``:global`` keeps
    them raw. Layers get "one more head removed per group" in the order of the summed importance of the
    heads that step removes, lowest first, until R of all heads are gone; each group keeps one head.
    With ``:groups`` a group's importance is the sum of its heads' and groups go lowest first.
``kv-cache=int8``
    K/V stored as int8 with one fp32 scale per token and KV head (``models.llama.quantize_kv``).
``mixed-precision=bf16``
    Attention and MLP weights and compute in bf16; embeddings, norms, residual stream, LM head fp32.
    Torch only: no export format carries it.
``truncate-layers=N``
    Keep the first N decoder layers (1 <= N < the model's layers), then the final norm and the LM head
    (an early-exit model; a self-draft for speculative decoding, docs/speculative.md). Layers N.. and
    their KV caches are dropped; nothing is retrained.

No torch at import time: the CLI parses transforms without loading it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tinyexport.errors import UserError

from .config import ModelConfig

PRUNE_HEADS = "prune-heads"
KV_CACHE = "kv-cache"
MIXED_PRECISION = "mixed-precision"
TRUNCATE_LAYERS = "truncate-layers"
PRUNE_CRITERIA = ("o_proj", "activation")
PRUNE_ALLOCATIONS = ("layer", "global")  # scores normalised per layer (default) or compared raw
PRUNE_UNITS = ("heads", "groups")  # query heads inside their KV groups (default), or whole KV groups
TRANSFORM_SYNTAX = (
    "prune-heads=R[:o_proj|activation][:global][:groups], kv-cache=int8, mixed-precision=bf16, truncate-layers=N"
)
CALIBRATION_TOKENS = 512  # tokens of calibration text the activation criterion reads by default


_PRUNE_OPTIONS = {"criterion": PRUNE_CRITERIA, "allocation": PRUNE_ALLOCATIONS, "unit": PRUNE_UNITS}


class TransformError(UserError, ValueError):
    """A transform is malformed or cannot be applied to this model (message says which and why)."""


@dataclass(frozen=True)
class Transform:
    """One transform: its parameters and, once planned, what it removed.

    ``removed`` (prune-heads): per layer, the indices of the query heads removed, counted among the
    layer's heads before this transform. A KV group all of whose query heads are removed loses its KV
    head too (``unit=groups``).
    """

    name: str
    params: tuple[tuple[str, Any], ...] = ()
    removed: tuple[tuple[int, ...], ...] | None = None

    def param(self, key: str, default: Any = None) -> Any:
        return dict(self.params).get(key, default)

    @property
    def label(self) -> str:
        """The CLI spelling: ``prune-heads=0.25:activation``."""
        if self.name == TRUNCATE_LAYERS:
            return f"{TRUNCATE_LAYERS}={self.param('layers')}"
        if self.name == PRUNE_HEADS:
            allocation = "" if self.param("allocation", "layer") == "layer" else f":{self.param('allocation')}"
            unit = "" if self.param("unit", "heads") == "heads" else f":{self.param('unit')}"
            return f"{PRUNE_HEADS}={self.param('ratio'):g}:{self.param('criterion')}{allocation}{unit}"
        return f"{self.name}={self.param('value')}"

    def to_json(self, config_before: ModelConfig | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "params": dict(self.params)}
        if self.removed is not None:
            data["removed"] = {"query_heads_per_layer": [list(r) for r in self.removed]}
            if config_before is not None:
                removed_heads = sum(len(r) for r in self.removed)
                _, kv = pruned_head_counts(config_before, self.removed)
                removed_kv = sum(config_before.layer_heads(i)[1] - n for i, n in enumerate(kv))
                data["removed"]["query_heads"] = removed_heads
                data["removed"]["kv_heads"] = removed_kv
                data["removed"]["kv_heads_kept_per_layer"] = list(kv)
                data["removed"]["parameters"] = (
                    2 * (removed_heads + removed_kv) * config_before.head_dim * config_before.hidden_size
                )
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Transform:
        if not isinstance(data, Mapping) or not isinstance(data.get("name"), str):
            raise TransformError(f"manifest transform entry {data!r} has no name; re-run `tinyexport convert`")
        removed = (data.get("removed") or {}).get("query_heads_per_layer")
        params = data.get("params") or {}
        transform = cls(
            str(data["name"]),
            tuple(sorted(params.items())),
            tuple(tuple(int(h) for h in r) for r in removed) if removed is not None else None,
        )
        check_transform(transform)
        return transform


# ------------------------------------------------------------------------------------------ parsing
def parse_transform(text: str) -> Transform:
    """``"prune-heads=0.25:activation"`` -> Transform; TransformError naming the problem."""
    name, sep, value = text.strip().partition("=")
    name = name.strip()
    if not sep or not value.strip():
        raise TransformError(f"--transform {text!r} needs a value; use one of: {TRANSFORM_SYNTAX}")
    value = value.strip()
    if name == PRUNE_HEADS:
        ratio_text, *options = value.split(":")
        try:
            ratio = float(ratio_text)
        except ValueError:
            raise TransformError(f"--transform {text!r}: ratio {ratio_text!r} is not a number, e.g. 0.25") from None
        chosen = {"allocation": "layer", "criterion": "activation", "unit": "heads"}
        given: set[str] = set()
        for option in options:  # any order: a criterion, an allocation, a unit, each at most once
            kind = next((k for k, c in _PRUNE_OPTIONS.items() if option in c), None)
            if kind is None or kind in given:
                raise TransformError(
                    f"--transform {text!r}: option {option!r} is unknown or repeated; choose at most one each of "
                    + "; ".join(f"{k}: {', '.join(c)}" for k, c in _PRUNE_OPTIONS.items())
                )
            given.add(kind)
            chosen[kind] = option
        params = (*sorted(chosen.items()), ("ratio", ratio))
        if chosen["unit"] == "heads":  # manifests of within-group pruning stay as they were
            params = tuple(p for p in params if p[0] != "unit")
        transform = Transform(PRUNE_HEADS, tuple(sorted(params)))
    elif name in (KV_CACHE, MIXED_PRECISION):
        transform = Transform(name, (("value", value),))
    elif name == TRUNCATE_LAYERS:
        try:
            layers = int(value)
        except ValueError:
            raise TransformError(
                f"--transform {text!r}: {value!r} is not a whole number of layers to keep, e.g. truncate-layers=8"
            ) from None
        transform = Transform(TRUNCATE_LAYERS, (("layers", layers),))
    else:
        raise TransformError(f"unknown transform {name!r} in {text!r}; use one of: {TRANSFORM_SYNTAX}")
    check_transform(transform)
    return transform


def check_transform(t: Transform) -> None:
    if t.name == PRUNE_HEADS:
        ratio, criterion = t.param("ratio"), t.param("criterion")
        if not isinstance(ratio, (int, float)) or not 0 < ratio < 1:
            raise TransformError(f"prune-heads ratio must lie strictly between 0 and 1, got {ratio}; e.g. 0.25")
        if criterion not in PRUNE_CRITERIA:
            raise TransformError(
                f"prune-heads criterion {criterion!r} is unknown; choose one of {', '.join(PRUNE_CRITERIA)}"
            )
        if t.param("allocation", "layer") not in PRUNE_ALLOCATIONS:
            raise TransformError(
                f"prune-heads allocation {t.param('allocation')!r} is unknown; choose one of {', '.join(PRUNE_ALLOCATIONS)}"
            )
        if t.param("unit", "heads") not in PRUNE_UNITS:
            raise TransformError(
                f"prune-heads unit {t.param('unit')!r} is unknown; choose one of {', '.join(PRUNE_UNITS)}"
            )
    elif t.name == KV_CACHE:
        if t.param("value") != "int8":
            raise TransformError(f"kv-cache={t.param('value')} is not supported; the only choice is int8")
    elif t.name == MIXED_PRECISION:
        if t.param("value") != "bf16":
            raise TransformError(f"mixed-precision={t.param('value')} is not supported; the only choice is bf16")
    elif t.name == TRUNCATE_LAYERS:
        layers = t.param("layers")
        if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
            raise TransformError(
                f"truncate-layers={layers} must keep at least 1 layer (a whole number), e.g. truncate-layers=8"
            )
    else:
        raise TransformError(f"unknown transform {t.name!r}; use one of: {TRANSFORM_SYNTAX}")


def parse_transforms(texts: Sequence[str], kv_cache: str | None = None) -> tuple[Transform, ...]:
    """The CLI's ``--transform`` values (in order) then ``--kv-cache``; each transform at most once."""
    transforms = [parse_transform(t) for t in texts]
    if kv_cache is not None and kv_cache != "float32":
        transforms.append(parse_transform(f"{KV_CACHE}={kv_cache}"))
    names = [t.name for t in transforms]
    for name in (KV_CACHE, MIXED_PRECISION, TRUNCATE_LAYERS):
        if names.count(name) > 1:
            raise TransformError(f"{name} is given twice; pass it once")
    return tuple(transforms)


def check_carried(transforms: Sequence[Transform], fmt: str, carried: Sequence[str]) -> None:
    """Refuse transforms a format's converter cannot carry (``Format.transforms``)."""
    bad = [t.label for t in transforms if t.name not in carried]
    if bad:
        raise TransformError(
            f"--format {fmt} cannot carry {', '.join(bad)} (it carries {', '.join(carried) or 'no transforms'}); "
            "drop it, or run it with the torch backend (eval/bench/generate)"
        )


# ------------------------------------------------------------------------------------------ applying
def apply_transforms(
    config: ModelConfig,
    state: Mapping[str, Any],
    transforms: Sequence[Transform],
    calibration: Any = None,
) -> tuple[ModelConfig, dict[str, Any], tuple[Transform, ...]]:
    """Plan (where not yet planned) and apply each transform in order.

    ``state``: our-named fp32 tensors. ``calibration``: (1, T) int64 token ids for the activation
    criterion. Returns the new config, the new state and the transforms as planned (with ``removed``).
    """
    planned = []
    state = dict(state)
    for t in transforms:
        check_transform(t)
        if t.name == PRUNE_HEADS and t.removed is None:
            t = plan_prune_heads(config, state, t, calibration)
        config, state = apply_transform(config, state, t)
        planned.append(t)
    return config, state, tuple(planned)


def apply_transform(config: ModelConfig, state: dict[str, Any], t: Transform) -> tuple[ModelConfig, dict[str, Any]]:
    """Apply one planned transform (pure: ``state`` is not modified)."""
    if t.name == KV_CACHE:
        return dataclasses.replace(config, kv_cache_dtype=t.param("value")), state
    if t.name == MIXED_PRECISION:
        import torch

        out = {k: (v.to(torch.bfloat16) if _is_block_linear(k) else v) for k, v in state.items()}
        return dataclasses.replace(config, compute_dtype="bfloat16"), out
    if t.name == PRUNE_HEADS:
        if t.removed is None:
            raise TransformError("prune-heads was not planned (no heads chosen); re-run `tinyexport convert`")
        return remove_heads(config, state, t.removed)
    if t.name == TRUNCATE_LAYERS:
        return truncate_layers(config, state, t.param("layers"))
    raise TransformError(f"unknown transform {t.name!r}")


def truncate_layers(config: ModelConfig, state: Mapping[str, Any], keep: int) -> tuple[ModelConfig, dict[str, Any]]:
    """Keep decoder layers ``0..keep-1`` (their weights untouched), the embedding, final norm and LM head."""
    if not 1 <= keep < config.num_layers:
        raise TransformError(
            f"truncate-layers={keep}: the model has {config.num_layers} layers, so keep between 1 and "
            f"{config.num_layers - 1}; e.g. truncate-layers={max(config.num_layers // 2, 1)}"
        )
    out = {k: v for k, v in state.items() if not (k.startswith("layers.") and int(k.split(".")[1]) >= keep)}
    if config.num_heads_per_layer is None or config.num_kv_heads_per_layer is None:
        return dataclasses.replace(config, num_layers=keep), out
    heads, kv = config.num_heads_per_layer[:keep], config.num_kv_heads_per_layer[:keep]
    shorter = dataclasses.replace(
        config, num_layers=keep, num_heads_per_layer=heads, num_kv_heads_per_layer=kv, num_heads=max(heads),
        num_kv_heads=max(kv),
    )  # fmt: skip
    return shorter.with_layer_heads(heads, kv), out


def _is_block_linear(name: str) -> bool:
    return name.startswith("layers.") and (".attn.w" in name or ".mlp.w" in name)


def pruned_head_counts(
    config: ModelConfig, removed: Sequence[Sequence[int]]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Per layer (query heads, KV heads) left after removing query heads ``removed[layer]``; checked.

    A KV group that loses all its query heads loses its KV head; the other groups of the layer must each
    lose the same number of heads and keep at least one, and the layer must keep one group."""
    if len(removed) != config.num_layers:
        raise TransformError(
            f"prune-heads records {len(removed)} layers but the model has {config.num_layers}; "
            "the manifest does not belong to this checkpoint"
        )
    heads, kv_heads = [], []
    for layer, gone in enumerate(removed):
        n_h, n_kv = config.layer_heads(layer)
        group = n_h // n_kv
        gone = sorted(set(gone))
        if gone and (gone[0] < 0 or gone[-1] >= n_h):
            raise TransformError(f"prune-heads: layer {layer} has {n_h} query heads, cannot remove head {gone[-1]}")
        per_group = [sum(1 for h in gone if h // group == g) for g in range(n_kv)]
        partial = [n for n in per_group if n < group]
        if not partial or len(set(partial)) != 1:
            raise TransformError(
                f"prune-heads: layer {layer} would lose {per_group} heads of its {n_kv} KV groups of {group}; "
                "a group loses all its heads or as many as the layer's other groups, and one group must remain"
            )
        heads.append(n_h - len(gone))
        kv_heads.append(len(partial))
    return tuple(heads), tuple(kv_heads)


def remove_heads(
    config: ModelConfig, state: Mapping[str, Any], removed: Sequence[Sequence[int]]
) -> tuple[ModelConfig, dict[str, Any]]:
    """Drop query heads ``removed[layer]`` physically: rows of wq, columns of wo; a KV group whose query
    heads are all removed also loses its rows of wk and wv (``pruned_head_counts`` checks the shape)."""
    import torch

    heads, kv_heads = pruned_head_counts(config, removed)
    hd, out = config.head_dim, dict(state)
    for layer, gone in enumerate(removed):
        if not gone:
            continue
        n_h, n_kv = config.layer_heads(layer)
        group = n_h // n_kv
        kept = [h for h in range(n_h) if h not in set(gone)]
        kept_kv = sorted({h // group for h in kept})

        def rows(units: Sequence[int]) -> Any:
            return torch.tensor([r for u in units for r in range(u * hd, (u + 1) * hd)], dtype=torch.long)

        prefix = f"layers.{layer}.attn."
        out[prefix + "wq.weight"] = state[prefix + "wq.weight"].index_select(0, rows(kept)).contiguous()
        out[prefix + "wo.weight"] = state[prefix + "wo.weight"].index_select(1, rows(kept)).contiguous()
        if len(kept_kv) < n_kv:
            for name in ("wk.weight", "wv.weight"):  # (n_kv * hd, h)
                out[prefix + name] = state[prefix + name].index_select(0, rows(kept_kv)).contiguous()
    return config.with_layer_heads(heads, kv_heads), out


# ------------------------------------------------------------------------------------------ pruning
def head_importance(config: ModelConfig, state: Mapping[str, Any], criterion: str, calibration: Any = None):
    """Per layer, a (n_h,) float tensor of query-head importance (higher = keep)."""
    hd = config.head_dim
    if criterion == "o_proj":
        scores = []
        for layer in range(config.num_layers):
            wo = state[f"layers.{layer}.attn.wo.weight"].float()  # (h, n_h * hd)
            blocks = wo.reshape(wo.shape[0], -1, hd)  # (h, n_h, hd)
            scores.append(blocks.pow(2).sum(dim=(0, 2)).sqrt())  # (n_h,)
        return scores
    if criterion == "activation":
        if calibration is None:
            raise TransformError("prune-heads:activation needs calibration tokens")
        return _activation_importance(config, state, calibration)
    raise TransformError(f"unknown prune-heads criterion {criterion!r}")


def _activation_importance(config: ModelConfig, state: Mapping[str, Any], calibration: Any):
    """Mean over calibration tokens of ||W_o[:, head] @ attn_out[head]||: what each head adds to the residual."""
    import torch

    from .build import build_model
    from .llama import empty_kv_cache

    ids = torch.as_tensor(calibration, dtype=torch.long).reshape(1, -1)
    model = build_model(config, state, max_seq_len=max(ids.shape[1], 1))
    hd, captured = config.head_dim, {}

    def hook(layer: int):
        def capture(module, args) -> None:
            x = args[0][0]  # (T, n_h * hd)
            heads = x.reshape(x.shape[0], -1, hd)  # (T, n_h, hd)
            wo = module.weight.reshape(module.weight.shape[0], -1, hd)  # (h, n_h, hd)
            contrib = torch.einsum("thd,ohd->tho", heads.float(), wo.float())  # (T, n_h, h)
            captured[layer] = contrib.norm(dim=-1).mean(dim=0)  # (n_h,)

        return capture

    handles = [blk.attn.wo.register_forward_pre_hook(hook(i)) for i, blk in enumerate(model.layers)]
    try:
        with torch.inference_mode():
            model(ids, torch.arange(ids.shape[1]), empty_kv_cache(config, ids.shape[1]))
    finally:
        for h in handles:
            h.remove()
    return [captured[i] for i in range(config.num_layers)]


def plan_prune_heads(config: ModelConfig, state: Mapping[str, Any], t: Transform, calibration: Any = None) -> Transform:
    """Choose the heads ``prune-heads`` removes; return the transform with ``removed`` filled in."""
    choose = choose_groups if t.param("unit", "heads") == "groups" else choose_heads
    # a ratio that would empty a group depends on the head counts only: refuse it before scoring
    choose(config, [[0.0] * config.layer_heads(i)[0] for i in range(config.num_layers)], t.param("ratio"))
    scores = head_importance(config, state, t.param("criterion"), calibration)
    if t.param("allocation", "layer") == "layer":
        scores = [s / s.mean().clamp(min=1e-12) for s in scores]  # relative to the layer's heads
    return dataclasses.replace(t, removed=choose(config, scores, t.param("ratio")))


def choose_heads(config: ModelConfig, importance: Sequence[Any], ratio: float) -> tuple[tuple[int, ...], ...]:
    """Per layer, the query heads to remove so that ``ratio`` of all heads go (ratio 0: none).

    A step removes, from one layer, the least important remaining head of every KV group; steps are
    taken globally in order of the importance they remove (summed over the groups), lowest first.
    """
    total = sum(config.layer_heads(i)[0] for i in range(config.num_layers))
    target = round(ratio * total)
    steps = []  # (cost, layer, step index, heads removed by the step)
    for layer in range(config.num_layers):
        n_h, n_kv = config.layer_heads(layer)
        group = n_h // n_kv
        scores = [float(s) for s in importance[layer]]
        ranked = [sorted(range(g * group, (g + 1) * group), key=lambda h: (scores[h], h)) for g in range(n_kv)]
        for j in range(group - 1):  # each group keeps at least one head
            heads = tuple(r[j] for r in ranked)
            steps.append((sum(scores[h] for h in heads), layer, j, heads))
    removable = sum(len(s[3]) for s in steps)
    if target > removable:
        raise TransformError(
            f"prune-heads={ratio:g} would remove {target} of {total} query heads, leaving some KV group of a "
            f"layer with no head (at most {removable} = {removable / total:.0%} can go); lower the ratio"
        )
    removed: list[list[int]] = [[] for _ in range(config.num_layers)]
    count = 0
    # steps of one layer have non-decreasing cost, so the global order takes them in order
    for _cost, layer, _j, heads in sorted(steps, key=lambda s: (s[0], s[1], s[2])):
        if count >= target:
            break
        removed[layer].extend(heads)
        count += len(heads)
    return tuple(tuple(sorted(r)) for r in removed)


def choose_groups(config: ModelConfig, importance: Sequence[Any], ratio: float) -> tuple[tuple[int, ...], ...]:
    """Per layer, the query heads of the whole KV groups to remove so that ``ratio`` of all query heads
    go (ratio 0: none). A group's importance is the sum of its heads'; groups are taken globally,
    lowest first; each layer keeps its most important group."""
    total = sum(config.layer_heads(i)[0] for i in range(config.num_layers))
    target = round(ratio * total)
    candidates = []  # (cost, layer, group, its query heads)
    for layer in range(config.num_layers):
        n_h, n_kv = config.layer_heads(layer)
        group = n_h // n_kv
        scores = [float(s) for s in importance[layer]]
        groups = [
            (sum(scores[g * group : (g + 1) * group]), layer, g, tuple(range(g * group, (g + 1) * group)))
            for g in range(n_kv)
        ]
        candidates += sorted(groups)[:-1]  # the layer's most important group stays
    removable = sum(len(c[3]) for c in candidates)
    if target > removable:
        raise TransformError(
            f"prune-heads={ratio:g}:groups would remove {target} of {total} query heads, leaving a layer with "
            f"no KV group (at most {removable} = {removable / total:.0%} can go); lower the ratio"
        )
    removed: list[list[int]] = [[] for _ in range(config.num_layers)]
    count = 0
    for _cost, layer, _g, heads in sorted(candidates):
        if count >= target:
            break
        removed[layer].extend(heads)
        count += len(heads)
    return tuple(tuple(sorted(r)) for r in removed)


def transforms_json(config: ModelConfig, transforms: Sequence[Transform]) -> list[dict[str, Any]]:
    """Manifest entries: each transform with its parameters and what it removed (counted on the config
    it was applied to)."""
    entries = []
    for t in transforms:
        entries.append(t.to_json(config))
        if t.name == PRUNE_HEADS and t.removed is not None:
            config = config.with_layer_heads(*pruned_head_counts(config, t.removed))
        elif t.name == TRUNCATE_LAYERS:
            entries[-1]["removed"] = {"layers": config.num_layers - t.param("layers")}
            config = truncate_layers(config, {}, t.param("layers"))[0]
    return entries
