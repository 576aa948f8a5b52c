"""`berth manifest` against docker's CLI: the same registry, the same local store, the same output.

Two single-platform images are pushed (through the daemon) to a LocalRegistry; each CLI then
creates a list of both, annotates one as linux/arm64 and pushes it, and skopeo (a neutral
peer) reads what the registry serves. inspect's output, errors and exit codes are compared
between the two CLIs, and a list begun by one CLI is finished by the other. A fake registry
serves hostile answers that berth must refuse without printing or storing them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from berth_e2e_conftest import CLIS, assert_responsive, cli_run, docker, unique_name
from berth.testing.registry import LocalRegistry

pytestmark = pytest.mark.skipif(shutil.which("docker-registry") is None or shutil.which("skopeo") is None,
                                reason="needs docker-registry and skopeo (the README's set-up installs them)")

DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory):
    with LocalRegistry(tmp_path_factory.mktemp("manifest-registry")) as reg:
        yield reg


@pytest.fixture(scope="module")
def pushed(berthd, image, rootfs_tar, registry) -> tuple[str, str]:
    """Two different single-platform images in the registry, in two repositories."""
    one, two = f"{registry.address}/src/one:v1", f"{registry.address}/src/two:v1"
    docker(berthd, "tag", image, one)
    docker(berthd, "push", one, timeout=120)
    docker(berthd, "import", "--change", "ENV FLAVOUR=two", str(rootfs_tar), two, timeout=120)
    docker(berthd, "push", two, timeout=120)
    return one, two


def skopeo_raw(ref: str) -> bytes:
    return subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                          check=True, capture_output=True, timeout=120).stdout


def store_dir(d) -> Path:
    return Path(d.env["DOCKER_CONFIG"]) / "manifests"


def both(d, *args: str) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    """Run the same command line with docker's CLI and berth's; neither may fail the test by itself."""
    return (cli_run("docker", d, *args, check=False, timeout=120),
            cli_run("berth", d, *args, check=False, timeout=120))


def same(d, *args: str) -> subprocess.CompletedProcess:
    """Both CLIs print the same (stdout, stderr with the program's name swapped) and exit alike."""
    dk, bt = both(d, *args)
    assert (bt.returncode, bt.stdout, bt.stderr) == \
        (dk.returncode, dk.stdout, re.sub(r"\bdocker(?=[ :'])", "berth", dk.stderr)), args
    return bt


def test_create_annotate_push_checked_by_skopeo(berthd, pushed, registry, cli_name):
    one, two = pushed
    target = f"{registry.address}/multi/{unique_name(cli_name)}:v1"
    out = cli_run(cli_name, berthd, "manifest", "create", "--insecure", target, one, two).stdout
    assert out == f"Created manifest list {target}\n"
    cli_run(cli_name, berthd, "manifest", "annotate", "--os", "linux", "--arch", "arm64", "--variant", "v8",
            target, two)
    out = cli_run(cli_name, berthd, "manifest", "push", "--insecure", "--purge", target, timeout=120).stdout
    *pushed_refs, digest = out.splitlines()
    name = target.rsplit(":", 1)[0]
    assert len(pushed_refs) == 2 and all(  # each member put into the list's repository, by digest
        re.fullmatch(rf"Pushed ref {re.escape(name)}@(sha256:[0-9a-f]{{64}}) with digest: \1", line)
        for line in pushed_refs), out
    raw = skopeo_raw(target)
    assert digest == "sha256:" + hashlib.sha256(raw).hexdigest()
    index = json.loads(raw)
    kinds = {m["mediaType"] for m in index["manifests"]}  # berthd pushes OCI manifests: then an OCI index
    assert index["mediaType"] == (OCI_INDEX if kinds == {OCI_MANIFEST} else DOCKER_LIST), index
    platforms = sorted((m["platform"]["os"], m["platform"]["architecture"], m["platform"].get("variant", ""))
                       for m in index["manifests"])
    assert platforms == [("linux", "amd64", ""), ("linux", "arm64", "v8")]
    member = json.loads(skopeo_raw(f"{name}@{index['manifests'][1]['digest']}"))  # served by the list's repo
    assert member["schemaVersion"] == 2 and member["layers"]
    assert not (store_dir(berthd) / target.replace(":", "-").replace("/", "_")).exists()  # --purge


def test_both_clis_push_the_same_list_bytes(berthd, pushed, registry):
    one, two = pushed
    digests = {}
    for which in ("docker", "berth"):
        target = f"{registry.address}/same/{unique_name(which)}:v1"
        cli_run(which, berthd, "manifest", "create", "--insecure", target, two, one)
        cli_run(which, berthd, "manifest", "annotate", "--arch", "arm64", "--os-features", "a,b", target, one)
        digests[which] = cli_run(which, berthd, "manifest", "push", "--insecure", "-p", target,
                                 timeout=120).stdout.splitlines()[-1]
    assert digests["berth"] == digests["docker"]


def test_inspect_prints_what_docker_prints(berthd, pushed, registry):
    one, two = pushed
    target = f"{registry.address}/shown/{unique_name('list')}:v1"
    cli_run("docker", berthd, "manifest", "create", "--insecure", target, one, two)
    cli_run("docker", berthd, "manifest", "annotate", "--arch", "arm64", target, two)
    for args in ([target], ["-v", target], [target, two], ["-v", target, one]):  # the local list
        same(berthd, "manifest", "inspect", *args)
    cli_run("docker", berthd, "manifest", "push", "--insecure", target, timeout=120)
    for ref in (one, two, target):  # the registry's image manifests, then its list
        for verbose in ([], ["-v"]):
            assert same(berthd, "manifest", "inspect", "--insecure", *verbose, ref).returncode == 0
    cli_run("docker", berthd, "manifest", "rm", target)
    shown = json.loads(same(berthd, "manifest", "inspect", "--insecure", target).stdout)
    assert [m["platform"]["architecture"] for m in shown["manifests"]] == ["amd64", "arm64"]


def test_a_list_begun_by_one_cli_is_finished_by_the_other(berthd, pushed, registry):
    one, two = pushed
    a = f"{registry.address}/cross/{unique_name('a')}:v1"
    cli_run("docker", berthd, "manifest", "create", "--insecure", a, one, two)
    cli_run("berth", berthd, "manifest", "annotate", "--arch", "arm64", "--variant", "v8", a, two)
    assert '"architecture": "arm64"' in cli_run("docker", berthd, "manifest", "inspect", "-v", a, two).stdout
    digest = cli_run("docker", berthd, "manifest", "push", "--insecure", a, timeout=120).stdout.splitlines()[-1]
    assert digest == "sha256:" + hashlib.sha256(skopeo_raw(a)).hexdigest()
    cli_run("berth", berthd, "manifest", "rm", a)
    assert cli_run("docker", berthd, "manifest", "inspect", a, two, check=False).returncode == 1

    b = f"{registry.address}/cross/{unique_name('b')}:v1"
    cli_run("berth", berthd, "manifest", "create", b, one, two)  # loopback: no --insecure needed by berth
    cli_run("docker", berthd, "manifest", "annotate", "--arch", "arm64", b, one)
    cli_run("berth", berthd, "manifest", "push", b, timeout=120)
    platforms = [m["platform"]["architecture"] for m in json.loads(skopeo_raw(b))["manifests"]]
    assert platforms == ["arm64", "amd64"]
    cli_run("docker", berthd, "manifest", "rm", b)

    files = {}  # the same list made by each CLI: byte-identical member files
    for which in ("docker", "berth"):
        target = f"{registry.address}/cross/{unique_name(which)}:v1"
        cli_run(which, berthd, "manifest", "create", "--insecure", target, one)
        cli_run(which, berthd, "manifest", "annotate", "--os-version", "1.0", "--os-features", "x", target, one)
        folder = store_dir(berthd) / target.replace(":", "-").replace("/", "_")
        files[which] = {p.name: p.read_bytes() for p in folder.iterdir()}
        cli_run(which, berthd, "manifest", "rm", target)
    assert files["berth"] == files["docker"]


def test_errors_and_exit_codes_match_docker(berthd, pushed, registry):
    one, two = pushed
    missing = f"{registry.address}/src/one:nope"
    unknown = f"{registry.address}/nolist/{unique_name('x')}:v1"
    same(berthd, "manifest", "inspect", "--insecure", missing)                 # no such manifest: ...
    same(berthd, "manifest", "inspect", "--insecure", f"{registry.address}/nosuchrepo:v1")
    same(berthd, "manifest", "inspect", unknown, one)                           # No such manifest: ONE
    same(berthd, "manifest", "create", "--insecure", unknown, missing)
    same(berthd, "manifest", "push", unknown)
    same(berthd, "manifest", "annotate", "--arch", "arm64", unknown, one)
    same(berthd, "manifest", "rm", unknown, "busybox")
    same(berthd, "manifest", "inspect", "Bad")
    same(berthd, "manifest", "inspect")                                         # arity: exit 1
    same(berthd, "manifest", "inspect", "--bogus", one)                         # flag: exit 125
    listed = f"{registry.address}/errs/{unique_name('l')}:v1"
    cli_run("docker", berthd, "manifest", "create", "--insecure", listed, one)
    same(berthd, "manifest", "create", "--insecure", listed, two)               # refusing to amend ...
    same(berthd, "manifest", "annotate", "--os", "windows", listed, one)       # unsupported os/arch
    same(berthd, "manifest", "annotate", "--arch", "arm64", listed, two)       # not in the list
    cli_run("docker", berthd, "manifest", "create", "--insecure", "--amend", listed, f"{registry.address}/src/two:v1")
    for f in (store_dir(berthd) / listed.replace(":", "-").replace("/", "_")).iterdir():
        doc = json.loads(f.read_bytes())
        del doc["Descriptor"]["platform"]
        f.write_text(json.dumps(doc))
    same(berthd, "manifest", "push", "--insecure", listed)                      # must have an OS and Architecture
    cli_run("docker", berthd, "manifest", "rm", listed)


def test_stored_login_and_tls_registry(berthd, image, tmp_path_factory, tmp_path):
    """A TLS registry with basic auth: both CLIs use the stored login (--insecure: its CA is not trusted)."""
    with LocalRegistry(tmp_path_factory.mktemp("manifest-secure"), tls=True, users={"alice": "s3cret"}) as reg:
        cfg = tmp_path / "cfg"
        cfg.mkdir()

        def run(which: str, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
            path = CLIS[which]
            return subprocess.run([path, *args], env=dict(berthd.env, DOCKER_CONFIG=str(cfg)), input=input,
                                  capture_output=True, text=True, timeout=120,
                                  stdin=None if input is not None else subprocess.DEVNULL)

        name = f"{reg.address}/private/one:v1"
        docker(berthd, "tag", image, name)
        assert run("docker", "login", reg.address, "-u", "alice", "--password-stdin", input="s3cret\n").returncode == 0
        assert run("docker", "push", name).returncode == 0
        anonymous = cli_run("berth", berthd, "manifest", "inspect", "--insecure", name, check=False)
        assert anonymous.returncode == 1 and reg.address in anonymous.stderr, anonymous.stderr
        dk, bt = run("docker", "manifest", "inspect", "--insecure", "-v", name), \
            run("berth", "manifest", "inspect", "--insecure", "-v", name)
        assert (bt.returncode, bt.stdout) == (dk.returncode, dk.stdout) == (0, dk.stdout), (dk.stderr, bt.stderr)
        target = f"{reg.address}/private/list:v1"
        assert run("berth", "manifest", "create", "--insecure", target, name).returncode == 0
        pushed = run("berth", "manifest", "push", "--insecure", "--purge", target)
        assert pushed.returncode == 0, pushed.stderr
        raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", "--creds", "alice:s3cret",
                              f"docker://{target}"], check=True, capture_output=True, timeout=120).stdout
        assert pushed.stdout.splitlines()[-1] == "sha256:" + hashlib.sha256(raw).hexdigest()
        docker(berthd, "rmi", name)


