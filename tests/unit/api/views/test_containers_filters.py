"""The `name` filter of `docker ps`, as Docker applies it: the name with and without its slash."""

from __future__ import annotations

import pytest

from berth.api.views.containers import name_matches


@pytest.mark.parametrize("pattern, names, want", [
    ("^/web$", ("/web", "web"), True),        # docker-compose and docker-py anchor on the slash
    ("^web$", ("/web", "web"), True),
    ("^/web$", ("/web2", "web2"), False),
    ("we", ("/web", "web"), True),            # a substring: found anywhere
    ("(", ("/(", "("), True),                 # not a valid expression: equality only
    ("(", ("/web", "web"), False),
    ("/web", ("/web", "web"), True),
])
def test_name_filter(pattern: str, names: tuple[str, str], want: bool) -> None:
    assert any(name_matches(pattern, n) for n in names) is want
