"""A name given twice in one object is found whatever the names and values hold: the quick scan
of a body's names never lets a repeat through that the exact reading would find."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.api.strict_json import _repeated_name

# Names and strings of the characters that delimit JSON's tokens, so that a value can look like
# a name to a scan that does not read the text from its start.
TEXT = st.text(alphabet=':,"{}[] ab\\\t', max_size=4)
SCALARS = st.one_of(TEXT, TEXT, st.integers(-3, 3), st.none())


def _objects(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    names = st.sampled_from([":", ": ", "a", ", ", ""]) | TEXT  # few, so that some repeat
    pairs = st.lists(st.tuples(names, children), max_size=4)
    return pairs.map(_Pairs) | st.lists(children, max_size=3)


class _Pairs(list):  # type: ignore[type-arg]
    """An object's (name, value) pairs, a name possibly given twice."""


def _text(node: Any) -> str:
    if isinstance(node, _Pairs):
        return "{" + ", ".join(f"{json.dumps(k)}: {_text(v)}" for k, v in node) + "}"
    if isinstance(node, list):
        return "[" + ",".join(_text(v) for v in node) + "]"
    return json.dumps(node)


def _has_repeat(node: Any) -> bool:
    if isinstance(node, _Pairs):
        names = [name for name, _ in node]
        return len(set(names)) < len(names) or any(_has_repeat(v) for _, v in node)
    if isinstance(node, list):
        return any(_has_repeat(v) for v in node)
    return False


BODIES = st.recursive(SCALARS, _objects, max_leaves=12).filter(lambda n: isinstance(n, _Pairs))


@settings(max_examples=500)
@given(BODIES)
def test_a_repeat_is_found_exactly_when_one_object_gives_a_name_twice(body):
    found = _repeated_name(_text(body).encode())

    assert (found is not None) == _has_repeat(body)
