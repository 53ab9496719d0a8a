"""The GGUF pair check and manifest discovery (app/engine/pair.py) against damaged and hostile input.

Tiny GGUF pairs are written with gguf-py (the same writer the converter uses);
hypothesis then damages their bytes, their metadata types and their manifests.
Whatever it does, the only exception that may come out is ModelError, and a
manifest never makes a file outside its folder an installed pair.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gguf import GGUFValueType, GGUFWriter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from web2code.app.engine import keys
from web2code.app.engine.pair import (
    MANIFEST_NAME,
    ModelPair,
    PairInfo,
    broken_manifests,
    discover,
    inspect_pair,
    manifest_pairs,
)
from web2code.app.engine.prompt import CHAT_TEMPLATE
from web2code.app.errors import ModelError

BOUNDED = settings(max_examples=80, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
N_EMBD, N_VOCAB = 8, 5

#: Metadata of a valid pair: key -> (value, type, array element type).
TEXT_KV: dict[str, tuple[Any, GGUFValueType, GGUFValueType | None]] = {
    "general.architecture": ("llama", GGUFValueType.STRING, None),
    "llama.embedding_length": (N_EMBD, GGUFValueType.UINT32, None),
    "llama.context_length": (64, GGUFValueType.UINT32, None),
    "tokenizer.ggml.tokens": ([f"t{i}" for i in range(N_VOCAB)], GGUFValueType.ARRAY, GGUFValueType.STRING),
    keys.LOGIT_OFFSET: ([0.25] * N_VOCAB, GGUFValueType.ARRAY, GGUFValueType.FLOAT32),
    "tokenizer.chat_template": (CHAT_TEMPLATE, GGUFValueType.STRING, None),
}
PROJ_KV: dict[str, tuple[Any, GGUFValueType, GGUFValueType | None]] = {
    "general.architecture": ("clip", GGUFValueType.STRING, None),
    "clip.has_vision_encoder": (True, GGUFValueType.BOOL, None),
    "clip.projector_type": ("mlp", GGUFValueType.STRING, None),
    "clip.vision.image_size": (28, GGUFValueType.UINT32, None),
}


def _write(path: Path, kv: dict[str, tuple[Any, GGUFValueType, GGUFValueType | None]],
           tensors: dict[str, np.ndarray[Any, Any]]) -> Path:
    w = GGUFWriter(path, "llama")
    w.kv_data[0].clear()  # the writer adds general.architecture itself; write exactly ``kv``
    for key, (value, vtype, sub) in kv.items():
        w.add_key_value(key, value, vtype, sub_type=sub)
    for name, t in tensors.items():
        w.add_tensor(name, t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def write_pair(folder: Path, *, text_kv: dict[str, Any] | None = None, proj_kv: dict[str, Any] | None = None,
               pair_id: str | None = None) -> ModelPair:
    pid = pair_id or uuid.uuid4().hex
    tkv = {**TEXT_KV, keys.PAIR_ID: (pid, GGUFValueType.STRING, None), **(text_kv or {})}
    pkv = {**PROJ_KV, keys.PAIR_ID: (pid, GGUFValueType.STRING, None), **(proj_kv or {})}
    model = _write(folder / "m-F32.gguf", {k: v for k, v in tkv.items() if v is not None},
                   {"token_embd.weight": np.ones((N_VOCAB, N_EMBD), np.float32)})
    mmproj = _write(folder / "mmproj-m-f16.gguf", {k: v for k, v in pkv.items() if v is not None},
                    {"mm.0.weight": np.ones((N_EMBD, 12), np.float32),
                     "mm.2.weight": np.ones((N_EMBD, N_EMBD), np.float32)})
    return ModelPair(model=model, mmproj=mmproj, name="m", quant="F32", pair_id=pid)


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> ModelPair:
    return write_pair(tmp_path_factory.mktemp("good"))


@pytest.fixture
def scratch() -> Iterator[Path]:
    # one folder per hypothesis example (a function-scoped tmp_path is shared by all examples)
    with tempfile.TemporaryDirectory(prefix="w2c-pair-") as d:
        yield Path(d)


def check(pair: ModelPair) -> PairInfo | ModelError:
    """inspect_pair's result or its ModelError; any other exception fails the test."""
    try:
        return inspect_pair(pair)
    except ModelError as e:
        assert "\n" not in str(e) and str(e)
        return e


