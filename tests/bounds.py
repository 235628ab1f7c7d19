"""Bounds the test-suite asserts on the re-implementation itself (tiny random configs, std-0.02 weights).

Test-only numbers: the verifier's tolerances per (format, recipe) live in ``tinyexport.formats.recipes``."""

REIMPL_TINY_MAX_ABS = 1e-5  # our model vs transformers LlamaForCausalLM, any attention implementation
FLASH_VS_STANDARD_PREFILL_MAX_ABS = 3e-5  # flash vs standard attention, prefill logits
FLASH_VS_STANDARD_DECODE_MAX_ABS = 1e-4  # flash vs standard attention, decode logits
