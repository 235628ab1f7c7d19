"""``model.litertlm``: a LiteRT-LM bundle of a tinyexport TFLite artefact. No torch.

A ``.litertlm`` file (built with ``litert-lm-builder``) holds sections: our ``model.tflite`` unchanged
as the ``prefill_decode`` model, the HF ``tokenizer.json`` (zlib-compressed), and an ``LlmMetadata``
proto (stop tokens, optional start token, Jinja chat template, default sampler, context length).
LiteRT-LM recognises our signatures as its "PyTorch, CPU-only" layout: ``prefill_*`` / ``decode``
signatures with inputs ``tokens``, ``input_pos``, ``kv_cache_{k,v}_{i}`` and output ``logits`` (no
``mask`` input), so the TFLite file needs no change. The contract is in docs/litertlm.md.

The bundle is added to the artefact directory atomically: the directory is rebuilt beside itself
(files hard-linked, the bundle built there, the manifest rewritten by ``write_manifest`` so every
sha256 is right) and swapped into place, so a crash leaves the old artefact untouched.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from tinyexport.artefact import MANIFEST, Artefact, ArtefactError, load_artefact, write_manifest
from tinyexport.atomic import atomic_directory
from tinyexport.errors import UserError
from tinyexport.formats.litertlm_io import BUNDLE_FILE, bundle_path

# tokenizer.json model types LiteRT-LM's HF tokenizer (the Rust `tokenizers` crate) reads.
SUPPORTED_TOKENIZER_MODELS = ("BPE", "WordPiece", "WordLevel", "Unigram")


class BundleError(UserError, ValueError):
    """The artefact cannot be bundled for LiteRT-LM (message names the field and the fix)."""


@dataclass(frozen=True)
class SamplerDefaults:
    """The bundle's default sampler. Greedy is stored as top-p with k=1 (LiteRT-LM 0.18.1's CPU
    sampler implements only the TOP_P type; GREEDY and TOP_K are refused as 'not implemented yet')."""

    temperature: float = 0.0  # 0 = greedy
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0

    def proto_fields(self) -> dict[str, Any]:
        if self.temperature == 0:
            return {"k": 1, "p": 1.0, "temperature": 1.0, "seed": self.seed}
        return {"k": self.top_k or 0, "p": self.top_p, "temperature": self.temperature, "seed": self.seed}


@dataclass(frozen=True)
class BundleSpec:
    stop_tokens: tuple[int, ...]
    start_token: int | None
    chat_template: str | None
    max_num_tokens: int
    sampler: SamplerDefaults = field(default_factory=SamplerDefaults)

    def to_json(self) -> dict[str, Any]:
        return {
            "stop_tokens": list(self.stop_tokens),
            "start_token": self.start_token,
            "chat_template": self.chat_template is not None,
            "max_num_tokens": self.max_num_tokens,
            "sampler": {"type": "TOP_P", **self.sampler.proto_fields()},
        }


def bundle_spec(
    art: Artefact, sampler: SamplerDefaults | None = None, extra_stop_tokens: tuple[int, ...] = ()
) -> BundleSpec:
    """What goes into the bundle's LlmMetadata, read from the artefact's manifest and tokenizer files.

    Stop tokens: the model config's ``eos_token_id`` (what ``tinyexport generate`` stops on) plus any
    extra. Start token: the BOS id only when ``tokenizer_config.json`` says ``add_bos_token`` and the
    tokenizer.json itself does not add it (LiteRT-LM prepends the start token to a session's first input).
    """
    if art.format != "tflite":
        raise BundleError(
            f"{art.path} is a {art.format} artefact; a LiteRT-LM bundle needs a tflite artefact "
            "(tinyexport convert --format tflite)"
        )
    tok_json = art.path / "tokenizer.json"
    if not tok_json.is_file():
        raise BundleError(
            f"{art.path} has no tokenizer.json, which LiteRT-LM needs inside the bundle; convert from a "
            "checkpoint that has one (an HF directory with tokenizer.json, a GGUF, or the default preset)"
        )
    check_tokenizer(tok_json)
    check_signature_order(art.model_path)
    cfg = art.config
    vocab = cfg.vocab_size
    stops = tuple(
        dict.fromkeys(
            t for t in ((cfg.eos_token_id,) if cfg.eos_token_id is not None else ()) + tuple(extra_stop_tokens)
        )
    )
    bad = [t for t in stops if not 0 <= t < vocab]
    if bad:
        raise BundleError(
            f"stop token id(s) {bad} are outside the vocabulary (0..{vocab - 1}); pass valid --stop-token ids"
        )
    if not stops:
        raise BundleError(
            f"{art.path}: the model config has no eos_token_id, so LiteRT-LM would never stop; pass --stop-token ID"
        )
    tok_cfg = _read_json(art.path / "tokenizer_config.json")
    start = None
    if (
        tok_cfg.get("add_bos_token")
        and cfg.bos_token_id is not None
        and not _tokenizer_adds(tok_json, cfg.bos_token_id)
    ):
        start = int(cfg.bos_token_id)
    from tinyexport.tokenizer import Tokenizer

    template = Tokenizer(art.path).chat_template()
    return BundleSpec(stops, start, template, art.kv_cache_max_len, sampler or SamplerDefaults())


def check_signature_order(model_path: Path) -> None:
    """Attention-span signatures (``prefill_{N}_s{W}``, ``decode_s{W}``) may ride along in the bundle:
    LiteRT-LM runs ``decode`` by name and keeps, per prefill length, the *last* ``prefill*`` signature
    in stored order (a map keyed by the ``input_pos`` length). The converter writes each length's
    whole-cache ``prefill_{N}`` after its spans, so LiteRT-LM runs whole-cache signatures only; refuse
    a file where a span signature would win instead (it would attend to too few slots past its span)."""
    from .tflite_file import signature_keys

    spans = span_signatures_litertlm_would_run(signature_keys(model_path))
    if spans:
        raise BundleError(
            f"{model_path}: LiteRT-LM would run the attention-span signature(s) {spans} for whole prompts "
            "(it keeps the last prefill signature of each length); re-convert with this tinyexport, or "
            "with --decode-spans none"
        )


def span_signatures_litertlm_would_run(keys: list[str]) -> list[str]:
    """Of signature ``keys`` in stored order, the span signatures LiteRT-LM would pick as its prefill
    runner of their length (the last ``prefill*`` key of each length wins there)."""
    from tinyexport.formats.tflite_io import parse_signature

    last: dict[int, tuple[str, int | None]] = {}
    for key in keys:
        parsed = parse_signature(key)
        if key.startswith("prefill") and parsed is not None:
            last[parsed[0]] = (key, parsed[1])
    return [key for key, span in last.values() if span is not None]


def check_tokenizer(path: Path) -> None:
    """Refuse a tokenizer.json LiteRT-LM cannot take, naming the field."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BundleError(f"{path} is not readable JSON ({err}); re-export the tokenizer") from None
    model = data.get("model") if isinstance(data, dict) else None
    kind = model.get("type") if isinstance(model, dict) else None
    if kind not in SUPPORTED_TOKENIZER_MODELS:
        raise BundleError(
            f"{path}: field model.type is {kind!r}; LiteRT-LM's HF tokenizer reads only "
            f"{', '.join(SUPPORTED_TOKENIZER_MODELS)} tokenizers"
        )


def _tokenizer_adds(tok_json: Path, token_id: int) -> bool:
    from tokenizers import Tokenizer as HFTokenizer

    ids = HFTokenizer.from_file(str(tok_json)).encode("a").ids
    return bool(ids) and ids[0] == token_id


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def llm_metadata_bytes(spec: BundleSpec) -> bytes:
    """The serialized ``litert.lm.proto.LlmMetadata`` for ``spec``."""
    from litert_lm_builder.runtime.proto import llm_metadata_pb2

    msg = llm_metadata_pb2.LlmMetadata()
    for token in spec.stop_tokens:
        msg.stop_tokens.add().token_ids.ids.append(int(token))
    if spec.start_token is not None:
        msg.start_token.token_ids.ids.append(int(spec.start_token))
    sampler = msg.sampler_params
    sampler.type = sampler.TOP_P
    for key, value in spec.sampler.proto_fields().items():
        setattr(sampler, key, value)
    msg.max_num_tokens = int(spec.max_num_tokens)
    if spec.chat_template is not None:
        msg.jinja_prompt_template = spec.chat_template
    msg.llm_model_type.generic_model.SetInParent()
    msg.supports_thinking = False
    msg.supports_function_calling = False
    return msg.SerializeToString()


def write_bundle(model_path: Path, tokenizer_json: Path, spec: BundleSpec, out_path: Path, name: str) -> None:
    """Build the ``.litertlm`` at ``out_path`` (the caller makes that atomic)."""
    from litert_lm_builder import litertlm_builder as lb

    meta_path = out_path.with_name(out_path.name + ".llm_metadata.pb")
    meta_path.write_bytes(llm_metadata_bytes(spec))
    try:
        builder = lb.LitertLmFileBuilder()
        builder.add_system_metadata(lb.Metadata(key="Authors", value="tinyexport", dtype=lb.DType.STRING))
        builder.add_system_metadata(lb.Metadata(key="model_name", value=name, dtype=lb.DType.STRING))
        builder.add_tflite_model(str(model_path), lb.TfLiteModelType.PREFILL_DECODE)
        builder.add_hf_tokenizer(str(tokenizer_json))
        builder.add_llm_metadata(str(meta_path))
        with open(out_path, "wb") as handle:
            builder.build(handle)
    finally:
        meta_path.unlink(missing_ok=True)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def bundle_artefact(
    path: Path | str,
    *,
    sampler: SamplerDefaults | None = None,
    extra_stop_tokens: tuple[int, ...] = (),
    force: bool = False,
    check: Callable[[Path, Path], None] | None = None,
) -> Artefact:
    """Add ``model.litertlm`` to the artefact at ``path`` and list it (with its sha256) in the manifest.

    ``check(staging_dir, bundle_file)`` runs on the finished bundle before it replaces the artefact;
    an exception there leaves the artefact as it was.
    """
    art = load_artefact(path)
    if BUNDLE_FILE in art.manifest["files"] and not force:
        raise BundleError(f"{art.path} already has {BUNDLE_FILE}; pass --force to rebuild it")
    spec = bundle_spec(art, sampler, extra_stop_tokens)
    try:
        builder_version = metadata.version("litert-lm-builder")
    except metadata.PackageNotFoundError:
        raise BundleError(
            "bundling needs litert-lm-builder; install it with: pip install 'tinyexport[litertlm]'"
        ) from None
    fields = {k: v for k, v in art.manifest.items() if k not in ("schema", "files")}
    fields["litertlm"] = {"file": BUNDLE_FILE, "litert_lm_builder": builder_version, **spec.to_json()}
    with atomic_directory(art.path, replace=True) as tmp:
        for rel in art.manifest["files"]:
            if rel == BUNDLE_FILE:
                continue
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            _link_or_copy(art.path / rel, tmp / rel)
        write_bundle(tmp / art.manifest["model_file"], tmp / "tokenizer.json", spec, tmp / BUNDLE_FILE, art.name)
        if check is not None:
            check(tmp, tmp / BUNDLE_FILE)
        write_manifest(tmp, fields)
    try:
        return load_artefact(art.path)
    except ArtefactError as err:  # pragma: no cover - would mean write_manifest hashed the wrong bytes
        raise RuntimeError(f"bundle written but the manifest does not verify: {err}") from None


__all__ = [
    "BUNDLE_FILE",
    "MANIFEST",
    "BundleError",
    "BundleSpec",
    "SamplerDefaults",
    "bundle_artefact",
    "bundle_path",
    "bundle_spec",
    "check_signature_order",
    "check_tokenizer",
    "llm_metadata_bytes",
    "write_bundle",
]
