"""berth.vm.poolmember's claim: the message, and one passed descriptor over a real socket pair."""

from __future__ import annotations

import array
import os
import socket
from argparse import Namespace

import pytest

from berth.vm import poolmember


def test_claim_message_round_trip_and_refusals() -> None:
    argv = ["--bundle", "/b", "--cid", "c" * 64]
    assert poolmember.parse_claim(poolmember.claim_message(argv)) == argv
    for bad in (b"[]", b"{}", b'{"argv": "x"}', b'{"argv": [1]}', b"not json"):
        with pytest.raises(ValueError):
            poolmember.parse_claim(bad)


def _member() -> poolmember.Member:
    return poolmember.Member(Namespace(dir="/nonexistent/p-0", mem_mib=256, vcpus=1, slots=0, tap=None))


def test_receive_takes_the_arguments_and_the_sync_pipe() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    r, w = os.pipe()
    try:
        a.sendmsg([poolmember.claim_message(["--cid", "x"])],
                  [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [w]).tobytes())])
        got = _member()._receive(b)
        assert got is not None
        argv, fd = got
        assert argv == ["--cid", "x"]
        os.write(fd, b"hi")
        os.close(fd)
        assert os.read(r, 2) == b"hi"
    finally:
        for fd in (r, w):
            os.close(fd)
        a.close()


def test_a_claim_without_a_descriptor_or_with_junk_is_ignored() -> None:
    for message in (poolmember.claim_message(["--cid", "x"]), b"junk"):
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        a.send(message)
        assert _member()._receive(b) is None
        a.close()
