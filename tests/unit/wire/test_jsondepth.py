"""Tests for berth.wire.jsondepth: nesting measured without recursion, strings ignored."""

from __future__ import annotations

import json

import pytest

from berth.wire.jsondepth import MAX_DEPTH, TooDeep, check_depth, depth


@pytest.mark.parametrize("text, expected", [
    ("5", 0), ('"[[["', 0), ("{}", 1), ("[1, [2, {\"a\": [3]}]]", 4),
    ('["\\"[[", [[]]]', 3), ('{"k\\\\": [[]]}', 3), ('["\\u005b", []]', 2),
])
def test_depth(text: str, expected: int) -> None:
    assert depth(text) == expected
    assert depth(text.encode()) == expected


def test_depth_agrees_with_json_on_generated_documents() -> None:
    doc: object = "x[{\"}]"
    for i in range(60):
        doc = [{"k]": "["}, doc] if i % 2 else {"v": [doc, "{"]}
        text = json.dumps(doc)
        json.loads(text)
    assert depth(text) == 90


def test_limit() -> None:
    check_depth("[" * MAX_DEPTH + "]" * MAX_DEPTH)
    with pytest.raises(TooDeep):
        check_depth("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    with pytest.raises(TooDeep):
        check_depth(b"[" * 100000)  # unterminated still counts
    with pytest.raises(ValueError):  # callers catching ValueError for bad JSON catch this too
        check_depth("{\"a\":" * 1000 + "1" + "}" * 1000)


def test_many_brackets_in_strings_only() -> None:
    check_depth(json.dumps(["[" * 100000, "{" * 100000]))
