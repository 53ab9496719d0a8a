"""Events survive the trip through a pipe, and request parameters refuse nonsense clearly."""

from __future__ import annotations

import json
import pickle
from typing import Any

import pytest

from web2code.app.engine.events import (
    Event,
    Failed,
    Finished,
    GenerationParams,
    Progress,
    Started,
    Stats,
    Token,
    event_from_dict,
    event_from_json,
    event_to_dict,
    event_to_json,
)
from web2code.app.engine.prompt import DEFAULT_INSTRUCTION
from web2code.app.errors import BackendError, Cancelled, ImageError, RequestError, Web2CodeError

FULL_STATS = Stats(
    n_prompt_tokens=640,
    n_image_tokens=576,
    n_generated=12,
    load_s=1.5,
    image_encode_s=0.25,
    prefill_s=0.125,
    decode_s=0.5,
    tokens_per_s=24.0,
    finish_reason="length",
    reused_image=True,
    reused_prefix_tokens=610,
    max_tokens_clamped=True,
    devices=("CUDA0", "CPU"),
    n_gpu_layers_offloaded=33,
    seed=1234,
    variant=1,
)

EVERY_EVENT: list[Event] = [
    Started("req-1", "generate"),
    Started("req-2", "ask", variant=2, n_variants=3),
    Progress("load", 0.5, "Loading model"),
    Progress.counted("prefill", 3, 4, "Reading the prompt"),
    Progress("encode"),
    Token("<div class=\"a\">é\n", 1234, 7),
    Token("", 3, 0),
    Token("x", -1, 4, variant=2),
    Finished(FULL_STATS),
    Finished(),
    Failed("The image is not an image.", "traceback-ish\ndetail", "ImageError"),
]


@pytest.mark.parametrize("event", EVERY_EVENT, ids=lambda e: type(e).__name__)
def test_every_event_round_trips_through_json(event: Event) -> None:
    d = event_to_dict(event)
    assert json.loads(json.dumps(d)) == d  # plain JSON values only
    assert event_from_dict(json.loads(json.dumps(d))) == event
    line = event_to_json(event)
    assert "\n" not in line
    assert event_from_json(line) == event
    assert event_from_json(line.encode()) == event


def test_dict_form_names_the_event_type() -> None:
    assert event_to_dict(Token("x", 5, 0)) == {
        "type": "token", "text": "x", "token_id": 5, "index": 0, "variant": 0,
    }
    d = event_to_dict(Finished(FULL_STATS))
    assert d["type"] == "finished" and d["stats"]["devices"] == ["CUDA0", "CPU"]


def test_stats_accept_a_device_list_and_store_a_tuple() -> None:
    s = Stats(devices=["CUDA0"])  # type: ignore[arg-type]
    assert s.devices == ("CUDA0",)
    assert Stats.rate(10, 2.0) == 5.0 and Stats.rate(10, 0.0) == 0.0


@pytest.mark.parametrize(
    "data",
    [
        "token",
        [],
        {},
        {"type": "nope"},
        {"type": "token", "text": "x"},  # missing fields
        {"type": "token", "text": "x", "token_id": 1, "index": 0, "extra": 1},
        {"type": "started", "request_id": "r", "kind": "dance"},
        {"type": "progress", "phase": "decode"},
        {"type": "finished", "stats": {"finish_reason": "bored"}},
        {"type": "finished", "stats": []},
        {"type": "finished", "stats": {}, "x": 1},
    ],
)
def test_malformed_events_are_backend_errors(data: Any) -> None:
    with pytest.raises(BackendError, match="malformed event"):
        event_from_dict(data)


def test_garbage_lines_are_backend_errors() -> None:
    with pytest.raises(BackendError, match="garbage"):
        event_from_json("data: {not json")


def test_progress_fraction_is_clamped_and_counted_progress_computes_it() -> None:
    assert Progress("load", 1.2).fraction == 1.0
    assert Progress("load", -0.1).fraction == 0.0
    p = Progress.counted("prefill", 1, 4)
    assert (p.fraction, p.done, p.total) == (0.25, 1, 4)
    assert Progress.counted("prefill", 0, 0).fraction is None
    with pytest.raises(ValueError):
        Progress("load", float("nan"))


def test_failed_carries_the_error_type_across_a_pipe() -> None:
    failed = Failed.from_exception(ImageError("The image is damaged.", detail="at byte 12"))
    again = event_from_json(event_to_json(failed))
    assert isinstance(again, Failed)
    exc = again.to_exception()
    assert type(exc) is ImageError
    assert str(exc) == "The image is damaged." and exc.detail == "at byte 12"


