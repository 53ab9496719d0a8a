"""Batch output names: one per input, all distinct, the same for the CLI and the GUI."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from web2code.app.batchnames import output_names


def test_plain_names_keep_the_stem() -> None:
    assert output_names([Path("in/a.png"), Path("in/b.jpg")]) == ["a.html", "b.html"]


def test_same_stem_keeps_each_extension_whatever_the_order() -> None:
    assert output_names([Path("good.png"), Path("good.jpg")]) == ["good.png.html", "good.jpg.html"]
    assert output_names([Path("good.jpg"), Path("good.png")]) == ["good.jpg.html", "good.png.html"]
    # Case does not make two names different on macOS and Windows.
    assert output_names([Path("Good.png"), Path("good.jpg")]) == ["Good.png.html", "good.jpg.html"]


def test_same_file_name_from_two_folders_is_numbered_in_input_order() -> None:
    names = output_names([Path("a/good.png"), Path("b/good.png"), Path("c/good.png")])
    assert names == ["good.png.html", "good.png-2.html", "good.png-3.html"]


def test_a_number_never_takes_a_name_another_input_has_by_itself() -> None:
    names = output_names([Path("a/x.png"), Path("b/x.png"), Path("x.png-2.gif")])
    assert names == ["x.png.html", "x.png-3.html", "x.png-2.html"]


_part = st.text(alphabet="abAB.-2", min_size=1, max_size=5)


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(st.tuples(st.sampled_from(["d1", "d2"]), _part,
                          st.sampled_from([".png", ".jpg", ".PNG", ".gif"])), max_size=12))
def test_names_are_always_distinct_and_deterministic(items: list[tuple[str, str, str]]) -> None:
    paths = [Path(d) / (stem + ext) for d, stem, ext in items]
    names = output_names(paths)
    assert len(names) == len(paths)
    assert len({n.casefold() for n in names}) == len(names)
    assert all(n.endswith(".html") and "/" not in n for n in names)
    assert output_names(paths) == names
