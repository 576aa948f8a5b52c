"""A container's file system changes as the API shows them (`docker diff`, GET /containers/{id}/changes).

Strategy: pure; services.containerfs finds the changes, this module writes Docker's JSON for them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from berth.services.containerfs import Change


def changes(found: Iterable[Change]) -> list[dict[str, Any]]:
    """{"Path": ..., "Kind": n} for each change (Docker's kinds: 0 modified, 1 added, 2 deleted); a name
    that is not UTF-8 gets replacement characters, as Go writes it."""
    return [{"Path": os.fsencode(c.path).decode("utf-8", "replace"), "Kind": int(c.kind)} for c in found]
