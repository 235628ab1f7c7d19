"""Fuzzing the file readers with mutated inputs (hypothesis): the GGUF parser and reader, the safetensors
header reader, the manifest loader, the tokenizer-file loader and the multiple-choice CSV reader.

For every input: only a ``UserError`` (the documented one-line error) may escape; the call finishes
within a time bound (a SIGALRM turns a hang into a failure); and the reader never allocates more than a
small multiple of the file's own size (tracemalloc's peak), i.e. no size field is trusted before it is
checked against the bytes that remain. Mutations: bytes set/flipped, inserted, deleted, the file cut
short, and little-endian u32/u64 fields overwritten with edge values (0, 2^31, 2^63, 2^64-1, the file
size...); the JSON-based formats also get whole sub-trees replaced by random JSON.

``TINYEXPORT_FUZZ_EXAMPLES`` sets the examples per reader (default 2000); run more with
``TINYEXPORT_FUZZ_EXAMPLES=50000 pytest -m fuzz``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import signal
import struct
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinyexport.errors import UserError
from tinyexport.models.config import ModelConfig

pytestmark = pytest.mark.fuzz

EXAMPLES = int(os.environ.get("TINYEXPORT_FUZZ_EXAMPLES", "2000"))
SECONDS_PER_INPUT = 10  # a reader that has not returned by then is hanging
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
MICRO = ModelConfig(
    vocab_size=8,
    hidden_size=8,
    intermediate_size=8,
    num_layers=1,
    num_heads=2,
    num_kv_heads=1,
    head_dim=4,
    max_position_embeddings=16,
)

EDGE_U64 = (0, 1, 2, 7, 8, 0xFF, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1)


@st.composite
def mutated(draw, seed: bytes, hot: int = 512) -> bytes:
    """``seed`` with 1-6 mutations, half of them in its first ``hot`` bytes (where the headers are)."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 6))):
        size = len(data)
        if size == 0:
            break
        pos = draw(st.one_of(st.integers(0, min(hot, size) - 1), st.integers(0, size - 1)))
        op = draw(st.sampled_from(("set", "flip", "u32", "u64", "insert", "delete", "truncate")))
        if op == "set":
            data[pos] = draw(st.integers(0, 255))
        elif op == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op in ("u32", "u64"):
            width = 4 if op == "u32" else 8
            value = draw(st.sampled_from((*EDGE_U64, size, size + 1, size - pos)))
            data[pos : pos + width] = (value % 2 ** (8 * width)).to_bytes(width, "little")
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 64))]
        else:
            del data[pos:]
    return bytes(data)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)


@st.composite
def json_mutated(draw, seed: object) -> object:
    """``seed`` (a parsed JSON document) with 1-3 of its nodes replaced, deleted or added."""
    doc = json.loads(json.dumps(seed))
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(doc))
        parent, key = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(("replace", "delete", "add")))
        if action == "replace" or not isinstance(parent, dict | list):
            parent[key] = draw(JSON_VALUES)
        elif action == "delete" and isinstance(parent, dict):
            parent.pop(key, None)
        elif action == "delete":
            del parent[key]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(JSON_VALUES)
        else:
            parent.insert(key, draw(JSON_VALUES))
    return doc


def _paths(doc: object, limit: int = 400):
    """(container, key) pairs of a document's nodes, breadth first, at most ``limit``."""
    queue, count = [doc], 0
    while queue and count < limit:
        node = queue.pop(0)
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, child in items:
            yield node, key
            count += 1
            queue.append(child)


class _Hang(Exception):
    pass


