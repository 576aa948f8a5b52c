"""Pure pieces of the builder's protocol: stderr colouring of RUN output, and the cache_from scope."""

from __future__ import annotations

from berth.oci.imageconfig import HistoryEntry
from berth.services.buildcache import cache_scope
from berth.services.buildrun import stream_text


def test_stderr_lines_are_wrapped_as_docker_does():
    assert stream_text("stderr", b"Ancient Temple\n") == "\x1b[91mAncient Temple\n\x1b[0m"
    assert stream_text("stdout", b"plain\n") == "plain\n"
    assert stream_text("stderr", b"\xff\n") == "\x1b[91m\ufffd\n\x1b[0m"


H = (HistoryEntry("t1", "FROM"), HistoryEntry("t2", "ENV A=1", empty_layer=True),
     HistoryEntry("t3", "/bin/sh -c touch x"))
D = ("sha256:base", "sha256:run")


def test_an_ancestor_or_the_image_itself_is_in_scope():
    sources = [(H, D)]
    assert cache_scope(sources, H, D)                    # the named image itself
    assert cache_scope(sources, H[:2], D[:1])            # the ENV step below it
    assert cache_scope(sources, H[:1], D[:1])            # its base


def test_another_chain_is_out_of_scope():
    sources = [(H, D)]
    other = [H[0], HistoryEntry("t9", "ENV A=1", empty_layer=True)]  # same step, another build
    assert not cache_scope(sources, other, D[:1])
    assert not cache_scope(sources, H[:2], ["sha256:other"])
    assert not cache_scope(sources, [*H, HistoryEntry("t4", "more")], D)  # a descendant is not
    assert not cache_scope([], H, D)                     # cache_from named nothing that exists: no cache at all
