"""The ids a runtime's state directory holds, as runc and runsc lay it out."""

from berth.runtime.oci import held_ids

A, B = "a" * 64, "0123456789abcdef" * 4


def test_runc_keeps_one_directory_per_id():
    assert held_ids([A, B]) == sorted([A, B])


def test_runsc_keeps_state_and_lock_files_named_by_sandbox_and_id():
    entries = [f"{A}_sandbox:{A}.state", f"{A}_sandbox:{A}.lock", f"{A}_sandbox:{B}.state"]
    assert held_ids(entries) == sorted([A, B])


def test_anything_else_is_not_an_id():
    assert held_ids(["runsc.sock", "x" * 64, A.upper(), A[:63], ""]) == []