@contextlib.contextmanager
def time_bound(seconds: float):
    def alarm(signum, frame):
        raise _Hang(f"the reader did not return within {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def survives(read: Callable[[], object], file_bytes: int, factor: int = 32, slack: int = 8 << 20) -> None:
    """Run ``read``: a ``UserError`` or success is fine, anything else fails the test; so does a hang or
    a Python-visible allocation above ``factor`` x the input's size + ``slack`` (tracemalloc traces
    numpy's buffers too, and records an allocation's requested size even where the kernel would
    back it lazily)."""
    tracemalloc.start()
    try:
        with time_bound(SECONDS_PER_INPUT), contextlib.suppress(UserError):
            read()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= factor * file_bytes + slack, f"allocated {peak} bytes for a {file_bytes}-byte input"


# ---------------------------------------------------------------------------------------------- GGUF
@pytest.fixture(scope="module")
def gguf_seed(tmp_path_factory) -> bytes:
    from .tiny_models import hf_llama, write_gguf

    path = tmp_path_factory.mktemp("gguf") / "micro.gguf"
    write_gguf(MICRO, hf_llama(MICRO, seed=1).state_dict(), path)
    return path.read_bytes()


def test_gguf_seed_is_valid(gguf_seed, tmp_path):
    from tinyexport.models.weights import read_gguf

    (tmp_path / "m.gguf").write_bytes(gguf_seed)
    config, state, _ = read_gguf(tmp_path / "m.gguf")
    assert config.hidden_size == MICRO.hidden_size and len(state) == 9 + 3


@FUZZ
@given(data=st.data())
def test_gguf_reader_survives_mutations(gguf_seed, tmp_path, data):
    from tinyexport.models.weights import read_gguf

    blob = data.draw(mutated(gguf_seed, hot=1500))
    path = tmp_path / "m.gguf"
    path.write_bytes(blob)
    survives(lambda: read_gguf(path), len(blob))


def test_gguf_declared_sizes_beyond_the_file_are_refused_before_allocation(gguf_seed, tmp_path):
    """Hand-made worst cases: a 2^60-item array, a 2^62-byte string, a tensor 'of 2^40 elements'."""
    from tinyexport.models.gguf_file import GGUFFormatError, read_gguf_file

    header = b"GGUF" + struct.pack("<IQQ", 3, 0, 1)
    cases = {
        "array": header + struct.pack("<Q", 1) + b"k" + struct.pack("<IIQ", 9, 4, 2**60),
        "string": header + struct.pack("<Q", 2**62) + b"k",
        "count": b"GGUF" + struct.pack("<IQQ", 3, 2**40, 2**40),
        "tensor": b"GGUF"
        + struct.pack("<IQQ", 3, 1, 0)
        + struct.pack("<Q", 1)
        + b"t"
        + struct.pack("<IQQIQ", 2, 2**20, 2**20, 0, 0),
    }
    for name, blob in cases.items():
        path = tmp_path / f"{name}.gguf"
        path.write_bytes(blob + b"\0" * 64)
        with pytest.raises(GGUFFormatError):
            survives(lambda p=path: read_gguf_file(p), len(blob) + 64, factor=4, slack=1 << 20)
            read_gguf_file(path)


def test_gguf_layer_count_beyond_its_tensors_is_refused_before_the_name_table(gguf_seed, tmp_path):
    """block_count = 2^31 made the per-layer name table hang (found by a 10,000-input run)."""
    from tinyexport.models.weights import WeightsError, read_gguf

    blob = bytearray(gguf_seed)
    at = blob.index(b"llama.block_count") + len(b"llama.block_count")
    assert struct.unpack_from("<I", blob, at)[0] == 4  # a u32 value follows
    struct.pack_into("<I", blob, at + 4, 2**31)
    (tmp_path / "m.gguf").write_bytes(bytes(blob))
    with pytest.raises(WeightsError, match="declares 2147483648 layers but holds only 12 tensors"):
        survives(lambda: read_gguf(tmp_path / "m.gguf"), len(blob), factor=4, slack=1 << 20)
        read_gguf(tmp_path / "m.gguf")


# -------------------------------------------------------------------------------------- safetensors
@pytest.fixture(scope="module")
def safetensors_seed(tmp_path_factory) -> bytes:
    from safetensors.numpy import save_file

    path = tmp_path_factory.mktemp("st") / "m.safetensors"
    save_file(
        {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.ones(5, dtype=np.float16)},
        str(path),
        metadata={"format": "pt"},
    )
    return path.read_bytes()


@FUZZ
@given(data=st.data())
def test_safetensors_header_reader_survives_mutations(safetensors_seed, tmp_path, data):
    from tinyexport.models.weights import read_safetensors_header

    n = int.from_bytes(safetensors_seed[:8], "little")
    if data.draw(st.booleans()):
        blob = data.draw(mutated(safetensors_seed, hot=8 + n))
    else:
        header = data.draw(json_mutated(json.loads(safetensors_seed[8 : 8 + n])))
        text = json.dumps(header).encode()
        blob = struct.pack("<Q", len(text)) + text + safetensors_seed[8 + n :]
    path = tmp_path / "m.safetensors"
    path.write_bytes(blob)
    survives(lambda: read_safetensors_header(path), len(blob))


def test_safetensors_header_length_beyond_the_file(tmp_path):
    from tinyexport.models.weights import WeightsError, read_safetensors_header

    path = tmp_path / "m.safetensors"
    path.write_bytes(struct.pack("<Q", 2**63) + b"{}")
    with pytest.raises(WeightsError, match="header length"):
        read_safetensors_header(path)


# ----------------------------------------------------------------------------------------- manifest
@pytest.fixture(scope="module")
def artefact_seed(tmp_path_factory) -> Path:
    from tinyexport.artefact import write_manifest

    art = tmp_path_factory.mktemp("art") / "seed"
    art.mkdir()
    (art / "model.onnx").write_bytes(b"not really a model, but hashed like one")
    (art / "tokenizer.json").write_text("{}")
    write_manifest(
        art,
        {
            "format": "onnx",
            "recipe": "fp32",
            "model_file": "model.onnx",
            "model_config": MICRO.to_dict(),
            "kv_cache_max_len": 16,
            "prefill_seq_lens": [4],
        },
    )
    return art


@FUZZ
@given(data=st.data())
def test_manifest_loader_survives_mutations(artefact_seed, tmp_path, data):
    from tinyexport.artefact import MANIFEST, load_artefact

    art = tmp_path / "art"
    if not art.exists():
        shutil.copytree(artefact_seed, art)
    text = (artefact_seed / MANIFEST).read_bytes()
    if data.draw(st.booleans()):
        blob = data.draw(mutated(text, hot=len(text)))
    else:
        blob = json.dumps(data.draw(json_mutated(json.loads(text)))).encode()
    (art / MANIFEST).write_bytes(blob)

    def load() -> None:
        a = load_artefact(art)
        (a.format, a.recipe, a.config, a.model_path, a.kv_cache_max_len, a.size_bytes())

    survives(load, len(blob))


# ----------------------------------------------------------------------------------------- tokenizer
@pytest.fixture(scope="module")
def tokenizer_seed() -> bytes:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {c: i for i, c in enumerate(["a", "b", "c", "ab", "abc", " ", "Ġ", "<s>"])}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[("a", "b"), ("ab", "c")]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok.to_str().encode()


@FUZZ
@given(data=st.data())
def test_tokenizer_loader_survives_mutations(tokenizer_seed, tmp_path, data):
    from tinyexport.tokenizer import Tokenizer

    if data.draw(st.booleans()):
        blob = data.draw(mutated(tokenizer_seed, hot=len(tokenizer_seed)))
    else:
        blob = json.dumps(data.draw(json_mutated(json.loads(tokenizer_seed)))).encode()
    (tmp_path / "tokenizer.json").write_bytes(blob)

    def load() -> None:
        tok = Tokenizer(tmp_path)
        tok.decode(tok.encode("abc cab"))

    survives(load, len(blob), factor=64)


# ------------------------------------------------------------------------------------ multiple choice
def _choice_seed() -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["What is 1+1?", "1", "2", "3", "4", "B"])
    writer.writerow(['Quote "this", please', "a,b", "c\nd", "e", "f", "D"])
    return out.getvalue().encode()


@FUZZ
@given(data=st.data())
def test_choice_csv_reader_survives_mutations(tmp_path, data):
    from tinyexport.verify.choice import read_questions

    seed = _choice_seed()
    blob = data.draw(st.one_of(mutated(seed, hot=len(seed)), st.binary(max_size=256)))
    path = tmp_path / "subject_test.csv"
    path.write_bytes(blob)
    survives(lambda: read_questions(path), len(blob))
