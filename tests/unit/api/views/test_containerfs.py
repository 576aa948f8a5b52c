"""api.views.containerfs: `docker diff`'s JSON."""

from __future__ import annotations

import os

from berth.api.views import containerfs as views
from berth.image.diff import Change, Kind


def test_changes() -> None:
    odd = os.fsdecode(b"/bad-\xff")  # a name that is not UTF-8, as the file system gave it
    found = [Change("/etc", Kind.MODIFIED), Change("/etc/new", Kind.ADDED), Change("/gone", Kind.DELETED),
             Change(odd, Kind.ADDED)]
    assert views.changes(found) == [{"Path": "/etc", "Kind": 0}, {"Path": "/etc/new", "Kind": 1},
                                    {"Path": "/gone", "Kind": 2}, {"Path": "/bad-\ufffd", "Kind": 1}]
