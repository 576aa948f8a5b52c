"""berth.oci.gojson lays JSON out as Go's encoding/json does (the layouts docker's CLI prints)."""

from __future__ import annotations

import pytest

from berth.errors import InvalidArgument
from berth.oci import gojson


def test_indent_keeps_tokens_and_empty_containers_compact() -> None:
    raw = b' {"a":[], "b":{}, "n":1.50e3, "s":"x\\u0041<", "c":[1,{"d":true}]} \n'
    assert gojson.indent(raw) == (b'{\n\t"a": [],\n\t"b": {},\n\t"n": 1.50e3,\n\t"s": "x\\u0041<",\n'
                                  b'\t"c": [\n\t\t1,\n\t\t{\n\t\t\t"d": true\n\t\t}\n\t]\n} \n')


def test_indent_with_three_spaces() -> None:
    assert gojson.indent(b'{"a":[1]}', "   ") == b'{\n   "a": [\n      1\n   ]\n}'


def test_compact_escapes_html_only_when_asked() -> None:
    raw = '{ "k" : "<a & b>\u2028" , "q":"\\"{"}'.encode()
    assert gojson.compact(raw) == '{"k":"<a & b>\u2028","q":"\\"{"}'.encode()
    assert gojson.compact(raw, escape_html=True) == b'{"k":"\\u003ca \\u0026 b\\u003e\\u2028","q":"\\"{"}'


def test_dumps_is_go_marshal() -> None:
    assert gojson.dumps({"a": "é<", "b": [1, "x"]}) == '{"a":"é\\u003c","b":[1,"x"]}'.encode()
    assert gojson.dumps({"a": []}, "   ") == b'{\n   "a": []\n}'


@pytest.mark.parametrize("raw", [b"", b"{", b'{"a":NaN}', b"[1] [2]", b"\xff", b'{"a":1,}'])
def test_not_json_is_refused(raw: bytes) -> None:
    with pytest.raises(InvalidArgument):
        gojson.indent(raw)
