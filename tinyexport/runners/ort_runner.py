"""ORTRunner: an ONNX artefact (past_key_values -> present graph) through onnxruntime.

Needs only ``onnxruntime`` and numpy (no torch, no transformers). One session serves prompt and decode
steps; the cache is the previous step's ``present`` outputs. With ``io_binding`` (the default) those
outputs stay onnxruntime ``OrtValue``s and are bound as the next step's inputs, so the growing cache is
never copied into numpy between steps.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from tinyexport.artefact import Artefact, ArtefactError
from tinyexport.errors import UserError
from tinyexport.formats.onnx_io import ATTENTION_MASK, INPUT_IDS, LOGITS, POSITION_IDS, IONames
from tinyexport.models.config import ModelConfig

from .base import as_tokens, check_capacity, check_rollback

OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")


class ORTOptionError(UserError, ValueError):
    """A runner option has a value onnxruntime cannot use."""


def session_options(
    threads: int | None = None, optimization: str = "all", spin: bool = True, spin_between_runs: bool = True
):
    """onnxruntime SessionOptions: ``threads`` intra-op threads (None: one per physical core),
    graph optimisation level by name. Idle intra-op threads spin-wait for work by default (onnxruntime's
    default), also for a while after a run returns. ``spin_between_runs=False`` keeps the spinning inside
    a run but parks the threads the moment it returns: what a session needs when another runtime in the
    same process (a speculative draft or target) computes between its runs on the same cores;
    ``spin=False`` never spins (every wake-up goes through the OS: slower inside a run)."""
    import onnxruntime as ort

    if optimization not in OPTIMIZATION_LEVELS:
        raise ORTOptionError(
            f"unknown graph optimisation level {optimization!r}; choose one of {', '.join(OPTIMIZATION_LEVELS)}"
        )
    if threads is not None and threads <= 0:
        raise ORTOptionError(f"threads must be positive, got {threads}")
    options = ort.SessionOptions()
    options.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if threads is not None:
        options.intra_op_num_threads = threads
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if not spin_between_runs:
        options.add_session_config_entry("session.force_spinning_stop", "1")
    options.log_severity_level = 3  # errors only: "unused initializer" notices are not the user's business
    return options


def check_onnx_file(path) -> None:
    """``onnx.checker`` on an artefact's model file when the ``onnx`` package is installed (it comes with
    the export stack; a runtime-only install relies on onnxruntime's own validation at load)."""
    if importlib.util.find_spec("onnx") is None:
        return
    import onnx

    try:
        onnx.checker.check_model(str(path))
    except (onnx.checker.ValidationError, onnx.onnx_cpp2py_export.checker.ValidationError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ArtefactError(f"{path} fails onnx.checker ({first}); re-run `tinyexport convert`") from None


class ORTRunner:
    """Batch-1 Runner over an onnxruntime ``InferenceSession`` of our ONNX graph."""

    def __init__(
        self,
        session: Any,
        config: ModelConfig,
        *,
        max_len: int,
        logits_positions: str,
        name: str = "onnx",
        io_binding: bool = True,
    ) -> None:
        self.session = session
        self.config = config
        self.max_len = max_len
        self.logits_positions = logits_positions
        self.name = name
        self.io_binding = io_binding
        inputs = {i.name: i for i in session.get_inputs()}
        names = IONames(config.num_layers, config.kv_cache_dtype == "int8")
        self._past_names = names.past
        self._output_names = [o.name for o in session.get_outputs()]
        missing = [n for n in names.inputs if n not in inputs]
        if missing or self._output_names[:1] != [LOGITS]:
            raise ArtefactError(
                f"{name}: the ONNX graph lacks inputs {missing[:3]} or a first output 'logits'; "
                "it was not made by `tinyexport convert --format onnx` from this manifest's model"
            )
        self._empty_past = [
            self._empty(inputs[n], i // names.per_layer, i % names.per_layer) for i, n in enumerate(self._past_names)
        ]
        self.reset()

    def _empty(self, info: Any, layer: int, kind: int) -> np.ndarray:
        """An empty past (1, n_kv, 0, hd|1) of the graph's dtype; its shape must be the manifest's."""
        dtypes = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int8)": np.int8}
        n_kv = self.config.layer_heads(layer)[1]
        last = self.config.head_dim if kind < 2 else 1
        want_dtype = "tensor(int8)" if kind < 2 and self.config.kv_cache_dtype == "int8" else None
        if (
            info.shape[1] != n_kv
            or info.shape[3] != last
            or info.type not in dtypes
            or (want_dtype and info.type != want_dtype)
        ):
            raise ArtefactError(
                f"{self.name}: graph input {info.name} is {info.type} {info.shape} but the manifest's model has "
                f"{n_kv} KV heads of size {last} in layer {layer} (kv cache {self.config.kv_cache_dtype}); "
                "re-run `tinyexport convert`"
            )
        return np.zeros((1, n_kv, 0, last), dtype=dtypes[info.type])

    @classmethod
    def from_artefact(
        cls,
        art: Artefact,
        *,
        threads: int | None = None,
        optimization: str = "all",
        io_binding: bool = True,
        check: bool = True,
        name: str | None = None,
        spin: bool = True,
        spin_between_runs: bool = True,
    ) -> ORTRunner:
        import onnxruntime as ort

        # bad options fail before any file work
        options = session_options(threads, optimization, spin, spin_between_runs)
        if check:
            check_onnx_file(art.model_path)
        try:
            session = ort.InferenceSession(str(art.model_path), options, providers=["CPUExecutionProvider"])
        except (
            ort.capi.onnxruntime_pybind11_state.Fail,
            ort.capi.onnxruntime_pybind11_state.InvalidGraph,
            ort.capi.onnxruntime_pybind11_state.InvalidProtobuf,
            ort.capi.onnxruntime_pybind11_state.NoSuchFile,
        ) as err:
            first = str(err).strip().splitlines()[0]
            raise ArtefactError(
                f"onnxruntime cannot load {art.model_path} ({first}); re-run `tinyexport convert`"
            ) from None
        return cls(
            session,
            art.config,
            max_len=art.kv_cache_max_len,
            logits_positions=str(art.manifest.get("prefill_logits", "last")),
            name=name or art.name,
            io_binding=io_binding,
        )

    def reset(self) -> None:
        self.position = 0
        self._past: list[Any] = list(self._empty_past)

    def rollback(self, position: int) -> None:
        """Forget tokens from ``position`` on: every ``present`` tensor is cut to its first ``position``
        slots (a copy into numpy; the next call binds the copies as its ``past_key_values``)."""
        check_rollback(self.name, self.position, position)
        if position < self.position:
            self._past = [np.ascontiguousarray(_as_numpy(value)[:, :, :position]) for value in self._past]
        self.position = position

    def _feeds(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        end = self.position + ids.size
        return {
            INPUT_IDS: ids[None],
            ATTENTION_MASK: np.ones((1, end), dtype=np.int64),
            POSITION_IDS: np.arange(self.position, end, dtype=np.int64)[None],
        }

    def _run_plain(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        feeds.update(zip(self._past_names, self._past))
        logits, *present = self.session.run(self._output_names, feeds)
        self._past = present
        return logits

    def _run_bound(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        binding = self.session.io_binding()
        for name, array in feeds.items():
            binding.bind_cpu_input(name, array)
        for name, value in zip(self._past_names, self._past):
            if isinstance(value, np.ndarray):
                binding.bind_cpu_input(name, value)
            else:
                binding.bind_ortvalue_input(name, value)
        for name in self._output_names:
            binding.bind_output(name, "cpu")
        self.session.run_with_iobinding(binding)
        logits, *present = binding.get_outputs()
        self._past = present
        return logits.numpy()

    def prefill(self, tokens: np.ndarray) -> np.ndarray:
        ids = as_tokens(tokens)
        check_capacity(self.name, self.position, ids.size, self.max_len)
        feeds = self._feeds(ids)
        logits = self._run_bound(feeds) if self.io_binding else self._run_plain(feeds)
        self.position += ids.size
        return np.asarray(logits[0], dtype=np.float32)

    def decode(self, token: int) -> np.ndarray:
        return self.prefill(np.array([token], dtype=np.int64))[-1]


def _as_numpy(value: Any) -> np.ndarray:
    return value if isinstance(value, np.ndarray) else value.numpy()
