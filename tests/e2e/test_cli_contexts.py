"""`berth context ...` and `-c/--context` against docker 28's CLI, sharing one context store.

Every test gets a fresh DOCKER_CONFIG directory and runs both CLIs with DOCKER_HOST unset
(the session daemon's environment sets it, and it would override every context): a context
made by one CLI must serve the other, `context ls`/`inspect` must print the same, exports
must import across, and the order in which -H, -c, DOCKER_HOST, DOCKER_CONTEXT and
config.json's currentContext choose the daemon must be docker's. One test runs a second
berthd on TCP with --tlsverify and reaches it through a context's TLS files.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from berth_e2e_conftest import CLIS, Daemon, assert_responsive

from berth.testing.pki import make_pki

HOST_VARS = ("DOCKER_HOST", "BERTH_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")
Run = Callable[..., subprocess.CompletedProcess]


@pytest.fixture
def ctx_run(berthd: Daemon, tmp_path: Path) -> Run:
    """run(which, *args, env={...}, check=True, cwd=None): a CLI on a fresh store, no host in the environment."""
    cfg = tmp_path / "docker-config"
    cfg.mkdir()
    base = {k: v for k, v in berthd.env.items() if k not in HOST_VARS}
    base["DOCKER_CONFIG"] = str(cfg)

    def run(which: str, *args: str, env: dict[str, str] | None = None, check: bool = True,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
        cp = subprocess.run([CLIS[which], *args], env={**base, **(env or {})}, text=True, capture_output=True,
                            timeout=60, stdin=subprocess.DEVNULL, cwd=cwd or tmp_path)
        if check and cp.returncode != 0:
            pytest.fail(f"`{which} {' '.join(args)}` exited {cp.returncode}\nstdout: {cp.stdout}\n"
                        f"stderr: {cp.stderr}", pytrace=False)
        return cp
    return run


def _ps_works(run: Run, which: str, *args: str, env: dict[str, str] | None = None) -> None:
    cp = run(which, *args, "ps", "--format", "{{.ID}}", env=env, check=False)
    assert cp.returncode == 0, (which, args, env, cp.stderr)


def test_a_context_made_by_docker_serves_berth(berthd: Daemon, ctx_run: Run) -> None:
    made = ctx_run("docker", "context", "create", "dk1", "--description", "from docker",
                   "--docker", f"host={berthd.host}")
    assert made.stdout == "dk1\n" and made.stderr == 'Successfully created context "dk1"\n'
    # without a context berth reaches berthd's default socket, not the test daemon's
    _ps_works(ctx_run, "berth", "-c", "dk1")
    _ps_works(ctx_run, "berth", env={"DOCKER_CONTEXT": "dk1"})
    used = ctx_run("berth", "context", "use", "dk1")
    assert (used.stdout, used.stderr) == ("dk1\n", 'Current context is now "dk1"\n')
    _ps_works(ctx_run, "berth")
    assert ctx_run("docker", "context", "show").stdout == "dk1\n"
    for which in ("docker", "berth"):
        ls = ctx_run(which, "context", "ls", "--format", "{{.Name}} {{.Current}} {{.DockerEndpoint}}").stdout
        assert f"dk1 true {berthd.host}" in ls.splitlines(), (which, ls)
    assert_responsive(berthd)


def test_a_context_made_by_berth_serves_docker(berthd: Daemon, ctx_run: Run) -> None:
    made = ctx_run("berth", "context", "create", "bt1", "--docker", f"host={berthd.host}")
    assert made.stdout == "bt1\n" and made.stderr == 'Successfully created context "bt1"\n'
    _ps_works(ctx_run, "docker", "-c", "bt1")
    ctx_run("berth", "context", "use", "bt1")
    _ps_works(ctx_run, "docker")
    docker_view = json.loads(ctx_run("docker", "context", "inspect", "bt1").stdout)
    berth_view = json.loads(ctx_run("berth", "context", "inspect", "bt1").stdout)
    assert docker_view == berth_view and docker_view[0]["Endpoints"]["docker"]["Host"] == berthd.host
    ctx_run("docker", "context", "update", "bt1", "--description", "changed by docker")
    assert ctx_run("berth", "context", "inspect", "-f", "{{.Metadata.Description}}", "bt1").stdout == \
        "changed by docker\n"
    rm = ctx_run("berth", "context", "rm", "bt1", check=False)
    assert rm.returncode == 1 and rm.stderr == 'context "bt1" is in use, set -f flag to force remove\n'
    ctx_run("berth", "context", "rm", "-f", "bt1")
    assert ctx_run("docker", "context", "show").stdout == "default\n"
    assert_responsive(berthd)


def test_precedence_matches_docker(berthd: Daemon, ctx_run: Run) -> None:
    """-c beats DOCKER_HOST, which beats DOCKER_CONTEXT and currentContext; -H with -c is refused."""
    ctx_run("docker", "context", "create", "good", "--docker", f"host={berthd.host}")
    ctx_run("docker", "context", "create", "dead", "--docker", f"host=unix://{berthd.tmp}/no-daemon.sock")
    ctx_run("docker", "context", "use", "dead")
    here = {"DOCKER_HOST": berthd.host}
    for which in ("docker", "berth"):
        assert ctx_run(which, "ps", check=False).returncode == 1, which          # currentContext: dead
        _ps_works(ctx_run, which, env=here)                                       # DOCKER_HOST wins over it
        _ps_works(ctx_run, which, env={**here, "DOCKER_CONTEXT": "dead"})        # ... and over DOCKER_CONTEXT
        _ps_works(ctx_run, which, "-c", "good")
        _ps_works(ctx_run, which, env={"DOCKER_CONTEXT": "good"})
        assert ctx_run(which, "-c", "dead", "ps", env=here, check=False).returncode == 1, which  # -c wins
        both = ctx_run(which, "-H", berthd.host, "-c", "good", "ps", check=False)
        assert (both.returncode, both.stderr) == (1, "conflicting options: cannot specify both --host and "
                                                     "--context\n"), which
        missing = ctx_run(which, "-c", "nope", "ps", check=False)
        assert missing.returncode == 1 and missing.stderr.startswith(
            'Failed to initialize: unable to resolve docker endpoint: context "nope": context not found: open '), \
            (which, missing.stderr)
    shows = {w: ctx_run(w, "context", "show", env=here).stdout for w in ("docker", "berth")}
    assert shows == {"docker": "default\n", "berth": "default\n"}
    warned = {w: ctx_run(w, "context", "use", "good", env=here).stderr for w in ("docker", "berth")}
    assert warned["docker"] == warned["berth"] and "DOCKER_HOST environment variable overrides" in warned["berth"]
    assert_responsive(berthd)


def test_ls_and_inspect_print_what_docker_prints(berthd: Daemon, ctx_run: Run, tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    ctx_run("docker", "context", "create", "plain", "--description", "a <plain> one",
            "--docker", f"host={berthd.host}")
    ctx_run("berth", "context", "create", "tls1", "--docker",
            f"host=tcp://127.0.0.1:1,ca={pki.ca},cert={pki.client_cert},key={pki.client_key}")
    ctx_run("docker", "context", "create", "skip1", "--docker", "host=tcp://127.0.0.1:2,skip-tls-verify=true")
    ctx_run("berth", "context", "create", "copy1", "--from", "tls1")
    ctx_run("docker", "context", "use", "tls1")
    here = {"DOCKER_HOST": berthd.host}  # the same "default" endpoint for both CLIs
    for args, env in [(("context", "ls"), here), (("context", "ls", "--format", "json"), here),
                      (("context", "ls", "-q"), {}), (("-c", "copy1", "context", "ls"), here),
                      (("context", "ls", "--format", "{{.Name}}\t{{.Description}}"), {}),
                      (("context", "inspect", "plain", "tls1", "skip1", "copy1"), {}),
                      (("context", "inspect"), here), (("context", "inspect", "--format", "json", "plain"), {}),
                      (("context", "inspect", "-f", "{{.Name}} {{json .TLSMaterial}}", "copy1", "nope"), {}),
                      (("context", "show"), {}), (("context", "rm", "nope", "default"), {})]:
        d_cp, b_cp = ctx_run("docker", *args, env=env, check=False), ctx_run("berth", *args, env=env, check=False)
        assert (b_cp.returncode, b_cp.stdout, b_cp.stderr) == (d_cp.returncode, d_cp.stdout, d_cp.stderr), args


def test_export_and_import_across_the_two_clis(berthd: Daemon, ctx_run: Run, tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    ctx_run("docker", "context", "create", "src", "--description", "exported",
            "--docker", f"host=tcp://127.0.0.1:1,ca={pki.ca},cert={pki.client_cert},key={pki.client_key}")
    for exporter, importer in (("docker", "berth"), ("berth", "docker")):
        archive = tmp_path / f"by-{exporter}.tar"
        out = ctx_run(exporter, "context", "export", "src", str(archive))
        assert out.stderr == f'Written file "{archive}"\n'
        name = f"from-{exporter}"
        assert ctx_run(importer, "context", "import", name, str(archive)).stdout == f"{name}\n"
        views = [json.loads(ctx_run(w, "context", "inspect", name).stdout)[0] for w in ("docker", "berth")]
        assert views[0] == views[1]
        assert views[0]["TLSMaterial"] == {"docker": ["ca.pem", "cert.pem", "key.pem"]}
        assert views[0]["Metadata"] == {"Description": "exported"}
    by_docker, by_berth = (tmp_path / "by-docker.tar").read_bytes(), (tmp_path / "by-berth.tar").read_bytes()
    assert by_berth.startswith(by_docker)  # the same bytes; berth's adds the end-of-archive blocks
    streamed = ctx_run("berth", "context", "export", "src", "-")
    assert streamed.stdout.encode()[:512] == by_docker[:512]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_tls_context_reaches_a_tlsverify_daemon(berthd_factory, ctx_run: Run, tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    port = _free_port()
    tlsd = berthd_factory(extra_args=("-H", f"tcp://127.0.0.1:{port}", "--tlsverify", "--tlscacert", str(pki.ca),
                                      "--tlscert", str(pki.server_cert), "--tlskey", str(pki.server_key)))
    host = f"tcp://127.0.0.1:{port}"
    ctx_run("docker", "context", "create", "secure",
            "--docker", f"host={host},ca={pki.ca},cert={pki.client_cert},key={pki.client_key}")
    ctx_run("berth", "context", "create", "nocert", "--docker", f"host={host},ca={pki.ca}")
    for which in ("docker", "berth"):
        version = ctx_run(which, "-c", "secure", "version", "--format", "{{.Server.APIVersion}}")
        assert version.stdout.strip(), which
        # the daemon wants a client certificate: a context without one is refused
        assert ctx_run(which, "-c", "nocert", "ps", check=False).returncode != 0, which
    assert_responsive(tlsd)
