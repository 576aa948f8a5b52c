"""A failed start's exit code comes from the driver's error type, never from its message text."""

from __future__ import annotations

import pytest

from berth.errors import Conflict, InvalidArgument
from berth.runtime.base import (
    CannotExecute,
    CommandNotFound,
    StartFailed,
    start_exit_code,
)
from berth.runtime.oci import _start_error


@pytest.mark.parametrize(("stderr", "kind", "code"), [
    ('time="x" level=error msg="runc create failed: unable to start container process: exec: \\"nosuch\\": '
     'executable file not found in $PATH"', CommandNotFound, 127),
    ("exec: /bin/x: no such file or directory", CommandNotFound, 127),
    ("exec: /etc/passwd: permission denied", CannotExecute, 126),
    ("cgroup: something else went wrong", StartFailed, 128),
])
def test_the_runtime_s_words_become_a_type(stderr: str, kind: type, code: int) -> None:
    err = _start_error(stderr)
    assert type(err) is kind
    assert start_exit_code(err) == code
    assert "failed to create task for container" in str(err) and "runc create failed" not in str(err)


def test_not_found_from_a_driver_is_400_and_any_other_error_is_128() -> None:
    assert isinstance(CommandNotFound("x"), InvalidArgument) and isinstance(CannotExecute("x"), InvalidArgument)
    assert start_exit_code(Conflict("image not found in this text")) == 128  # text is not read
    assert start_exit_code(RuntimeError("no such file")) == 128
