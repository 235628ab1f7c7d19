"""The I/O contract of a tinyexport ONNX graph: tensor names, as Optimum and onnxruntime-genai spell
them. Pure data, no onnx import. Shared by the exporter, the fusion pass, the genai config writer and
``ORTRunner``, so none of them can disagree.

    inputs   input_ids (B, S) int64, attention_mask (B, past + S) int64, position_ids (B, S) int64,
             past_key_values.{i}.key / .value (B, n_kv, past, hd)
    outputs  logits (B, S or 1, V) float32, present.{i}.key / .value (B, n_kv, past + S, hd)
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


@dataclass(frozen=True)
class IONames:
    """Every graph input/output name of a ``num_layers``-layer model, in graph order."""

    num_layers: int

    @property
    def past(self) -> list[str]:
        """``past_key_values.0.key, past_key_values.0.value, past_key_values.1.key, ...``"""
        return [pattern % i for i in range(self.num_layers) for pattern in (PAST_KEY, PAST_VALUE)]

    @property
    def present(self) -> list[str]:
        return [pattern % i for i in range(self.num_layers) for pattern in (PRESENT_KEY, PRESENT_VALUE)]

    @property
    def inputs(self) -> list[str]:
        return [INPUT_IDS, ATTENTION_MASK, POSITION_IDS, *self.past]

    @property
    def outputs(self) -> list[str]:
        return [LOGITS, *self.present]
