"""Candidates: what verify, eval and bench compare. A spec is plain data (it crosses process
boundaries for bench); ``open_candidate`` turns it into a Runner.

Kinds: ``hf`` (transformers reference), ``torch`` (our model with an attention implementation),
``artefact`` (a TFLite/ONNX directory, through the runner its manifest names).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinyexport.errors import UserError


@dataclass(frozen=True)
class CandidateSpec:
    kind: str  # "hf" | "torch" | "artefact"
    attention: str = "standard"  # torch only
    path: str | None = None  # artefact only
    flash_block_size: int = 128

    @property
    def label(self) -> str:
        if self.kind == "torch":
            return f"torch:{self.attention}"
        if self.kind == "artefact":
            return Path(str(self.path)).name
        return self.kind

    def format_and_recipe(self) -> tuple[str, str]:
        if self.kind == "artefact":
            from tinyexport.artefact import load_artefact

            art = load_artefact(Path(str(self.path)), check_hashes=False)
            return art.format, art.recipe
        return ("hf" if self.kind == "hf" else "torch"), "fp32"


@dataclass(frozen=True)
class CheckpointRef:
    """How to re-resolve a checkpoint (recorded in manifests, passed to bench subprocesses)."""

    spec: str
    random_weights: bool = False
    seed: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"spec": self.spec, "random_weights": self.random_weights, "seed": self.seed}


def open_candidate(spec: CandidateSpec, checkpoint: Any = None, *, max_len: int = 2048, **runner_options: Any):
    """A Runner for ``spec``; ``checkpoint`` (a resolved Checkpoint) is needed for hf/torch kinds."""
    if spec.kind == "artefact":
        from tinyexport.runners import open_artefact_runner

        return open_artefact_runner(Path(str(spec.path)), **runner_options)
    if checkpoint is None:
        raise ValueError(f"candidate {spec.label} needs a checkpoint")
    if spec.kind == "hf":
        from tinyexport.runners.hf_runner import HFRunner

        return HFRunner.from_checkpoint(checkpoint, max_len=max_len)
    if spec.kind == "torch":
        from tinyexport.runners.torch_runner import TorchRunner

        return TorchRunner.from_checkpoint(
            checkpoint, attention=spec.attention, max_len=max_len, flash_block_size=spec.flash_block_size
        )
    raise UserError(f"unknown candidate kind {spec.kind!r}")


def checkpoint_for_artefacts(artefact_dirs: list[Path], override: str | None, random_weights: bool, seed: int):
    """The reference checkpoint for a set of artefacts: ``override`` or the one their manifests name.

    All artefacts must come from the same checkpoint (same fingerprint); a checkpoint resolved from
    the manifest must still have the fingerprint recorded at conversion.
    """
    from tinyexport.artefact import load_artefact
    from tinyexport.resolve import open_checkpoint

    sources = {}
    for d in artefact_dirs:
        art = load_artefact(d, check_hashes=False)
        src = art.manifest.get("source", {})
        sources[d] = src
    fingerprints = {s.get("fingerprint") for s in sources.values()}
    if len(fingerprints) > 1:
        raise UserError(
            "the artefacts come from different checkpoints (source fingerprints differ); verify one checkpoint's artefacts at a time"
        )
    if override is not None:
        return open_checkpoint(override, random_weights, seed)
    src = next(iter(sources.values()))
    ref = CheckpointRef(src.get("spec", ""), bool(src.get("random_weights", False)), int(src.get("seed", 0)))
    if not ref.spec:
        raise UserError(f"{artefact_dirs[0]}/manifest.json names no source checkpoint; pass --checkpoint")
    ckpt = open_checkpoint(ref.spec, ref.random_weights, ref.seed)
    recorded = src.get("fingerprint")
    if recorded and ckpt.fingerprint() != recorded:
        raise UserError(
            f"checkpoint {ref.spec!r} changed since {artefact_dirs[0].name} was converted "
            "(fingerprint differs); pass --checkpoint to compare against it anyway"
        )
    return ckpt