# --------------------------------------------------------------------------- #
# A hostile registry


class _Evil(BaseHTTPRequestHandler):
    """A registry that answers with what a compromised one might send."""

    config = b'{"architecture":"amd64","os":"linux"}'
    routes: dict[str, tuple[str, bytes]] = {}

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if "/manifests/" in self.path:
            self.send_header("Docker-Content-Digest", "sha256:" + hashlib.sha256(body).hexdigest())
        self.end_headers()
        if self.command != "HEAD":
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass

    def do_GET(self) -> None:
        if self.path == "/v2/":
            return self._send(200, b"{}")
        if self.path.startswith("/v2/evil/blobs/"):  # every config: far larger than a config may be
            return self._send(200, b"A" * (6 << 20), "application/octet-stream")
        route = self.routes.get(self.path)
        if route is None:
            return self._send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}')
        return self._send(200, route[1], route[0])

    do_HEAD = do_GET


def _manifest(config_digest: str) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                       "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 10,
                                  "digest": config_digest},
                       "layers": []}).encode()


@pytest.fixture
def evil_registry():
    _Evil.routes = {
        "/v2/evil/manifests/bigconfig": ("application/vnd.docker.distribution.manifest.v2+json",
                                         _manifest("sha256:" + "b" * 64)),
        "/v2/evil/manifests/badindex": ("application/vnd.oci.image.index.v1+json", json.dumps(
            {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1,
                            "digest": "sha256:../../../../etc/passwd"}]}).encode()),
        "/v2/evil/manifests/escape": ("application/vnd.oci.image.index.v1+json", json.dumps(
            {"schemaVersion": 2, "manifests": [{"digest": "sha256:" + "c" * 64,
                                                "platform": {"architecture": "\x1b]0;pwned\x07", "os": "linux"}}]
             }).encode()),
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Evil)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_hostile_registry_answers_are_refused_not_printed_or_stored(berthd, evil_registry, tmp_path):
    before = sorted(os.listdir(store_dir(berthd))) if store_dir(berthd).exists() else []
    cases = {"bigconfig": "larger than", "badindex": "malformed digest", "escape": "architecture"}
    for tag, why in cases.items():
        ref = f"{evil_registry}/evil:{tag}"
        cp = cli_run("berth", berthd, "manifest", "inspect", ref, check=False, timeout=60)
        assert cp.returncode == 1 and why in cp.stderr and cp.stdout == "", (tag, cp.stderr)
        assert "\x1b" not in cp.stderr and "pwned" not in cp.stdout
        target = f"{evil_registry}/evil/list-{tag}:v1"
        cp = cli_run("berth", berthd, "manifest", "create", target, ref, check=False, timeout=60)
        assert cp.returncode == 1 and "Created" not in cp.stdout, (tag, cp.stdout, cp.stderr)
    after = sorted(os.listdir(store_dir(berthd))) if store_dir(berthd).exists() else []
    assert after == before  # nothing stored for a refused manifest
    cp = cli_run("berth", berthd, "manifest", "create", "127.0.0.1:1/../../etc/x:v1", "busybox", check=False)
    assert cp.returncode == 1 and cp.stderr.startswith("error parsing name for manifest list")
    assert not Path("/etc/x").exists() and not Path("/etc/x-v1").exists()
    assert_responsive(berthd)
