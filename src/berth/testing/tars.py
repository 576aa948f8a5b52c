"""Small tar archives built in memory, for tests: layers, contexts and archives of plain files."""

from __future__ import annotations

import io
import tarfile


def files_tar(files: dict[str, bytes]) -> bytes:
    """A tar holding each name with its bytes as a regular file (mode 0644, in the given order)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