def test_the_test_pair_is_valid(good: ModelPair) -> None:
    info = inspect_pair(good)
    assert (info.n_embd, info.n_vocab, info.projector_dim, info.image_size) == (N_EMBD, N_VOCAB, N_EMBD, 28)
    assert info.warnings == () and info.logit_offset is not None and info.logit_offset.shape == (N_VOCAB,)


# -- damaged bytes ------------------------------------------------------------------------------------
damage = st.one_of(
    st.tuples(st.just("flip"), st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
                                        min_size=1, max_size=8)),
    st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True)),
    st.tuples(st.just("garbage"), st.binary(min_size=0, max_size=64)),
    # a length or count field replaced by something huge
    st.tuples(st.just("u64"), st.tuples(st.floats(0, 1, exclude_max=True),
                                        st.sampled_from([2**31, 2**32 - 1, 2**40, 2**63, 2**64 - 1]))),
)


def _damaged(data: bytes, how: tuple[str, Any]) -> bytes:
    kind, arg = how
    buf = bytearray(data)
    if kind == "flip":
        # the header (magic, counts, metadata) is where parsing can go wrong: flip mostly there
        for where, x in arg:
            buf[int(where * min(len(buf), 600))] ^= x
    elif kind == "truncate":
        del buf[int(arg * len(buf)):]
    elif kind == "garbage":
        return b"GGUF" + bytes(arg)
    else:
        where, value = arg
        at = int(where * min(len(buf) - 8, 600))
        buf[at:at + 8] = value.to_bytes(8, "little")
    return bytes(buf)


@BOUNDED
@given(which=st.sampled_from(["model", "mmproj"]), how=damage)
def test_damaged_files_raise_only_model_error(good: ModelPair, scratch: Path, which: str, how: tuple[str, Any]
                                              ) -> None:
    model, mmproj = scratch / good.model.name, scratch / good.mmproj.name
    shutil.copyfile(good.model, model)
    shutil.copyfile(good.mmproj, mmproj)
    victim = model if which == "model" else mmproj
    victim.write_bytes(_damaged(victim.read_bytes(), how))
    check(ModelPair(model=model, mmproj=mmproj))


# -- metadata of the wrong type -----------------------------------------------------------------------
_SCALARS = {
    GGUFValueType.UINT32: st.integers(0, 2**32 - 1), GGUFValueType.INT32: st.integers(-(2**31), 2**31 - 1),
    GGUFValueType.UINT64: st.integers(0, 2**64 - 1), GGUFValueType.FLOAT32: st.floats(width=32),
    GGUFValueType.BOOL: st.booleans(), GGUFValueType.STRING: st.text(max_size=20),
}


@st.composite
def gguf_values(draw: st.DrawFn) -> tuple[Any, GGUFValueType, GGUFValueType | None]:
    vtype = draw(st.sampled_from([*_SCALARS, GGUFValueType.ARRAY]))
    if vtype != GGUFValueType.ARRAY:
        return draw(_SCALARS[vtype]), vtype, None
    sub = draw(st.sampled_from(list(_SCALARS)))
    return draw(st.lists(_SCALARS[sub], min_size=1, max_size=8)), vtype, sub  # the writer refuses []


@BOUNDED
@given(role=st.sampled_from(["text", "proj"]),
       key=st.sampled_from(sorted({*TEXT_KV, *PROJ_KV, keys.PAIR_ID})),
       value=st.one_of(st.none(), gguf_values()))
def test_metadata_of_any_type_raises_only_model_error(scratch: Path, role: str, key: str, value: Any) -> None:
    # None: the key is missing
    pair = write_pair(scratch, **{f"{role}_kv": {key: value}})  # type: ignore[arg-type]
    result = check(pair)
    if isinstance(result, PairInfo):
        assert result.n_embd > 0 and result.n_vocab > 0 and result.projector_dim == result.n_embd


