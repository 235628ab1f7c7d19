"""The one resolver: what the user named (a checkpoint spec, artefact directories, a prompt) becomes
resolved inputs, checked once, for verify, eval, bench and generate alike.

``resolve`` reads each artefact's manifest once and hashes each of its files once (``load_artefact``),
finds the reference checkpoint (``--checkpoint`` or the one the manifests name, whose fingerprint must
still match), and applies one policy to every candidate: same model shape as the reference, and when
the reference has a tokenizer every artefact carries the same vocabulary. ``Candidate`` is plain data
(it crosses process boundaries for bench) that opens the right Runner.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tinyexport.artefact import Artefact, load_artefact
from tinyexport.errors import UserError
from tinyexport.models.config import DEFAULT_CHECKPOINT, ModelConfig

DEFAULT_PROMPT = "In a quiet village at the foot of the mountains, an old clockmaker discovered that"
KINDS = ("hf", "torch", "artefact")


def open_checkpoint(spec: str, random_weights: bool = False, seed: int = 0, transforms: tuple = ()):
    """Resolve --checkpoint (materialising into the cache if needed), then plan ``transforms`` on it."""
    from tinyexport.models.checkpoint import resolve_checkpoint
    from tinyexport.paths import cache_dir

    ckpt = resolve_checkpoint(spec, cache=cache_dir(), random_weights=random_weights, seed=seed)
    return transform(ckpt, transforms, seed)


def calibration_ids(ckpt, seed: int = 0) -> np.ndarray:
    """(1, N) token ids for data-aware transforms: the start of a corpus text that is NOT the default
    evaluation text (so calibration never sees what eval scores); random ids without a tokenizer."""
    from tinyexport.models.transforms import CALIBRATION_TOKENS

    if ckpt.tokenizer_dir is None:
        return np.random.default_rng(seed).integers(0, ckpt.config.vocab_size, (1, CALIBRATION_TOKENS))
    from tinyexport.corpus import CALIBRATION_TEXT, default_corpus
    from tinyexport.paths import cache_dir
    from tinyexport.tokenizer import Tokenizer

    path = default_corpus(cache_dir()).directory / "texts" / CALIBRATION_TEXT
    ids = Tokenizer(ckpt.tokenizer_dir).encode(path.read_text(encoding="utf-8", errors="replace"))
    start = max(0, ids.size // 2 - CALIBRATION_TOKENS // 2)  # mid-play: past the Project Gutenberg header
    return np.asarray(ids[start : start + CALIBRATION_TOKENS], dtype=np.int64)[None]


def config_before_loading(spec: str, random_weights: bool = False):
    """The ModelConfig a ``--checkpoint`` value names when it is known without materialising anything (a
    preset's shape, an HF directory's config.json); None otherwise (a GGUF file, a bad value)."""
    from tinyexport.models.config import PRESETS, read_hf_config

    if spec in PRESETS:
        preset = PRESETS[spec]
        return preset.config if random_weights or preset.weights else None
    path = Path(spec).expanduser()
    if (path / "config.json").is_file():
        try:
            return read_hf_config(path)
        except (UserError, ValueError, OSError):
            return None  # open_checkpoint reports it properly
    return None


@dataclass(frozen=True)
class CheckpointRef:
    """How to re-resolve a checkpoint (recorded in manifests)."""

    spec: str
    random_weights: bool = False
    seed: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"spec": self.spec, "random_weights": self.random_weights, "seed": self.seed}


@dataclass(frozen=True)
class Candidate:
    """One thing to compare: transformers (``hf``), our model (``torch`` + attention) or an artefact."""

    kind: str
    attention: str = "standard"  # torch only
    flash_block_size: int = 128  # torch only
    artefact: Artefact | None = field(default=None, compare=False)  # artefact only
    transforms: tuple = ()  # torch only: planned models.transforms.Transform, applied when it opens

    def __post_init__(self) -> None:
        if self.kind not in KINDS or (self.kind == "artefact") != (self.artefact is not None):
            raise ValueError(f"bad candidate kind {self.kind!r} (artefact given: {self.artefact is not None})")

    @property
    def label(self) -> str:
        if self.kind == "torch":
            return f"torch:{self.attention}" + "".join(f"+{t.label}" for t in self.transforms)
        return self.artefact.name if self.artefact is not None else self.kind

    @property
    def format(self) -> str:
        return self.artefact.format if self.artefact is not None else self.kind

    @property
    def recipe(self) -> str:
        return self.artefact.recipe if self.artefact is not None else "fp32"

    def open(self, checkpoint: Any = None, *, max_len: int = 2048, all_logits: bool = False, **runner_options: Any):
        """The Runner; ``checkpoint`` (a resolved Checkpoint) is needed for hf/torch. ``all_logits``: an
        artefact whose format picks prefill logits at run time (GGUF) returns every position's."""
        if self.artefact is not None:
            from tinyexport.runners import open_artefact_runner

            return open_artefact_runner(self.artefact, all_logits=all_logits, **runner_options)
        if checkpoint is None:
            raise ValueError(f"candidate {self.label} needs a checkpoint")
        if self.kind == "hf":
            from tinyexport.runners.hf_runner import HFRunner

            # our "standard" is transformers' eager path; HFRunner refuses what transformers lacks (flash)
            hf_attention = "eager" if self.attention == "standard" else self.attention
            return HFRunner.from_checkpoint(checkpoint, max_len=max_len, attention=hf_attention)
        from tinyexport.runners.torch_runner import TorchRunner

        return TorchRunner.from_checkpoint(
            transform(checkpoint, self.transforms),
            attention=self.attention,
            max_len=max_len,
            flash_block_size=self.flash_block_size,
            name=self.label,
        )

    def to_json(self) -> dict[str, Any]:
        """For a bench worker process: the artefact by path (the parent already checked its hashes)."""
        path = None if self.artefact is None else str(self.artefact.path)
        return {
            "kind": self.kind,
            "attention": self.attention,
            "flash_block_size": self.flash_block_size,
            "path": path,
            "transforms": [t.to_json() for t in self.transforms],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Candidate:
        from tinyexport.models.transforms import Transform

        path = data.get("path")
        artefact = None if path is None else load_artefact(Path(path), check_hashes=False)
        transforms = tuple(Transform.from_json(t) for t in data.get("transforms", []))
        return cls(
            data["kind"],
            data.get("attention", "standard"),
            int(data.get("flash_block_size", 128)),
            artefact=artefact,
            transforms=transforms,
        )


REFERENCE = Candidate("hf")


@dataclass(frozen=True)
class Inputs:
    """What a command works on, resolved and checked."""

    checkpoint: Any  # tinyexport.models.checkpoint.Checkpoint, or None when no command needs it
    tokenizer: Any  # tinyexport.tokenizer.Tokenizer, or None (random-weight checkpoints have none)
    artefacts: tuple[Artefact, ...]
    candidates: tuple[Candidate, ...]  # the reference excluded
    reference: Candidate = REFERENCE  # transformers; our transformed model when verify meets transforms

    @property
    def config(self) -> ModelConfig:
        return self.checkpoint.config if self.checkpoint is not None else self.artefacts[0].config

    @property
    def name(self) -> str:
        if self.checkpoint is not None:
            return self.checkpoint.name
        return str(self.artefacts[0].manifest.get("source", {}).get("name", self.artefacts[0].name))

    def check_capacity(self, needed: int, what: str, fix: str) -> None:
        """Refuse if ``needed`` tokens exceed the model's positions or any artefact's KV cache.
        ``fix`` may use ``{limit}``."""
        if self.checkpoint is not None:
            limit = self.checkpoint.config.max_position_embeddings
            if needed > limit:
                raise UserError(
                    f"{what} needs {needed} tokens, which exceeds the max_position_embeddings ({limit}) "
                    f"of {self.checkpoint.name}; {fix.format(limit=limit)}"
                )
        for art in self.artefacts:
            if needed > art.kv_cache_max_len:
                raise UserError(
                    f"{what} needs {needed} tokens, which exceeds the KV cache of {art.name} "
                    f"({art.kv_cache_max_len}); {fix.format(limit=art.kv_cache_max_len)}"
                )


def resolve(
    artefact_paths: Sequence[Path] = (),
    *,
    checkpoint: str | None = None,
    random_weights: bool = False,
    seed: int = 0,
    attentions: Sequence[str] = (),
    default_attentions: Sequence[str] = (),
    flash_block_size: int = 128,
    need_checkpoint: bool = True,
    need_tokenizer: bool = False,
    transforms: Sequence[Any] = (),
    transformed_reference: bool = False,
) -> Inputs:
    """Resolve and check every input before any model loads (bad input raises ``UserError``).

    ``attentions``: our model as candidates; without them and without artefacts, ``default_attentions``.
    ``need_checkpoint``: resolve the reference checkpoint (artefact-only commands skip it: no torch).
    ``need_tokenizer``: refuse inputs without a tokenizer (text evaluation, generation).
    ``transforms`` (``--transform``/``--kv-cache``) apply to our model's candidates; each artefact carries
    its own (its manifest's, re-applied to the checkpoint and checked against its config).
    ``transformed_reference`` (verify): with transforms, the reference is our transformed model, and
    artefacts must all carry the same transforms (``--transform`` may repeat them).
    """
    hint = None  # a bare .gguf may take --checkpoint's tokenizer (when its token list is the same)
    if checkpoint is not None and any(Path(p).is_file() and Path(p).suffix == ".gguf" for p in artefact_paths):
        hint = open_checkpoint(checkpoint, random_weights, seed).tokenizer_dir
    arts = load_artefacts(artefact_paths, () if hint is None else (hint,))  # each manifest read/hashed once
    names = [a.name for a in arts]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UserError(f"artefact name(s) {twice} given twice; each candidate is reported by its directory name")
    ckpt = None
    if need_checkpoint or not arts:
        ckpt = _reference_checkpoint(arts, checkpoint, random_weights, seed)
    config = ckpt.config if ckpt is not None else source_config(arts[0])
    reference_name = ckpt.name if ckpt is not None else arts[0].name
    recorded = {}
    for art in arts:
        recorded[art.name] = artefact_transforms(art)
        expected = config
        if ckpt is not None and recorded[art.name]:
            expected = transform(ckpt, recorded[art.name]).config  # the round trip: manifest -> same model
        got = art.config if ckpt is not None else source_config(art)
        if got != expected and not _same_foreign_shape(art, got, expected):
            hint = " with its recorded transforms" if recorded[art.name] and ckpt is not None else ""
            raise UserError(
                f"{art.name} was exported from a different model shape than {reference_name}{hint}; "
                "pass the matching --checkpoint (or compare one model's artefacts at a time)"
            )
    tokenizer = _tokenizer(ckpt, arts, need_tokenizer)
    for art in arts:
        check_same_vocabulary(tokenizer, art)
    planned = tuple(transform(ckpt, tuple(transforms), seed).transforms) if transforms and ckpt is not None else ()
    reference = REFERENCE
    if transformed_reference:
        sets = {tuple(t.label for t in ts) for ts in recorded.values()}
        if len(sets) > 1:
            raise UserError("the artefacts carry different transforms; verify one set of transforms at a time")
        if sets and planned and tuple(t.label for t in planned) not in sets:
            raise UserError(
                f"--transform/--kv-cache {[t.label for t in planned]} differ from the artefacts' transforms "
                f"{list(next(iter(sets)))}; drop the options (the manifests say what was applied)"
            )
        planned = next(iter(recorded.values())) if arts else planned
        if planned:
            reference = Candidate("torch", transforms=planned)
    chosen = attentions or (
        () if arts and not (transforms and not transformed_reference) else tuple(default_attentions)
    )
    candidates = [Candidate("torch", a, flash_block_size, transforms=planned) for a in dict.fromkeys(chosen)]
    candidates += [Candidate("artefact", artefact=a) for a in arts]
    return Inputs(ckpt, tokenizer, arts, tuple(candidates), reference)


def load_artefacts(paths: Sequence[Path], tokenizer_dirs: Sequence[Path] = ()) -> tuple[Artefact, ...]:
    """Artefact directories, and bare ``.gguf`` files (llama.cpp's own conversions, any llama GGUF) wrapped
    once into an artefact under the cache (``converters.gguf_import``): the first of ``tokenizer_dirs`` and
    the artefact directories' tokenizers whose token list is the file's joins it."""
    is_file = [Path(p).is_file() and Path(p).suffix == ".gguf" for p in paths]
    dirs = {i: load_artefact(p) for i, p in enumerate(paths) if not is_file[i]}
    if any(is_file):
        from tinyexport.converters.gguf_import import wrap_gguf_file
        from tinyexport.paths import cache_dir

        tokenizers = [*tokenizer_dirs, *(a.tokenizer_dir for a in dirs.values() if a.tokenizer_dir is not None)]
        for i, p in enumerate(paths):
            if is_file[i]:
                dirs[i] = wrap_gguf_file(Path(p), cache_dir(), tokenizers)
    return tuple(dirs[i] for i in range(len(paths)))


def _same_foreign_shape(art: Artefact, got: ModelConfig, expected: ModelConfig) -> bool:
    """A GGUF made by another tool carries the shape but its own token ids / float32-rounded eps."""
    if "producer" not in art.manifest:
        return False
    from tinyexport.converters.gguf_import import same_shape

    return same_shape(got, expected)


def transform(ckpt, transforms: tuple, seed: int = 0):
    """``ckpt`` with ``transforms`` planned (calibration tokens read only if a criterion needs them);
    ``ckpt`` must be untransformed."""
    if not transforms:
        return ckpt
    from tinyexport.models.loading import transform_checkpoint

    needs_data = any(t.param("criterion") == "activation" and t.removed is None for t in transforms)
    calibration = calibration_ids(ckpt, seed) if needs_data else None
    return transform_checkpoint(ckpt, transforms, calibration)


def artefact_transforms(art: Artefact) -> tuple:
    """The transforms an artefact's manifest records (planned: re-applying them needs no calibration)."""
    from tinyexport.artefact import ArtefactError
    from tinyexport.models.transforms import Transform, TransformError

    entries = art.manifest.get("transforms", [])
    if not isinstance(entries, list):
        raise ArtefactError(f"{art.path}/manifest.json: 'transforms' is not a list; re-run `tinyexport convert`")
    try:
        return tuple(Transform.from_json(e) for e in entries)
    except TransformError as err:
        raise ArtefactError(f"{art.path}/manifest.json: {err}") from None


def source_config(art: Artefact) -> ModelConfig:
    """The model an artefact was exported from, before its transforms (recorded in the manifest)."""
    recorded = art.manifest.get("source", {}).get("model_config")
    return ModelConfig.from_dict(recorded) if recorded else art.config


def _reference_checkpoint(arts: Sequence[Artefact], override: str | None, random_weights: bool, seed: int):
    """``override``, or the checkpoint the artefacts' manifests name (all the same, still unchanged)."""
    if override is not None or not arts:
        if arts and len({a.manifest.get("source", {}).get("fingerprint") for a in arts} - {None}) > 1:
            raise UserError(_DIFFERENT_SOURCES)
        return open_checkpoint(override or DEFAULT_CHECKPOINT, random_weights, seed)
    # a wrapped GGUF file records no checkpoint: the others name it (or --checkpoint does)
    sources = [a.manifest.get("source", {}) for a in arts if a.manifest.get("source", {}).get("spec")]
    if len({s.get("fingerprint") for s in sources}) > 1:
        raise UserError(_DIFFERENT_SOURCES)
    src = sources[0] if sources else {}
    ref = CheckpointRef(src.get("spec", ""), bool(src.get("random_weights", False)), int(src.get("seed", 0)))
    if not ref.spec:
        raise UserError(f"{arts[0].path}/manifest.json names no source checkpoint; pass --checkpoint")
    ckpt = open_checkpoint(ref.spec, ref.random_weights, ref.seed)
    recorded = src.get("fingerprint")
    if recorded and ckpt.fingerprint() != recorded:
        raise UserError(
            f"checkpoint {ref.spec!r} changed since {arts[0].name} was converted "
            "(fingerprint differs); pass --checkpoint to compare against it anyway"
        )
    return ckpt


_DIFFERENT_SOURCES = (
    "the artefacts come from different checkpoints (source fingerprints differ); "
    "give one checkpoint's artefacts at a time"
)


def _tokenizer(ckpt: Any, arts: Sequence[Artefact], required: bool):
    from tinyexport.tokenizer import Tokenizer

    directory = ckpt.tokenizer_dir if ckpt is not None else arts[0].tokenizer_dir
    if directory is None:
        if required:
            what = f"checkpoint {ckpt.name}" if ckpt is not None else arts[0].name
            raise UserError(
                f"{what} has no tokenizer (tokenizer.json), and this command works on text; "
                "pass a checkpoint (or artefact) that carries its tokenizer"
            )
        return None
    return Tokenizer(directory)


def check_same_vocabulary(tokenizer: Any, art: Artefact) -> None:
    """One policy for every command: when the reference has a tokenizer, an artefact must carry the
    same vocabulary (logits, KL and perplexity across vocabularies are meaningless)."""
    from tinyexport.tokenizer import Tokenizer

    if tokenizer is None:
        return
    if art.tokenizer_dir is None:
        raise UserError(
            f"{art.name} carries no tokenizer.json, so it cannot be shown to share the reference's "
            "vocabulary; re-export it from a checkpoint with a tokenizer"
        )
    if Tokenizer(art.tokenizer_dir).vocab_fingerprint() != tokenizer.vocab_fingerprint():
        raise UserError(
            f"{art.name} carries a different tokenizer than the reference checkpoint; "
            "comparing across vocabularies is meaningless: compare artefacts of one checkpoint"
        )


def prompt_ids(tokenizer: Any, prompt: str | None, prompt_tokens: int | None, seed: int, vocab_size: int) -> np.ndarray:
    """Prompt ids from text (needs a tokenizer) or ``prompt_tokens`` deterministic random ids."""
    if prompt_tokens is not None:
        if prompt_tokens <= 0:
            raise UserError(f"--prompt-tokens must be positive, got {prompt_tokens}")
        return np.random.default_rng(seed).integers(0, vocab_size, prompt_tokens, dtype=np.int64)
    if tokenizer is None:
        raise UserError(
            "this checkpoint has no tokenizer (tokenizer.json); pass --prompt-tokens N for random prompt ids"
        )
    ids = tokenizer.encode(prompt if prompt is not None else DEFAULT_PROMPT)
    if ids.size == 0:
        raise UserError("the prompt encodes to no tokens; pass a non-empty --prompt")
    return ids


def resolve_config(preset: str | None, checkpoint: str | None) -> tuple[str, ModelConfig]:
    """A model shape without weights (``flops``): a preset, an HF directory's config.json or an artefact's manifest."""
    from tinyexport.models.config import PRESETS

    if (preset is None) == (checkpoint is None):
        raise UserError("pass exactly one of --config PRESET or --checkpoint PRESET|DIR")
    spec = preset if preset is not None else checkpoint
    if spec in PRESETS:
        return spec, PRESETS[spec].config
    if preset is not None:
        raise UserError(f"unknown preset {preset!r} for --config; choose one of {', '.join(PRESETS)}")
    path = Path(spec).expanduser()
    if (path / "manifest.json").is_file():
        from tinyexport.artefact import load_artefact

        return path.name, load_artefact(path, check_hashes=False).config
    if (path / "config.json").is_file():
        from tinyexport.models.config import read_hf_config

        return path.name, read_hf_config(path)
    raise UserError(
        f"--checkpoint {spec!r} is neither a preset ({', '.join(PRESETS)}) nor a directory with "
        "config.json or manifest.json; for a .gguf file use the directory tinyexport materialised from it"
    )
