"""Build contexts as POST /build receives them, and ADD's downloads from a real HTTP server.

Contexts are real tars (plain and every compression Docker's client may send)
unpacked into tmp dirs; hostile ones unpack beside a sentinel that must stay
untouched. download() talks to a ThreadingHTTPServer on 127.0.0.1 that this
module starts; no other address is ever contacted.
"""

from __future__ import annotations

import asyncio
import bz2
import gzip
import http.server
import io
import lzma
import os
import socket
import stat
import tarfile
import threading
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import Callable, Iterator

import pytest
import zstandard

from berth.builder.checksum import tree_checksum
from berth.builder.context import Context
from berth.builder.download import download
from berth.errors import InvalidArgument, Unavailable

MTIME = 1_600_000_000


@dataclass
class E:
    name: str
    kind: bytes = tarfile.REGTYPE
    data: bytes = b""
    mode: int = 0o644
    link: str = ""
    mtime: int = MTIME


def tar_bytes(entries: list[E]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type, info.mode, info.mtime, info.linkname = e.kind, e.mode, e.mtime, e.link
            info.uid = info.gid = 1234  # what a careless client sends; the context ignores it
            info.size = len(e.data) if e.kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(e.data) if e.kind == tarfile.REGTYPE else None)
    return buf.getvalue()


CONTEXT = [
    E("Dockerfile", data=b"FROM scratch\nCOPY . /\n"),
    E("src", tarfile.DIRTYPE, mode=0o750),
    E("src/main.py", data=b"print('hi')\n", mode=0o755),
    E("src/data.bin", data=bytes(range(256)) * 64),
    E("src/lib", tarfile.SYMTYPE, link="/usr/lib/python3"),
    E("src/again.py", tarfile.LNKTYPE, link="src/main.py"),
    E("./dotted/file", data=b"d"),
]

COMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "plain": lambda b: b, "gzip": gzip.compress, "bzip2": bz2.compress, "xz": lzma.compress,
    "zstd": lambda b: zstandard.ZstdCompressor().compress(b),
}