@pytest.mark.parametrize(("role", "key", "value", "needle"), [
    ("text", "llama.embedding_length", ("8", GGUFValueType.STRING, None), "damaged"),
    ("text", keys.PAIR_ID, (7, GGUFValueType.UINT32, None), "damaged"),
    ("text", keys.LOGIT_OFFSET, (["a"] * N_VOCAB, GGUFValueType.ARRAY, GGUFValueType.STRING), "damaged"),
    ("text", keys.LOGIT_OFFSET, ([float("nan")] * N_VOCAB, GGUFValueType.ARRAY, GGUFValueType.FLOAT32),
     "damaged"),
    ("text", "tokenizer.ggml.tokens", ([1, 2, 3], GGUFValueType.ARRAY, GGUFValueType.INT32), "damaged"),
    ("proj", "clip.has_vision_encoder", ("yes", GGUFValueType.STRING, None), "damaged"),
    ("proj", keys.PAIR_ID, (uuid.uuid4().hex, GGUFValueType.STRING, None), "Mismatched pair"),
])
def test_wrong_types_are_named_as_damage(tmp_path: Path, role: str, key: str, value: Any, needle: str) -> None:
    pair = write_pair(tmp_path, **{f"{role}_kv": {key: value}})  # type: ignore[arg-type]
    with pytest.raises(ModelError, match=needle):
        inspect_pair(pair)


def test_fifo_or_folder_instead_of_a_model_is_refused_without_blocking(good: ModelPair, tmp_path: Path) -> None:
    fifo = tmp_path / "model.gguf"
    os.mkfifo(fifo)
    with pytest.raises(ModelError, match="not a file"):
        inspect_pair(ModelPair(model=fifo, mmproj=good.mmproj))
    with pytest.raises(ModelError, match="not a file"):
        inspect_pair(ModelPair(model=good.model, mmproj=tmp_path))
    with pytest.raises(ModelError, match="Cannot read"):
        inspect_pair(ModelPair(model=tmp_path / ("x" * 300), mmproj=good.mmproj))


# -- manifests ----------------------------------------------------------------------------------------
def _manifest(folder: Path, models: list[Any], mmproj: Any, **extra: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = {"format_version": keys.MANIFEST_FORMAT_VERSION, "name": "m", "pair_id": "x",
            "mmproj": {"file": mmproj}, "models": [{"quant": "F32", "file": f} for f in models], **extra}
    path = folder / MANIFEST_NAME
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.mark.parametrize("escape", ["/etc/passwd", "../outside.gguf", "sub/m-F32.gguf", "..", ".", "",
                                    "C:\\models\\m.gguf", "m\0.gguf"])
def test_a_manifest_naming_a_file_outside_its_folder_lists_no_pair(tmp_path: Path, escape: str) -> None:
    root = tmp_path / "models"
    pair = write_pair(_mkdir(root / "p"))
    (root / "outside.gguf").write_bytes(pair.model.read_bytes())  # exists, outside the folder
    _mkdir(root / "p" / "sub").joinpath("m-F32.gguf").write_bytes(b"")
    manifest = _manifest(root / "p", [escape], pair.mmproj.name)
    assert discover(root) == []
    assert broken_manifests(root) == [manifest]
    # and in the mmproj entry
    manifest = _manifest(root / "p", [pair.model.name], escape)
    assert discover(root) == []
    assert broken_manifests(root) == [manifest]


def test_a_good_manifest_lists_its_pair_and_a_link_inside_the_folder_is_allowed(tmp_path: Path) -> None:
    store = write_pair(_mkdir(tmp_path / "store"))
    folder = _mkdir(tmp_path / "models" / "p")
    (folder / "m.gguf").symlink_to(store.model)  # how files kept elsewhere are registered
    shutil.copyfile(store.mmproj, folder / "mmproj.gguf")
    manifest = _manifest(folder, ["m.gguf"], "mmproj.gguf")
    [pair] = discover(tmp_path / "models")
    assert (pair.model, pair.mmproj, pair.manifest) == (folder / "m.gguf", folder / "mmproj.gguf", manifest)
    assert inspect_pair(pair).pair_id == store.pair_id
    assert broken_manifests(tmp_path / "models") == []


def test_a_fifo_manifest_does_not_block_discovery(tmp_path: Path) -> None:
    folder = _mkdir(tmp_path / "models" / "p")
    os.mkfifo(folder / MANIFEST_NAME)
    # in a subprocess with a deadline: reading the FIFO would block forever
    code = ("import sys; from pathlib import Path; from web2code.app.engine.pair import discover, broken_manifests;"
            "r = Path(sys.argv[1]); print(len(discover(r)), len(broken_manifests(r)))")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "models")], capture_output=True, text=True,
                          timeout=60, check=True)
    assert proc.stdout.split() == ["0", "1"]


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_NAMES = ["m-F32.gguf", "mmproj-m-f16.gguf", "/etc/passwd", "../outside.gguf", "p/../m-F32.gguf", "a" * 300,
          "", ".", "..", "m-F32.gguf\0", "\\m-F32.gguf"]
