"""The I/O contract of a tinyexport ONNX graph: tensor names, as Optimum and onnxruntime-genai spell
them. Pure data, no onnx import. Shared by the exporter, the fusion pass, the genai config writer and
``ORTRunner``, so none of them can disagree.

    inputs   input_ids (B, S) int64, attention_mask (B, past + S) int64, position_ids (B, S) int64,
             past_key_values.{i}.key / .value (B, n_kv, past, hd)
    outputs  logits (B, S or 1, V) float32, present.{i}.key / .value (B, n_kv, past + S, hd)

``n_kv`` is the layer's own KV head count (head pruning may leave layers different). An int8 KV cache
has int8 key/value and adds ``past_key_values.{i}.key_scale`` / ``.value_scale`` and
``present.{i}.key_scale`` / ``.value_scale``, float32 (B, n_kv, past (+ S), 1), after each layer's pair.
"""

from __future__ import annotations

from dataclasses import dataclass

INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
POSITION_IDS = "position_ids"
LOGITS = "logits"
PAST_KEY = "past_key_values.%d.key"
PAST_VALUE = "past_key_values.%d.value"
PRESENT_KEY = "present.%d.key"
PRESENT_VALUE = "present.%d.value"
PAST_KEY_SCALE = "past_key_values.%d.key_scale"
PAST_VALUE_SCALE = "past_key_values.%d.value_scale"
PRESENT_KEY_SCALE = "present.%d.key_scale"
PRESENT_VALUE_SCALE = "present.%d.value_scale"


@dataclass(frozen=True)
class IONames:
    """Every graph input/output name of a ``num_layers``-layer model, in graph order."""

    num_layers: int
    int8: bool = False  # int8 KV cache: scales after each layer's key/value

    @property
    def per_layer(self) -> int:
        """Cache tensors per layer, in the order of the model's layer cache tuple."""
        return 4 if self.int8 else 2

    @property
    def past(self) -> list[str]:
        """``past_key_values.0.key, past_key_values.0.value, past_key_values.1.key, ...``"""
        patterns = (PAST_KEY, PAST_VALUE, PAST_KEY_SCALE, PAST_VALUE_SCALE)[: self.per_layer]
        return [pattern % i for i in range(self.num_layers) for pattern in patterns]

    @property
    def present(self) -> list[str]:
        patterns = (PRESENT_KEY, PRESENT_VALUE, PRESENT_KEY_SCALE, PRESENT_VALUE_SCALE)[: self.per_layer]
        return [pattern % i for i in range(self.num_layers) for pattern in patterns]

    @property
    def inputs(self) -> list[str]:
        return [INPUT_IDS, ATTENTION_MASK, POSITION_IDS, *self.past]

    @property
    def outputs(self) -> list[str]:
        return [LOGITS, *self.present]
