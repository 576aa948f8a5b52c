"""`docker build` (the classic builder, DOCKER_BUILDKIT=0) and the SDK's images.build against berthd."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from berth_e2e_conftest import active_cli, docker, is_dockerd, unique_name

pytestmark = pytest.mark.usefixtures("each_cli")  # every test runs with the docker CLI and berth's

DOCKERFILE = r"""# syntax is ignored
ARG BASE=busybox:latest
FROM ${BASE} AS builder
ARG GREETING=hello
ENV APP_HOME=/app \
    MODE=build
WORKDIR $APP_HOME
COPY --chmod=755 tool.sh ./bin/
COPY data/ ./data/
ADD archive.tar.gz /opt/
RUN echo "$GREETING from $MODE" > built.txt && \
    ./bin/tool.sh >> built.txt
SHELL ["/bin/sh", "-c"]
RUN <<EOF
echo heredoc > /app/heredoc.txt
EOF

FROM busybox:latest AS unused
RUN exit 1

FROM busybox:latest
LABEL org.example.name="demo app" version=1
ENV MODE=run
WORKDIR /srv
COPY --from=builder /app/built.txt /app/heredoc.txt ./
COPY --from=builder --chown=bob:bob /opt/inside.txt /srv/owned.txt
USER bob
EXPOSE 8080/tcp 9090
VOLUME ["/data"]
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=3s CMD ["true"]
ONBUILD RUN echo triggered > /tmp/onbuild
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /srv/built.txt"]
"""


def make_context(root: Path) -> Path:
    (root / "data").mkdir(parents=True)
    (root / "data" / "one.txt").write_text("one\n")
    (root / "tool.sh").write_text("#!/bin/sh\necho tool ran\n")
    (root / "ignored.log").write_text("never sent\n")
    (root / ".dockerignore").write_text("*.log\n")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = b"inside the archive\n"
        info = tarfile.TarInfo("inside.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (root / "archive.tar.gz").write_bytes(gzip.compress(buf.getvalue()))
    (root / "Dockerfile").write_text(DOCKERFILE)
    return root


def classic_build(d, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(d.env, DOCKER_BUILDKIT="0")
    cp = subprocess.run([active_cli(), "build", *args], env=env, capture_output=True, text=True, timeout=600)
    if check and cp.returncode != 0:
        pytest.fail(f"docker build {' '.join(args)} exited {cp.returncode}\n{cp.stdout}\n{cp.stderr}", pytrace=False)
    return cp


@pytest.fixture(autouse=True)
def berth_only(berthd, image):
    if is_dockerd(berthd):
        pytest.skip("classic builds are compared by hand against dockerd")


def test_multi_stage_build_with_every_instruction(berthd, tmp_path):
    ctx = make_context(tmp_path / "ctx")
    tag = unique_name("app") + ":1"
    out = classic_build(berthd, "-t", tag, "--build-arg", "GREETING=hi", "--label", "extra=yes", str(ctx)).stdout
    assert "Step 1/" in out and "Successfully built" in out and f"Successfully tagged {tag}" in out
    assert "exit 1" not in out  # the unused stage was not built
    assert docker(berthd, "run", "--rm", tag).stdout == "hi from build\ntool ran\n"
    listing = docker(berthd, "run", "--rm", "--entrypoint", "ls", tag, "-ln", "/srv").stdout
    assert "heredoc.txt" in listing and "owned.txt" in listing
    owned = [line for line in listing.splitlines() if line.endswith("owned.txt")][0].split()
    assert owned[2:4] == ["1000", "1000"], listing
    assert docker(berthd, "run", "--rm", "--entrypoint", "cat", tag, "/srv/owned.txt").stdout == "inside the archive\n"
    cfg = json.loads(docker(berthd, "image", "inspect", tag).stdout)[0]["Config"]
    assert cfg["User"] == "bob" and cfg["WorkingDir"] == "/srv"
    assert "MODE=run" in cfg["Env"] and "APP_HOME=/app" not in cfg["Env"]
    assert cfg["Labels"] == {"org.example.name": "demo app", "version": "1", "extra": "yes"}
    assert set(cfg["ExposedPorts"]) == {"8080/tcp", "9090/tcp"} and "/data" in cfg["Volumes"]
    assert cfg["Entrypoint"] == ["/bin/sh", "-c"] and cfg["Cmd"] == ["cat /srv/built.txt"]
    assert cfg["StopSignal"] == "SIGTERM" and cfg["OnBuild"] == ["RUN echo triggered > /tmp/onbuild"]
    assert docker(berthd, "run", "--rm", "--entrypoint", "id", tag, "-un").stdout == "bob\n"

    again = classic_build(berthd, "-t", tag, "--build-arg", "GREETING=hi", "--label", "extra=yes", str(ctx)).stdout
    assert "Running in" not in again and again.count("Using cache") >= 10, again

    (ctx / "data" / "one.txt").write_text("changed\n")
    third = classic_build(berthd, "-t", tag, "--build-arg", "GREETING=hi", "--label", "extra=yes", str(ctx)).stdout
    assert "Running in" in third  # a changed COPY source invalidates from that step on
    docker(berthd, "rmi", tag)


def test_onbuild_triggers_and_target(berthd, tmp_path):
    base = unique_name("base") + ":1"
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "Dockerfile").write_text("FROM busybox:latest\nONBUILD RUN echo fired > /fired\n")
    classic_build(berthd, "-t", base, str(tmp_path / "base"))
    (tmp_path / "child").mkdir()
    (tmp_path / "child" / "Dockerfile").write_text(f"FROM {base} AS first\nRUN echo one > /one\n"
                                                   "FROM first AS second\nRUN echo two > /two\n")
    child = unique_name("child") + ":1"
    classic_build(berthd, "-t", child, "--target", "first", str(tmp_path / "child"))
    out = docker(berthd, "run", "--rm", child, "sh", "-c", "cat /fired /one; test -e /two || echo no-two").stdout
    assert out == "fired\none\nno-two\n"
    docker(berthd, "rmi", child, base)


def test_build_errors_are_clear(berthd, tmp_path):
    def build_with(dockerfile: str, *extra: str) -> subprocess.CompletedProcess:
        d = tmp_path / unique_name("e")
        d.mkdir()
        (d / "Dockerfile").write_text(dockerfile)
        return classic_build(berthd, *extra, str(d), check=False)
    cp = build_with("FROM busybox:latest\nFROBNICATE x\n")
    assert cp.returncode != 0 and "line 2" in cp.stderr and "unknown instruction" in cp.stderr.lower(), cp.stderr
    cp = build_with("FROM busybox:latest\nCOPY ../outside /x\n")
    assert cp.returncode != 0 and "outside the build context" in cp.stderr, cp.stderr
    cp = build_with("FROM busybox:latest\nCOPY missing.txt /x\n")
    assert cp.returncode != 0 and "missing.txt" in cp.stderr, cp.stderr
    cp = build_with("FROM busybox:latest\nCOPY --from=nostage /x /y\n")
    assert cp.returncode != 0 and "nostage" in cp.stderr, cp.stderr
    tag = unique_name("fail") + ":1"
    cp = build_with("FROM busybox:latest\nRUN echo before-failing; exit 3\n", "-t", tag)
    assert cp.returncode == 3, (cp.returncode, cp.stderr)
    assert "before-failing" in cp.stdout and "returned a non-zero code: 3" in cp.stderr, (cp.stdout, cp.stderr)
    assert docker(berthd, "image", "inspect", tag, check=False).returncode != 0  # nothing tagged
    cp = subprocess.run([active_cli(), "build", "-"], input="not a tar and not a dockerfile\x00\x01",
                        env=dict(berthd.env, DOCKER_BUILDKIT="0"), capture_output=True, text=True, timeout=60)
    assert cp.returncode != 0


def test_sdk_images_build(client, tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM busybox:latest\nARG WHO=world\nRUN echo hello $WHO > /greeting\n"
                                         "CMD [\"cat\", \"/greeting\"]\n")
    tag = unique_name("sdk") + ":1"
    image, logs = client.images.build(path=str(tmp_path), tag=tag, buildargs={"WHO": "sdk"}, rm=True)
    assert any("Successfully built" in (entry.get("stream") or "") for entry in logs)
    assert client.containers.run(tag, remove=True) == b"hello sdk\n"
    client.images.remove(tag)


def test_berth_build_cli(berthd, tmp_path):
    berth = os.path.join(os.path.dirname(sys.executable), "berth")
    (tmp_path / "Dockerfile").write_text("FROM busybox:latest\nCOPY . /ctx\nRUN ls /ctx > /listing\n")
    (tmp_path / "keep.txt").write_text("x")
    (tmp_path / "skip.tmp").write_text("x")
    (tmp_path / ".dockerignore").write_text("*.tmp\n")
    tag = unique_name("cli") + ":1"
    cp = subprocess.run([berth, "-H", berthd.host, "build", "-t", tag, str(tmp_path)], capture_output=True,
                        text=True, timeout=300)
    assert cp.returncode == 0 and "Successfully tagged" in cp.stdout, cp.stderr
    listing = docker(berthd, "run", "--rm", tag, "cat", "/listing").stdout.split()
    assert "keep.txt" in listing and "skip.tmp" not in listing
    docker(berthd, "rmi", tag)



def test_foreign_and_multi_platform_builds(berthd, tmp_path):
    import asyncio

    from berth.tools import bootstrap, layouttar

    asyncio.run(bootstrap.build_busybox(tmp_path / "layout", name="docker.io/library/mbox:latest"))
    layouttar.write_layout_tar(tmp_path / "layout", tmp_path / "mbox.tar")
    docker(berthd, "load", "-i", str(tmp_path / "mbox.tar"), timeout=120)
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text("FROM mbox:latest\nARG TARGETARCH\nRUN uname -m > /arch && "
                                                 "echo $TARGETARCH >> /arch\n")
    arm = unique_name("arm") + ":1"
    classic_build(berthd, "--platform", "linux/arm64", "-t", arm, str(tmp_path / "ctx"))
    assert docker(berthd, "image", "inspect", "-f", "{{.Architecture}}", arm).stdout.strip() == "arm64"
    assert docker(berthd, "run", "--rm", "--platform", "linux/arm64", arm, "cat", "/arch").stdout == \
        "aarch64\narm64\n"
    multi = unique_name("multi") + ":1"
    classic_build(berthd, "--platform", "linux/amd64,linux/arm64", "-t", multi, str(tmp_path / "ctx"))
    assert docker(berthd, "run", "--rm", multi, "cat", "/arch").stdout == "x86_64\namd64\n"
    assert docker(berthd, "run", "--rm", "--platform", "linux/arm64", multi, "cat", "/arch").stdout == \
        "aarch64\narm64\n"
    docker(berthd, "rmi", arm, multi, "mbox:latest")


@pytest.mark.skipif(not Path("/usr/bin/qemu-system-x86_64").exists(), reason="needs QEMU")
def test_run_steps_in_a_vm(berthd, tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM busybox:latest\nRUN uname -r > /kernel && echo vm-built > /marker\n")
    tag = unique_name("vmb") + ":1"
    classic_build(berthd, "--isolation", "hyperv", "-t", tag, str(tmp_path))
    kernel, marker = docker(berthd, "run", "--rm", tag, "cat", "/kernel", "/marker").stdout.split()
    assert marker == "vm-built" and kernel != os.uname().release
    docker(berthd, "rmi", tag)


def test_add_downloads_a_url(berthd, tmp_path):
    import functools
    import http.server
    import threading

    served = tmp_path / "served"
    served.mkdir()
    (served / "remote.txt").write_text("fetched by ADD\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        (tmp_path / "ctx").mkdir()
        (tmp_path / "ctx" / "Dockerfile").write_text(
            f"FROM busybox:latest\nADD http://127.0.0.1:{server.server_address[1]}/remote.txt /fetched/\n")
        tag = unique_name("add") + ":1"
        classic_build(berthd, "-t", tag, str(tmp_path / "ctx"))
        out = docker(berthd, "run", "--rm", tag, "sh", "-c", "cat /fetched/remote.txt; stat -c %a /fetched/remote.txt")
        assert out.stdout == "fetched by ADD\n600\n"
        docker(berthd, "rmi", tag)
    finally:
        server.shutdown()


def test_build_f_with_the_dockerfile_outside_the_context(berthd, client, tmp_path):
    # The docker CLI appends the Dockerfile (as .dockerfile.<random>) and a .dockerignore naming it to the
    # context tar, and ends the stream right after the last file's content (no tar end blocks).
    ctx, elsewhere = tmp_path / "ctx", tmp_path / "elsewhere"
    ctx.mkdir()
    elsewhere.mkdir()
    (ctx / "file.txt").write_text("hello world")
    (elsewhere / "Dockerfile.outside").write_text("FROM busybox:latest\nCOPY . /src\nWORKDIR /src\n")
    tag = unique_name("outside") + ":1"
    classic_build(berthd, "-f", str(elsewhere / "Dockerfile.outside"), "-t", tag, str(ctx))
    assert docker(berthd, "run", "--rm", tag, "ls", "-A").stdout.split() == ["file.txt"]
    # docker-py: the Dockerfile in the tar too, and `dockerfile` twice in the query (the name, then the text).
    tag2 = unique_name("outside-sdk") + ":1"
    lines = list(client.api.build(path=str(ctx), dockerfile=str(elsewhere / "Dockerfile.outside"), tag=tag2,
                                  decode=True))
    assert "Successfully tagged" in lines[-1].get("stream", ""), lines
    assert client.containers.run(tag2, ["ls", "-A"], remove=True).split() == [b"file.txt"]
    docker(berthd, "rmi", tag, tag2)


def test_run_step_stderr_and_failure_as_the_sdk_expects(client):
    snippet = "Ancient Temple (Mystic Oriental Dream ~ Ancient Temple)"
    script = io.BytesIO(f"FROM busybox:latest\nRUN sh -c \">&2 echo '{snippet}'; echo to-stdout\"\n".encode())
    lines = [chunk.get("stream") for chunk in client.api.build(fileobj=script, decode=True, nocache=True)]
    assert f"\x1b[91m{snippet}\n\x1b[0m" in lines, lines
    assert "to-stdout\n" in lines, lines
    failing = io.BytesIO(b"FROM busybox:latest\nRUN exit 3\n")
    chunks = list(client.api.build(fileobj=failing, decode=True, nocache=True))
    message = "The command '/bin/sh -c exit 3' returned a non-zero code: 3"
    assert chunks[-1] == {"errorDetail": {"code": 3, "message": message}, "error": message}, chunks[-1]
    import docker as sdk
    with pytest.raises(sdk.errors.BuildError, match="returned a non-zero code: 3"):
        client.images.build(fileobj=io.BytesIO(b"FROM busybox:latest\nRUN exit 3\n"), nocache=True)


def test_cache_from_uses_only_the_named_chains(client):
    dockerfile = ("FROM busybox:latest\nENV FOO=" + unique_name("cf") + "\nRUN touch /baz\nRUN touch /bax\n").encode()

    def build(**kw) -> int:
        chunks = list(client.api.build(fileobj=io.BytesIO(dockerfile), decode=True, **kw))
        assert "Successfully" in (chunks[-1].get("stream") or ""), chunks[-1]
        return sum("Using cache" in (c.get("stream") or "") for c in chunks)

    first, second = unique_name("cache1") + ":1", unique_name("cache2") + ":1"
    assert build(tag=first) == 0
    assert build(tag=second) == 3                                   # the local cache, as always
    assert build(tag=second, cache_from=[first]) == 3               # the chain of the named image
    assert build(tag=second, cache_from=["nosuchtag:1"]) == 0       # names that exist: none, so no cache
    other = unique_name("other") + ":1"
    client.images.build(fileobj=io.BytesIO(b"FROM busybox:latest\nRUN touch /unrelated\n"), tag=other)
    assert build(tag=second, cache_from=[other]) == 0               # another chain does not count
    for name in (first, second, other):
        client.images.remove(name)


def test_a_context_nested_thousands_deep_fails_clearly_and_leaves_nothing(berthd, client):
    """A hostile context: 1500 directory levels (recursive walks and shutil.rmtree give up near a thousand).
    The build fails with a reason, its scratch tree is removed, and the daemon goes on building."""
    from berth_e2e_conftest import assert_responsive
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("/".join(["d"] * 1500) + "/f", b"x"), ("Dockerfile", b"FROM busybox:latest\nCOPY . /x\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    chunks = list(client.api.build(fileobj=buf, custom_context=True, decode=True, rm=True))
    assert "too deep" in (chunks[-1].get("error") or ""), chunks[-1]
    assert_responsive(berthd)
    assert os.listdir(os.path.join(berthd.root, "build")) == []
    image, _ = client.images.build(fileobj=io.BytesIO(b"FROM busybox:latest\nRUN true\n"))
    assert image.id


def _run_in(d, tag: str, *cmd: str) -> str:
    return docker(d, "run", "--rm", "--entrypoint", cmd[0], tag, *cmd[1:]).stdout


@pytest.mark.usefixtures("each_cli")
def test_dockerfile_outside_the_context_from_stdin_and_iidfile(berthd, tmp_path, monkeypatch):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "in.txt").write_text("context file\n")
    (tmp_path / "Dockerfile.out").write_text("FROM busybox:latest\nCOPY in.txt /\nRUN echo outside > /where\n")
    monkeypatch.chdir(tmp_path)  # -f is relative to where the CLI runs, not to the context
    tag = unique_name("outside") + ":1"
    classic_build(berthd, "-q", "-t", tag, "--iidfile", str(tmp_path / "iid"), "-f", "Dockerfile.out", "ctx")
    assert _run_in(berthd, tag, "cat", "/where", "/in.txt") == "outside\ncontext file\n"
    image_id = docker(berthd, "image", "inspect", "-f", "{{.Id}}", tag).stdout.strip()
    assert (tmp_path / "iid").read_text().strip() == image_id
    assert ".dockerfile." not in _run_in(berthd, tag, "ls", "-a", "/")
    env = dict(berthd.env, DOCKER_BUILDKIT="0")
    cp = subprocess.run([active_cli(), "build", "-q", "-t", tag, "-f", "-", "ctx"], env=env, text=True,
                        input="FROM busybox:latest\nRUN echo stdin > /where\n", capture_output=True, timeout=300)
    assert cp.returncode == 0, cp.stderr
    assert _run_in(berthd, tag, "cat", "/where") == "stdin\n"
    squash = classic_build(berthd, "--squash", "ctx", check=False)
    assert squash.returncode == 1 and "experimental" in squash.stderr
    docker(berthd, "rmi", tag)


@pytest.mark.usefixtures("each_cli")
def test_run_steps_get_the_builds_limits(berthd, tmp_path):
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox:latest\n"
        "RUN cat /sys/fs/cgroup/memory/memory.limit_in_bytes > /memory; "
        "cat /sys/fs/cgroup/cpu/cpu.shares > /shares\n")
    tag = unique_name("limits") + ":1"
    classic_build(berthd, "-q", "--no-cache", "-t", tag, "-m", "64m", "--cpu-shares", "512", str(tmp_path))
    assert _run_in(berthd, tag, "cat", "/memory", "/shares") == f"{64 << 20}\n512\n"
    bad = classic_build(berthd, "--ulimit", "bogus", str(tmp_path), check=False)
    assert bad.returncode == 125 and 'invalid argument "bogus" for "--ulimit" flag' in bad.stderr
    docker(berthd, "rmi", tag)
