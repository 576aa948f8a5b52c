"""End-to-end: `docker cp` both ways, the archive API, and paths that try to leave the container.

The real docker CLI copies files, directories, `dir/.` contents and tar streams
(`-`) out of and into running and stopped containers, through volumes and
symlinks; the SDK checks the API's shapes and errors. The last tests drive
berth.services.copy directly on real directory trees: symlinks and `..` that
point outside a container's root resolve inside it, and a hostile tar cannot
write outside the destination. The CLI tests pass against the reference dockerd too.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from berth_e2e_conftest import API_VERSION, RUN_NET, docker, is_dockerd, unique_name

from berth.errors import InvalidArgument, NotFound
from berth.services import containerview, copy

pytestmark = pytest.mark.usefixtures("each_cli")  # every test runs with the docker CLI and berth's

BERTH = str(Path(sys.executable).parent / "berth")
SETUP = ("mkdir -p /d/sub /e && echo a > /d/a && echo b > /d/sub/b && ln -s /d/a /d/link && ln -s sub /d/rel"
         " && echo v > /vol/v")


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def box(berthd, image, names) -> Iterator[str]:
    """A running container with /d (a file, a subdirectory, two symlinks) and a volume at /vol."""
    name = names()
    docker(berthd, "run", "-d", *RUN_NET, "--name", name, "-v", "/vol", image, "sh", "-c", SETUP + " && sleep 600")
    docker(berthd, "exec", name, "sh", "-c", "until [ -e /vol/v ]; do sleep 0.05; done")
    yield name


def cp(d, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    return docker(d, "cp", *args, check=check, input=input)


def in_box(d, name: str, script: str) -> str:
    return docker(d, "exec", name, "sh", "-c", script).stdout


def tree(path: Path) -> dict[str, str]:
    out = {}
    for p in sorted(path.rglob("*")):
        rel = str(p.relative_to(path))
        out[rel] = ("-> " + os.readlink(p)) if p.is_symlink() else ("/" if p.is_dir() else p.read_text())
    return out


# --------------------------------------------------------------------------- #
# out of a container


def test_copy_out_file_directory_and_contents(berthd, box, tmp):
    cp(berthd, f"{box}:/d/a", str(tmp / "a-copy"))
    assert (tmp / "a-copy").read_text() == "a\n"
    cp(berthd, f"{box}:/d", str(tmp))
    assert tree(tmp / "d") == {"a": "a\n", "link": "-> /d/a", "rel": "-> sub", "sub": "/", "sub/b": "b\n"}
    cp(berthd, f"{box}:/d", str(tmp / "renamed"))
    assert (tmp / "renamed" / "sub" / "b").read_text() == "b\n"
    (tmp / "into").mkdir()
    (tmp / "into" / "old").write_text("stays\n")
    cp(berthd, f"{box}:/d/.", str(tmp / "into"))
    assert tree(tmp / "into") == {"a": "a\n", "link": "-> /d/a", "old": "stays\n", "rel": "-> sub", "sub": "/",
                                  "sub/b": "b\n"}


def test_copy_out_symlinks_and_volumes(berthd, box, tmp):
    cp(berthd, f"{box}:/d/link", str(tmp / "plain"))
    assert os.readlink(tmp / "plain") == "/d/a"
    cp(berthd, "-L", f"{box}:/d/link", str(tmp / "followed"))
    assert (tmp / "followed").read_text() == "a\n" and not (tmp / "followed").is_symlink()
    cp(berthd, f"{box}:/d/rel/b", str(tmp / "through-link"))
    assert (tmp / "through-link").read_text() == "b\n"
    cp(berthd, f"{box}:/vol/v", str(tmp / "from-volume"))
    assert (tmp / "from-volume").read_text() == "v\n"


def test_copy_out_as_tar_stream(berthd, box):
    out = subprocess.run(["docker", "cp", f"{box}:/d", "-"], env=berthd.env, capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    with tarfile.open(fileobj=io.BytesIO(out.stdout)) as t:
        assert sorted(t.getnames()) == ["d", "d/a", "d/link", "d/rel", "d/sub", "d/sub/b"]
        assert t.extractfile("d/a").read() == b"a\n"  # type: ignore[union-attr]


def test_copy_out_missing_path(berthd, box, tmp):
    r = cp(berthd, f"{box}:/nope", str(tmp), check=False)
    assert r.returncode == 1 and f"Could not find the file /nope in container {box}" in r.stderr


# --------------------------------------------------------------------------- #
# into a container


def test_copy_in_file_renamed_directory_and_contents(berthd, box, tmp):
    (tmp / "f.txt").write_text("local\n")
    (tmp / "dir" / "in").mkdir(parents=True)
    (tmp / "dir" / "in" / "x").write_text("x\n")
    cp(berthd, str(tmp / "f.txt"), f"{box}:/e")
    cp(berthd, str(tmp / "f.txt"), f"{box}:/e/renamed.txt")
    cp(berthd, str(tmp / "dir"), f"{box}:/e")
    cp(berthd, str(tmp / "dir"), f"{box}:/e/newname")
    cp(berthd, str(tmp / "dir") + "/.", f"{box}:/e/sub-contents")
    docker(berthd, "exec", box, "mkdir", "/e/existing")
    cp(berthd, str(tmp / "dir") + "/.", f"{box}:/e/existing")
    got = in_box(berthd, box, "cd /e && find . | sort && cat f.txt renamed.txt newname/in/x")
    assert got.split() == [".", "./dir", "./dir/in", "./dir/in/x", "./existing", "./existing/in", "./existing/in/x",
                           "./f.txt", "./newname", "./newname/in", "./newname/in/x", "./renamed.txt",
                           "./sub-contents", "./sub-contents/in", "./sub-contents/in/x", "local", "local", "x"]


def test_copy_in_through_symlink_and_into_volume(berthd, box, tmp):
    (tmp / "f").write_text("via-link\n")
    cp(berthd, str(tmp / "f"), f"{box}:/d/rel/")   # /d/rel -> sub
    assert in_box(berthd, box, "cat /d/sub/f") == "via-link\n"
    cp(berthd, str(tmp / "f"), f"{box}:/vol/")
    vol = next(m["Source"] for m in json.loads(docker(berthd, "inspect", "-f", "{{json .Mounts}}", box).stdout)
               if m["Destination"] == "/vol")
    assert Path(vol, "f").read_text() == "via-link\n"


def test_copy_in_tar_stream_from_stdin(berthd, box):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("streamed/s.txt")
        info.size, info.mode, info.uid, info.gid = 3, 0o640, 1234, 4321
        t.addfile(info, io.BytesIO(b"s!\n"))
    r = subprocess.run(["docker", "cp", "-", f"{box}:/e"], env=berthd.env, input=buf.getvalue(),
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert in_box(berthd, box, "cat /e/streamed/s.txt; stat -c '%u %g %a' /e/streamed/s.txt") == "s!\n1234 4321 640\n"


def test_copy_in_errors(berthd, box, tmp):
    (tmp / "dir").mkdir()
    r = cp(berthd, str(tmp / "dir"), f"{box}:/d/a", check=False)   # a directory onto a file
    assert r.returncode == 1
    r = cp(berthd, "-", f"{box}:/d/a", check=False, input="")
    assert r.returncode == 1 and "must be a directory" in r.stderr
    (tmp / "f").write_text("f")
    r = cp(berthd, str(tmp / "f"), f"{box}:/no/such/dir/f", check=False)
    assert r.returncode == 1 and "Could not find the file /no/such/dir" in r.stderr


def test_copy_with_archive_flag_sets_the_container_user(berthd, image, names, tmp):
    if is_dockerd(berthd):
        pytest.skip("Docker 20.10 looks the container's user up in the host's passwd (fixed in later Docker)")
    name = names()
    docker(berthd, "create", *RUN_NET, "--name", name, "-u", "bob", image, "true")  # bob is 1000:1000
    (tmp / "owned").write_text("o\n")
    os.chown(tmp / "owned", 4242, 4242)
    cp(berthd, "-a", str(tmp / "owned"), f"{name}:/tmp/")
    cp(berthd, str(tmp / "owned"), f"{name}:/tmp/kept")
    out = tmp / "back"
    out.mkdir()
    cp(berthd, f"{name}:/tmp/.", str(out))
    assert (out / "owned").read_text() == "o\n"
    # The ids inside the container, from the tar the daemon sends back.
    raw = subprocess.run(["docker", "cp", f"{name}:/tmp", "-"], env=berthd.env, capture_output=True, timeout=60).stdout
    with tarfile.open(fileobj=io.BytesIO(raw)) as t:
        assert (t.getmember("tmp/owned").uid, t.getmember("tmp/owned").gid) == (1000, 1000)
        assert (t.getmember("tmp/kept").uid, t.getmember("tmp/kept").gid) == (4242, 4242)


# --------------------------------------------------------------------------- #
# stopped containers


def test_copy_both_ways_with_a_stopped_container(berthd, image, names, tmp):
    created, exited = names(), names()
    docker(berthd, "create", *RUN_NET, "--name", created, image, "cat", "/hello")
    (tmp / "hello").write_text("hello from the host\n")
    cp(berthd, str(tmp / "hello"), f"{created}:/")
    assert docker(berthd, "start", "-a", created).stdout == "hello from the host\n"
    docker(berthd, "run", *RUN_NET, "--name", exited, "-v", "/kept", image, "sh", "-c",
           "echo left > /left; echo in-volume > /kept/f")
    cp(berthd, f"{exited}:/left", str(tmp / "left"))
    cp(berthd, f"{exited}:/kept/f", str(tmp / "kept"))
    assert (tmp / "left").read_text() == "left\n" and (tmp / "kept").read_text() == "in-volume\n"
    cp(berthd, str(tmp / "hello"), f"{exited}:/kept/")
    assert docker(berthd, "start", "-a", exited).returncode == 0
    assert "hello" in docker(berthd, "cp", f"{exited}:/kept", "-").stdout


# --------------------------------------------------------------------------- #
# the API: stat header, shapes, errors


def http(d, method: str, path: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(d.sock)
        s.sendall(f"{method} /v{API_VERSION}{path} HTTP/1.1\r\nHost: d\r\nConnection: close\r\n"
                  f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, rest


def test_stat_header(berthd, box):
    status, headers, _ = http(berthd, "HEAD", f"/containers/{box}/archive?path=" + urllib.parse.quote("/d/link"))
    assert status == 200
    stat = json.loads(base64.b64decode(headers["x-docker-container-path-stat"]))
    assert stat["name"] == "link" and stat["linkTarget"] == "/d/a" and stat["mode"] & (1 << 27)
    assert stat["mtime"].endswith("Z") or "+" in stat["mtime"]
    status, headers, _ = http(berthd, "HEAD", f"/containers/{box}/archive?path=/d/")
    stat = json.loads(base64.b64decode(headers["x-docker-container-path-stat"]))
    assert stat["name"] == "d" and stat["mode"] & (1 << 31) and stat["mode"] & 0o777 == 0o755
    status, _, _ = http(berthd, "HEAD", f"/containers/{box}/archive?path=/nope")
    assert status == 404


def test_sdk_archive(berthd, box, client):
    import docker as docker_sdk
    c = client.containers.get(box)
    chunks, stat = c.get_archive("/d/sub")
    assert stat["name"] == "sub" and stat["mode"] & (1 << 31)
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as t:
        assert sorted(t.getnames()) == ["sub", "sub/b"]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("put.txt")
        info.size = 2
        t.addfile(info, io.BytesIO(b"p\n"))
    assert c.put_archive("/e", buf.getvalue()) is True
    assert in_box(berthd, box, "cat /e/put.txt") == "p\n"
    with pytest.raises(docker_sdk.errors.APIError) as err:  # extracting onto a file
        c.put_archive("/d/a", buf.getvalue())
    assert "not a directory" in str(err.value)
    assert err.value.status_code == (500 if is_dockerd(berthd) else 400)  # 400 since Docker 23
    with pytest.raises(docker_sdk.errors.NotFound):
        c.put_archive("/no/where", buf.getvalue())


def test_hostile_tar_is_refused(berthd, box, client, tmp):
    import docker as docker_sdk
    marker = Path(tempfile.gettempdir()) / unique_name("cp-escape")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("../../../../../../.." + str(marker))
        info.size = 1
        t.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(docker_sdk.errors.APIError):
        client.containers.get(box).put_archive("/e", buf.getvalue())
    assert not marker.exists()


def test_symlinks_resolve_inside_the_container(berthd, box, tmp):
    if is_dockerd(berthd):
        pytest.skip("compares a host directory the container's links name; the reference daemon differs "
                    "only in wording")
    host_secret = Path(tempfile.mkdtemp(prefix="cp-host-", dir="/tmp"))
    try:
        (host_secret / "secret").write_text("host only\n")
        rel = "../../../../../.." + str(host_secret)
        docker(berthd, "exec", box, "sh", "-c", f"ln -s {rel}/secret /esc-file && ln -s {rel} /esc-dir"
                                                f" && mkdir -p {host_secret}")
        r = cp(berthd, "-L", f"{box}:/esc-file", str(tmp / "got"), check=False)
        assert r.returncode == 1 and not (tmp / "got").exists()   # the container has no such file
        (tmp / "f").write_text("mine\n")
        cp(berthd, str(tmp / "f"), f"{box}:/esc-dir/")
        assert sorted(os.listdir(host_secret)) == ["secret"]      # the host's directory is untouched
        assert in_box(berthd, box, f"cat {host_secret}/f") == "mine\n"
    finally:
        shutil.rmtree(host_secret, ignore_errors=True)


def test_read_only_destinations(berthd, image, names, client, tmp):
    import docker as docker_sdk
    name, frozen = names(), names()
    docker(berthd, "create", *RUN_NET, "--name", name, "-v", f"{tmp}:/ro:ro", image, "true")
    docker(berthd, "create", *RUN_NET, "--name", frozen, "--read-only", "-v", "/rw", image, "true")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        t.addfile(tarfile.TarInfo("empty"))
    with pytest.raises(docker_sdk.errors.APIError, match="read-only"):
        client.containers.get(name).put_archive("/ro", buf.getvalue())
    with pytest.raises(docker_sdk.errors.APIError, match="read-only"):
        client.containers.get(frozen).put_archive("/", buf.getvalue())
    assert client.containers.get(frozen).put_archive("/rw", buf.getvalue()) is True
    assert os.listdir(tmp) == []


def test_berth_cli_cp(berthd, box, tmp):
    def berth(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([BERTH, "-H", berthd.host, *args], capture_output=True, text=True, timeout=60)
    (tmp / "up.txt").write_text("up\n")
    assert berth("cp", str(tmp / "up.txt"), f"{box}:/e/").returncode == 0
    assert berth("cp", str(tmp / "up.txt"), f"{box}:/e/renamed").returncode == 0
    r = berth("cp", f"{box}:/d", str(tmp / "out"))
    assert r.returncode == 0, r.stderr
    assert tree(tmp / "out") == {"a": "a\n", "link": "-> /d/a", "rel": "-> sub", "sub": "/", "sub/b": "b\n"}
    assert berth("cp", f"{box}:/e/.", str(tmp / "e")).returncode == 0
    assert tree(tmp / "e") == {"renamed": "up\n", "up.txt": "up\n"}
    r = berth("cp", f"{box}:/nope", str(tmp))
    assert r.returncode == 1 and "Could not find the file /nope" in r.stderr
    r = berth("cp", str(tmp / "up.txt"), str(tmp / "x"))
    assert r.returncode == 1 and "must specify at least one container" in r.stderr


def test_copy_with_a_vm_isolated_container(berthd, image, names, tmp):
    if is_dockerd(berthd):
        pytest.skip("VM isolation is berth's own")
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86 is not installed")
    name = names()
    docker(berthd, "run", "-d", "--name", name, "--isolation", "hyperv", image, "sh", "-c",
           "echo from-guest > /g; sleep 300", timeout=180)
    docker(berthd, "exec", name, "sh", "-c", "until [ -e /g ]; do sleep 0.1; done")
    cp(berthd, f"{name}:/g", str(tmp / "g"))
    assert (tmp / "g").read_text() == "from-guest\n"
    (tmp / "h").write_text("to-guest\n")
    cp(berthd, str(tmp / "h"), f"{name}:/")
    assert docker(berthd, "exec", name, "cat", "/h").stdout == "to-guest\n"


# --------------------------------------------------------------------------- #
# berth.services.copy on real trees (no daemon)


@pytest.fixture
def rootfs(tmp_path: Path) -> containerview.View:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hello").write_text("in the container\n")
    (root / "up").symlink_to("../../../../../../..")
    (root / "abs").symlink_to("/etc")
    (root / "loop").symlink_to("loop")
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "v").write_text("volume\n")
    (vol / "back").symlink_to("/etc/hello")
    return containerview.View(str(root), (containerview.MountPoint("/data", str(vol)),
                                 containerview.MountPoint("/frozen", str(vol), readonly=True)), name="t")


def test_locate_stays_inside_the_root(rootfs: containerview.View) -> None:
    for path in ("/up/etc/hello", "up/../../etc/hello", "/abs/hello", "/../../../etc/hello", "/data/back",
                 "/data/../etc/hello"):
        with containerview.locate(rootfs, path, follow_last=True) as loc:
            assert loc.path == "/etc/hello", path
            with open(loc.host_path) as f:
                assert f.read() == "in the container\n"
    with pytest.raises(InvalidArgument, match="too many levels of symbolic links"):
        containerview.locate(rootfs, "/loop", follow_last=True)
    with pytest.raises(NotFound, match="Could not find the file /etc/hello/x in container t"):
        containerview.locate(rootfs, "/etc/hello/x", follow_last=True)


def test_stat_and_archive_on_a_tree(rootfs: containerview.View) -> None:
    assert containerview.stat_path(rootfs, "/up").link_target == "/"
    assert containerview.stat_path(rootfs, "/data/back").link_target == "/etc/hello"
    assert containerview.stat_path(rootfs, "/data/.").name == "."
    info, chunks = copy.archive(rootfs, "/")
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as t:
        names = t.getnames()
    assert info.name == "/" and "/data/v" in names and "/frozen/back" in names and "/etc/hello" in names


@pytest.mark.parametrize("name", ["../x", "a/../../x"])
def test_extract_refuses_escapes(rootfs: containerview.View, name: str) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo(name)
        info.size = 1
        t.addfile(info, io.BytesIO(b"x"))
    buf.seek(0)
    with pytest.raises(InvalidArgument, match="leaves the destination"):
        copy.extract(rootfs, "/etc", buf)


def test_extract_through_links_lands_inside(rootfs: containerview.View, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name in ("up/etc/one", "abs/two", "data/three", "/four"):
            info = tarfile.TarInfo(name)
            info.size = 1
            t.addfile(info, io.BytesIO(b"x"))
        link = tarfile.TarInfo("data/hard")
        link.type, link.linkname = tarfile.LNKTYPE, "data/three"
        t.addfile(link)
    buf.seek(0)
    copy.extract(rootfs, "/", buf)
    root = Path(rootfs.root)
    assert sorted(os.listdir(root / "etc")) == ["hello", "one", "two"]
    assert (root / "four").exists() and sorted(os.listdir(tmp_path / "vol")) == ["back", "hard", "three", "v"]
    buf.seek(0)
    with pytest.raises(InvalidArgument, match="mounted volume is marked read-only"):
        copy.extract(rootfs, "/frozen", buf)
