"""``genai_config.json``: what onnxruntime-genai needs to load an artefact directory as it is.

genai reads the decoder's file name, shapes and I/O names from it, feeds ``input_ids``,
``attention_mask``, ``position_ids`` and the past cache, and reads ``logits`` and ``present``. With
``past_present_share_buffer`` false it passes each step's ``present`` back as the next ``past``,
which is our graph's concat contract. A ``logits`` output of static length 1 tells genai (>= 0.13)
that the graph returns only the last position during the prompt.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tinyexport.formats import onnx_io as io
from tinyexport.models.config import ModelConfig

GENAI_CONFIG = "genai_config.json"


def genai_config(config: ModelConfig, *, model_file: str, context_length: int) -> dict[str, Any]:
    # genai insists on an end token inside the vocabulary; a model without one (random test shapes)
    # gets the last id as a stand-in, so generation stops only if the model picks that id.
    eos = config.eos_token_id if config.eos_token_id is not None else config.vocab_size - 1
    bos = config.bos_token_id if config.bos_token_id is not None else eos
    return {
        "model": {
            "type": "llama",
            "bos_token_id": bos,
            "eos_token_id": eos,
            "pad_token_id": eos,
            "vocab_size": config.vocab_size,
            "context_length": context_length,
            "decoder": {
                "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
                "filename": model_file,
                "head_size": config.head_dim,
                "hidden_size": config.hidden_size,
                "num_attention_heads": config.num_heads,
                "num_key_value_heads": config.num_kv_heads,
                "num_hidden_layers": config.num_layers,
                "inputs": {
                    "input_ids": io.INPUT_IDS,
                    "attention_mask": io.ATTENTION_MASK,
                    "position_ids": io.POSITION_IDS,
                    "past_key_names": io.PAST_KEY,
                    "past_value_names": io.PAST_VALUE,
                },
                "outputs": {
                    "logits": io.LOGITS,
                    "present_key_names": io.PRESENT_KEY,
                    "present_value_names": io.PRESENT_VALUE,
                },
            },
        },
        "search": {
            "do_sample": False,
            "num_beams": 1,
            "max_length": context_length,
            "min_length": 0,
            "past_present_share_buffer": False,
            "repetition_penalty": 1.0,
            "temperature": 1.0,
            "top_k": 1,
            "top_p": 1.0,
        },
    }


def write_genai_config(directory: Path, config: ModelConfig, *, model_file: str, context_length: int) -> Path:
    path = Path(directory) / GENAI_CONFIG
    path.write_text(
        json.dumps(genai_config(config, model_file=model_file, context_length=context_length), indent=2) + "\n"
    )
    return path
