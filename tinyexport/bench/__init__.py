"""``tinyexport bench``: time to first token, prefill and decode speed, peak memory and size of every
candidate (torch, HF, TFLite, ONNX), each in its own subprocess, against a measured roofline.

Modules: ``measure`` (timing over the Runner protocol), ``worker`` (the per-candidate subprocess),
``harness`` (spawns workers, assembles results), ``probes`` (memory bandwidth, matmul peak; cached per
host), ``roofline`` (bounds from bytes and FLOPs), ``machine`` (what ran it), ``csvlog`` (logs/bench.csv),
``table`` (the rich table), ``report`` (markdown + PNG plots from bench and eval JSON).
Nothing here imports torch: artefacts benchmark where only numpy and their runtime are installed.
"""
