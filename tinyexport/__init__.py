"""tinyexport: Llama-family re-implementation, parity checks, TFLite/ONNX export, verification and benchmarks."""

__version__ = "0.1.0"