def extract(tmp_path: Path, entries: list[E] | bytes, name: str = "ctx", **kwargs: object) -> Context:
    body = entries if isinstance(entries, bytes) else tar_bytes(entries)
    return Context.extract(io.BytesIO(body), tmp_path / name, **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- #
# Extraction


@pytest.mark.parametrize("compression", list(COMPRESS))
def test_extract_every_compression(tmp_path: Path, compression: str) -> None:
    ctx = Context.extract(io.BytesIO(COMPRESS[compression](tar_bytes(CONTEXT))), tmp_path / "ctx")
    root = ctx.root
    assert ctx.read_dockerfile("Dockerfile") == "FROM scratch\nCOPY . /\n"
    assert stat.S_IMODE(os.lstat(root / "src").st_mode) == 0o750
    assert os.lstat(root / "src").st_mtime == MTIME
    main = os.lstat(root / "src/main.py")
    assert stat.S_IMODE(main.st_mode) == 0o755 and main.st_mtime == MTIME and main.st_uid == 0
    assert (root / "src/data.bin").read_bytes() == bytes(range(256)) * 64
    assert os.readlink(root / "src/lib") == "/usr/lib/python3"  # kept as written, never followed
    assert os.lstat(root / "src/again.py").st_ino == main.st_ino
    assert (root / "dotted/file").read_bytes() == b"d"


def test_empty_body_is_an_empty_context(tmp_path: Path) -> None:
    ctx = extract(tmp_path, b"")
    assert os.listdir(ctx.root) == []
    with pytest.raises(InvalidArgument, match="^Cannot locate specified Dockerfile: Dockerfile$"):
        ctx.read_dockerfile("Dockerfile")


def test_not_a_tar(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="not a tar archive"):
        extract(tmp_path, b"FROM scratch\n" * 100)
    with pytest.raises(InvalidArgument, match="not a valid"):
        extract(tmp_path, gzip.compress(tar_bytes(CONTEXT))[:300], name="cut")


@pytest.mark.parametrize("entries,message", [
    ([E("../evil", data=b"x")], "leaves the context"),
    ([E("/abs", data=b"x")], "absolute path"),
    ([E("link", tarfile.SYMTYPE, link="../outside"), E("link/evil", data=b"x")], "which is a symlink"),
    ([E("link", tarfile.SYMTYPE, link="/"), E("link/evil", data=b"x")], "which is a symlink"),
    ([E("h", tarfile.LNKTYPE, link="../outside/sentinel")], "leaves the context"),
    ([E("l", tarfile.SYMTYPE, link="../outside"), E("h", tarfile.LNKTYPE, link="l/sentinel")],
     "not an earlier file"),
    ([E("fifo", tarfile.FIFOTYPE)], "is a fifo"),
    ([E("dev", tarfile.CHRTYPE)], "character device"),
])
def test_hostile_contexts_are_refused(tmp_path: Path, entries: list[E], message: str) -> None:
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside/sentinel").write_bytes(b"untouched")
    with pytest.raises(InvalidArgument, match=message):
        extract(tmp_path, entries)
    assert sorted(os.listdir(tmp_path)) == ["ctx", "outside"]
    assert os.listdir(tmp_path / "outside") == ["sentinel"]
    assert (tmp_path / "outside/sentinel").read_bytes() == b"untouched"
    assert os.lstat(tmp_path / "outside/sentinel").st_nlink == 1


def test_later_entries_replace_earlier_ones(tmp_path: Path) -> None:
    ctx = extract(tmp_path, [E("f", data=b"one"), E("f", data=b"two"), E("d/x", data=b"x"),
                             E("d", tarfile.SYMTYPE, link="elsewhere")])
    assert (ctx.root / "f").read_bytes() == b"two"
    assert os.readlink(ctx.root / "d") == "elsewhere"


# --------------------------------------------------------------------------- #
# Dockerfile and .dockerignore


def test_dockerfile_lookup(tmp_path: Path) -> None:
    ctx = extract(tmp_path, [E("dockerfile", data=b"\xef\xbb\xbfFROM a\n"),
                             E("build/app.Dockerfile", data=b"FROM b\n# caf\xe9\n")],
                  dockerfile="build/app.Dockerfile")
    assert ctx.read_dockerfile("Dockerfile") == "FROM a\n"  # lowercase fallback, BOM dropped
    text = ctx.read_dockerfile("build/app.Dockerfile")
    assert text.startswith("FROM b\n") and text.encode("utf-8", "surrogateescape").endswith(b"caf\xe9\n")
    assert ctx.read_dockerfile("/build/./app.Dockerfile").startswith("FROM b")
    for missing in ("nope", "../Dockerfile", "build"):
        with pytest.raises(InvalidArgument, match=f"^Cannot locate specified Dockerfile: {missing}$"):
            ctx.read_dockerfile(missing)


def test_dockerignore_cannot_hide_the_dockerfile_from_the_builder(tmp_path: Path) -> None:
    pytest.importorskip("berth.wire.dockerignore")
    ctx = extract(tmp_path, [
        E("Dockerfile", data=b"FROM scratch\n"),
        E(".dockerignore", data=b"# everything but src\n*\n!src\nsrc/*.log\n"),
        E("secret.env", data=b"TOKEN=1"),
        E("src/app.py", data=b"app"),
        E("src/debug.log", data=b"log"),
        E("node_modules/x/index.js", data=b"js"),
    ])
    assert ctx.read_dockerfile("Dockerfile") == "FROM scratch\n"
    assert sorted(p.relative_to(ctx.root).as_posix() for p in ctx.root.rglob("*")) == ["src", "src/app.py"]
    with pytest.raises(InvalidArgument, match="excluded by .dockerignore: stat Dockerfile"):
        ctx.sources(["Dockerfile"])
    with pytest.raises(InvalidArgument, match="stat .dockerignore"):
        ctx.sources([".dockerignore"])


def test_a_stub_matcher_replaces_dockerignore(tmp_path: Path) -> None:
    seen: list[str] = []

    def excluded(path: str) -> bool:
        seen.append(path)
        return path == "big" or path.startswith("big/") and not path.endswith(".keep")

    ctx = extract(tmp_path, [E("Dockerfile", data=b"FROM x\n"), E(".dockerignore", data=b"*\n"),
                             E("big/a", data=b"a"), E("big/b.keep", data=b"b"), E("big/sub/c", data=b"c")],
                  ignore=excluded)
    assert sorted(p.relative_to(ctx.root).as_posix() for p in ctx.root.rglob("*")) == [
        ".dockerignore", "Dockerfile", "big", "big/b.keep"]
    assert "big/sub/c" in seen  # a bare predicate is asked about everything below an excluded directory


# --------------------------------------------------------------------------- #
# Checksums


def test_checksum_is_stable_and_ignores_times(tmp_path: Path) -> None:
    first = extract(tmp_path, CONTEXT, name="one")
    later = [E(e.name, e.kind, e.data, e.mode, e.link, mtime=MTIME + 99) for e in CONTEXT]
    second = extract(tmp_path, later, name="two")
    for patterns in (["."], ["src"], ["src/main.py", "Dockerfile"], ["src/*.py"]):
        a = first.checksum(first.sources(patterns))
        assert a == second.checksum(second.sources(patterns)) and a.startswith("sha256:")
    assert first.checksum(first.sources(["src"])) != first.checksum(first.sources(["dotted"]))


@pytest.mark.parametrize("change", [
    lambda root: (root / "src/main.py").write_bytes(b"print('bye')\n"),
    lambda root: os.chmod(root / "src/main.py", 0o700),
    lambda root: os.rename(root / "src/data.bin", root / "src/data2.bin"),
    lambda root: os.replace(root / "src/data.bin", root / "src/lib"),
    lambda root: (root / "src/new").mkdir(),
])
def test_checksum_sees_every_change(tmp_path: Path, change: Callable[[Path], object]) -> None:
    ctx = extract(tmp_path, CONTEXT)
    before = ctx.checksum(ctx.sources(["src"]))
    os.utime(ctx.root / "src/main.py", (1, 1))
    assert ctx.checksum(ctx.sources(["src"])) == before
    change(ctx.root)
    assert ctx.checksum(ctx.sources(["src"])) != before


def test_checksum_sees_a_new_link_target(tmp_path: Path) -> None:
    ctx = extract(tmp_path, CONTEXT)
    before = ctx.checksum(ctx.sources(["src"]))
    os.unlink(ctx.root / "src/lib")
    os.symlink("/usr/lib/python4", ctx.root / "src/lib")
    assert ctx.checksum(ctx.sources(["src"])) != before


def test_checksum_follows_a_named_symlink_in_scope(tmp_path: Path) -> None:
    ctx = extract(tmp_path, [E("real", data=b"r"), E("alias", tarfile.SYMTYPE, link="/real")])
    key = ctx.checksum(ctx.sources(["alias"]))
    (ctx.root / "real").write_bytes(b"changed")
    assert ctx.checksum(ctx.sources(["alias"])) != key
    with pytest.raises(InvalidArgument, match="outside"):
        tree_checksum(ctx.root, [tmp_path])


# --------------------------------------------------------------------------- #
# download(): a real HTTP server on 127.0.0.1


LAST_MODIFIED = formatdate(1_500_000_000, usegmt=True)


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/files/tool.tar.gz":
            self.send(200, b"\x1f\x8b not really", {"Last-Modified": LAST_MODIFIED})
        elif path == "/dl/":
            self.send(200, b"named by header", {"Content-Disposition": 'attachment; filename="report v2.txt"'})
        elif path == "/dl/evil/":
            self.send(200, b"x", {"Content-Disposition": 'attachment; filename="../../etc/passwd"'})
        elif path == "/bare/":
            self.send(200, b"no name at all")
        elif path.startswith("/redirect/"):
            self.send(302, b"", {"Location": "/files/tool.tar.gz"})
        elif path == "/loop":
            self.send(302, b"", {"Location": "/loop"})
        elif path == "/broken":
            self.send(503, b"down")
        elif path == "/big.bin":
            self.send(200, os.urandom(1) * (3 << 20))
        else:
            self.send(404, b"no")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def fetch(url: str, dest: Path, **kwargs: object) -> Path:
    return asyncio.run(download(url, dest, trust_env=False, **kwargs))  # type: ignore[arg-type]


def test_download_names_and_modes(server: str, tmp_path: Path) -> None:
    got = fetch(f"{server}/files/tool.tar.gz?x=1", tmp_path)
    assert got == tmp_path / "tool.tar.gz" and got.read_bytes() == b"\x1f\x8b not really"
    st = os.stat(got)
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_mtime == 1_500_000_000
    got = fetch(f"{server}/dl/", tmp_path)
    assert got.name == "report v2.txt" and got.read_bytes() == b"named by header"
    got = fetch(f"{server}/dl/evil/", tmp_path)
    assert got == tmp_path / "passwd"
    got = fetch(f"{server}/bare/", tmp_path, fallback_name="dest.txt")
    assert got.name == "dest.txt"
    assert sorted(os.listdir(tmp_path)) == ["dest.txt", "passwd", "report v2.txt", "tool.tar.gz"]


def test_download_follows_redirects_keeping_the_requested_name(server: str, tmp_path: Path) -> None:
    got = fetch(f"{server}/redirect/renamed.tgz", tmp_path)
    assert got.name == "renamed.tgz" and got.read_bytes() == b"\x1f\x8b not really"


def test_download_streams_big_files(server: str, tmp_path: Path) -> None:
    got = fetch(f"{server}/big.bin", tmp_path)
    assert got.stat().st_size == 3 << 20


@pytest.mark.parametrize("path,error,message", [
    ("/missing.txt", InvalidArgument, "answered 404"),
    ("/broken", Unavailable, "answered 503"),
    ("/loop", InvalidArgument, "too many redirects"),
    ("/bare/", InvalidArgument, "cannot determine filename from url"),
])
def test_download_errors_name_the_url(server: str, tmp_path: Path, path: str, error: type[Exception],
                                      message: str) -> None:
    with pytest.raises(error, match=message) as err:
        fetch(server + path, tmp_path)
    assert server + path in str(err.value)
    assert os.listdir(tmp_path) == []  # no partial file left behind


def test_download_unreachable_and_bad_scheme(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(Unavailable, match=f"127.0.0.1:{port}/x"):
        fetch(f"http://127.0.0.1:{port}/x", tmp_path)
    with pytest.raises(InvalidArgument, match="not an http"):
        fetch("ftp://127.0.0.1/x", tmp_path)