file_names = st.one_of(st.sampled_from(_NAMES), st.sampled_from(_NAMES), st.text(max_size=20), json_values)


@st.composite
def manifests(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 3)) == 0:
        return draw(json_values)  # anything at all
    doc: dict[str, Any] = {
        "name": draw(st.one_of(st.just("m"), json_values)),
        "pair_id": draw(st.one_of(st.just("x"), json_values)),
        "mmproj": draw(st.one_of(st.fixed_dictionaries({"file": file_names}), json_values)),
        "models": draw(st.one_of(st.lists(st.one_of(st.fixed_dictionaries({"file": file_names, "quant": json_values}),
                                                    json_values), max_size=3), json_values)),
    }
    for key in draw(st.sets(st.sampled_from(sorted(doc)))):
        del doc[key]
    return doc


@BOUNDED
@given(doc=manifests(), raw=st.one_of(st.none(), st.binary(max_size=40)))
def test_random_manifests_never_raise_and_never_leave_their_folder(
    good: ModelPair, scratch: Path, doc: Any, raw: bytes | None
) -> None:
    root = scratch / "models"
    folder = _mkdir(root / "p")
    shutil.copyfile(good.model, folder / "m-F32.gguf")
    shutil.copyfile(good.mmproj, folder / "mmproj-m-f16.gguf")
    shutil.copyfile(good.model, root / "outside.gguf")  # a real GGUF just outside the folder
    text = json.dumps(doc) if raw is None else raw.decode("latin-1")
    (folder / MANIFEST_NAME).write_text(text, encoding="utf-8")
    pairs = discover(root)
    broken = broken_manifests(root)
    assert (pairs == []) or (broken == [])
    for pair in pairs:
        assert pair.model.parent == folder and pair.mmproj.parent == folder
        assert pair.model.is_file() and pair.mmproj.is_file()
        check(pair)
        assert manifest_pairs(folder / MANIFEST_NAME) != []


def test_key_names_are_defined_once() -> None:
    """app/engine/keys.py is the one definition; the converter and the engine import it."""
    import ast

    from web2code.converters import keys as converter_keys

    repo = Path(__file__).resolve().parents[2]
    names = {keys.LOGIT_OFFSET, keys.PAIR_ID, keys.MANIFEST_NAME}
    found = []
    for path in sorted([*(repo / "app").rglob("*.py"), *(repo / "converters").rglob("*.py")]):
        if path == repo / "app" / "engine" / "keys.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in names:
                found.append(f"{path.relative_to(repo)}:{node.lineno} {node.value!r}")
    assert found == [], "import these from web2code.app.engine.keys:\n" + "\n".join(found)
    assert (converter_keys.PAIR_ID, converter_keys.LOGIT_OFFSET) == (keys.PAIR_ID, keys.LOGIT_OFFSET)