def test_failed_from_a_bug_is_one_line_and_generic() -> None:
    failed = Failed.from_exception(ZeroDivisionError("division by zero"))
    assert failed.message == "Internal error: ZeroDivisionError: division by zero"
    assert type(failed.to_exception()) is Web2CodeError


@pytest.mark.parametrize("cls", [Web2CodeError, ImageError, BackendError, Cancelled])
def test_errors_are_one_line_and_survive_pickling_with_their_detail(cls: type[Web2CodeError]) -> None:
    exc = cls("Something  went\nwrong.", detail="line 1\nline 2")
    assert str(exc) == "Something went wrong."
    again = pickle.loads(pickle.dumps(exc))
    assert type(again) is cls and str(again) == str(exc) and again.detail == exc.detail


def test_events_are_immutable() -> None:
    t = Token("a", 1, 0)
    with pytest.raises(AttributeError):
        t.text = "b"  # type: ignore[misc]


# ----------------------------------------------------------- GenerationParams


def test_generation_defaults_follow_the_authors_eval_and_fit_the_context() -> None:
    p = GenerationParams()
    assert p.instruction == DEFAULT_INSTRUCTION
    assert p.temperature == 0.2
    assert (p.top_p, p.top_k, p.repeat_penalty) == (1.0, 0, 1.0)  # filters off
    assert p.seed is None and p.n_variants == 1
    assert p.max_tokens + 576 + 49 <= 2048  # image positions + default prompt text tokens
    assert not p.greedy and GenerationParams(temperature=0).greedy


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"instruction": "  "}, "instruction is empty"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": float("inf")}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_k": -1}, "top_k"),
        ({"top_k": 2.5}, "top_k"),
        ({"repeat_penalty": 0.0}, "repeat_penalty"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**32}, "seed"),
        ({"seed": True}, "seed"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 100_000}, "max_tokens"),
        ({"n_variants": 0}, "n_variants"),
    ],
)
def test_out_of_range_generation_values_are_request_errors(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(RequestError, match=message) as info:
        GenerationParams(**changes)
    assert "\n" not in str(info.value)
    assert info.value.exit_code == 2


def test_generation_params_round_trip_and_replace_validates() -> None:
    p = GenerationParams(instruction="Title?", temperature=0.0, top_p=0.9, top_k=40, seed=7, max_tokens=10)
    assert GenerationParams.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    assert p.replace(seed=8).seed == 8
    with pytest.raises(RequestError):
        p.replace(top_p=2.0)
    with pytest.raises(RequestError, match="Unknown generation parameters: min_p"):
        GenerationParams.from_dict({"min_p": 0.1})


# ----------------------------------------------------- the worker's event lines (property tests)
# What the worker process writes is untrusted input to the GUI: every event must survive the
# pipe unchanged, and every line that is not a well-formed event must become one clear Failed
# event (never an exception that would take the engine thread down).

from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from web2code.app.engine.worker import read_event  # noqa: E402

PROPERTY = settings(max_examples=150, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

_text = st.text(max_size=24)
_int = st.integers(-(2**40), 2**40)
_float = st.floats(allow_nan=False, allow_infinity=False, width=64)

STATS = st.builds(
    Stats, n_prompt_tokens=_int, n_image_tokens=_int, n_generated=_int, load_s=_float, image_encode_s=_float,
    prefill_s=_float, decode_s=_float, tokens_per_s=_float,
    finish_reason=st.sampled_from(["stop", "length", "cancelled"]), reused_image=st.booleans(),
    reused_prefix_tokens=_int, max_tokens_clamped=st.booleans(), devices=st.lists(_text, max_size=3),
    n_gpu_layers_offloaded=_int, vision_on_gpu=st.booleans(), seed=st.none() | _int, variant=_int,
    draft_tokens=_int, accepted_draft_tokens=_int, image_text_draft_tokens=_int, image_text_accepted_tokens=_int)
EVENTS: st.SearchStrategy[Event] = st.one_of(
    st.builds(Started, request_id=_text, kind=st.sampled_from(["generate", "ask"]), variant=_int,
              n_variants=_int),
    st.builds(Progress, phase=st.sampled_from(["load", "encode", "prefill"]), fraction=st.none() | _float,
              message=_text, done=st.none() | _int, total=st.none() | _int),
    st.builds(Token, text=_text, token_id=_int, index=_int, variant=_int),
    st.builds(Finished, stats=STATS),
    st.builds(Failed, message=_text, detail=_text, error_type=_text),
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | _int | _float | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)

# The wire types of every field, written out here independently of the code under test.
_KINDS: dict[str, str] = {
    "request_id": "str", "kind": "lit:generate,ask", "variant": "int", "n_variants": "int",
    "phase": "lit:load,encode,prefill", "fraction": "float?", "message": "str", "done": "int?", "total": "int?",
    "text": "str", "token_id": "int", "index": "int", "detail": "str", "error_type": "str",
    "n_prompt_tokens": "int", "n_image_tokens": "int", "n_generated": "int", "load_s": "float",
    "image_encode_s": "float", "prefill_s": "float", "decode_s": "float", "tokens_per_s": "float",
    "finish_reason": "lit:stop,length,cancelled", "reused_image": "bool", "reused_prefix_tokens": "int",
    "max_tokens_clamped": "bool", "devices": "strs", "n_gpu_layers_offloaded": "int",
    "vision_on_gpu": "bool", "seed": "int?",
    "draft_tokens": "int", "accepted_draft_tokens": "int",
    "image_text_draft_tokens": "int", "image_text_accepted_tokens": "int",
}


def _fits(kind: str, value: object) -> bool:
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if kind.endswith("?"):
        return value is None or _fits(kind[:-1], value)
    if kind.startswith("lit:"):
        return isinstance(value, str) and value in kind[4:].split(",")
    return {
        "str": isinstance(value, str),
        "int": is_int,
        "float": is_int or isinstance(value, float),
        "bool": isinstance(value, bool),
        "strs": isinstance(value, list) and all(isinstance(v, str) for v in value),
    }[kind]


def _is_clear_failure(ev: Event) -> bool:
    return (isinstance(ev, Failed) and ev.error_type == "BackendError" and bool(ev.message)
            and "\n" not in ev.message)


@PROPERTY
@given(EVENTS)
def test_any_event_round_trips_through_the_worker_pipe(event: Event) -> None:
    line = event_to_json(event)
    assert "\n" not in line
    assert event_from_json(line) == event
    assert read_event((line + "\n").encode()) == event


@PROPERTY
@given(st.binary(max_size=300) | st.text(max_size=100).map(str.encode))
@example(b"[" * 100_000)  # json.loads raises RecursionError, not ValueError, for this one
@example(b'{"type":"finished","stats":' * 5000)
def test_any_line_from_a_worker_is_an_event_never_an_exception(line: bytes) -> None:
    ev = read_event(line)
    assert isinstance(ev, (Started, Progress, Token, Finished, Failed))


@PROPERTY
@given(JSON_VALUES)
def test_json_that_is_not_an_event_is_a_clear_failure(value: Any) -> None:
    ev = read_event(json.dumps(value))
    valid_type = isinstance(value, dict) and value.get("type") in ("started", "progress", "token", "finished",
                                                                   "failed")
    assert valid_type or _is_clear_failure(ev), ev


@PROPERTY
@given(EVENTS, st.data())
def test_an_event_with_a_field_of_the_wrong_type_is_a_clear_failure(event: Event, data: st.DataObject) -> None:
    d = event_to_dict(event)
    target = d["stats"] if isinstance(event, Finished) else d
    name = data.draw(st.sampled_from(sorted(k for k in target if k != "type")))
    wrong = data.draw(JSON_VALUES.filter(lambda v: not _fits(_KINDS[name], v)))
    target[name] = wrong
    ev = read_event(json.dumps(d))
    assert _is_clear_failure(ev), (name, wrong, ev)
    assert "malformed" in ev.message  # type: ignore[union-attr]


@PROPERTY
@given(EVENTS, st.data())
def test_an_event_missing_a_field_or_with_an_extra_one_is_a_clear_failure(event: Event,
                                                                          data: st.DataObject) -> None:
    d = event_to_dict(event)
    target = d["stats"] if isinstance(event, Finished) else d
    if data.draw(st.booleans()):
        target[data.draw(_text.filter(lambda k: k not in target))] = data.draw(JSON_VALUES)
        assert _is_clear_failure(read_event(json.dumps(d)))
    else:
        # Missing fields with defaults fall back to them; required ones make the event malformed.
        name = data.draw(st.sampled_from(sorted(k for k in target if k != "type")))
        del target[name]
        ev = read_event(json.dumps(d))
        assert _is_clear_failure(ev) or type(ev) is type(event)


def test_absurdly_nested_json_is_garbage_not_a_recursion_error() -> None:
    from web2code.app.engine.events import event_from_json
    from web2code.app.errors import BackendError

    with pytest.raises(BackendError, match="garbage"):
        event_from_json(b"[" * 100_000 + b"]" * 100_000)
