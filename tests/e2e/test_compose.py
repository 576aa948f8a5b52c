"""docker-compose (Debian's 1.29.2, unpatched) driving a three-service project against berthd.

Theory of operation: one project in a temporary directory, built from the busybox
image the session imports:

    db      busybox; a named volume at /data; a health check (compose file 2.4's
            `depends_on: condition: service_healthy` waits for it); alias
            "database" on the project network
    web     built with `build:` from a tiny Dockerfile FROM that image; httpd on
            port 80 published on 127.0.0.1 at a port berth picks; environment
    worker  busybox, sleeping; its environment names the database by its alias

The test walks the verbs a user types, in order (each step builds on the one
before, so it is one test): up -d, ps, logs, exec, run --rm, restart, stop,
start, up -d --scale, build (and the recreate that follows), down -v, and
checks the results as a user would: the services reach each other by name and
alias, the volume keeps its content across restarts, down -v leaves nothing.

compose talks to berthd through the docker-py 5 that Debian bundles (API 1.41);
`exec` and `run` go through the real docker CLI, as compose does by default.
Traffic stays between the test daemon's containers and from the host to its
own 127.0.0.1.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
import urllib.request
from pathlib import Path

import pytest
from berth_e2e_conftest import docker, is_dockerd, unique_name, wait_until

COMPOSE = shutil.which("docker-compose") or "/usr/bin/docker-compose"

pytestmark = pytest.mark.skipif(not Path(COMPOSE).exists(),
                                reason="docker-compose is not installed: run scripts/setup.sh")


@pytest.fixture(autouse=True)
def berth_only(berthd):
    if is_dockerd(berthd):
        pytest.skip("the reference dockerd runs with --bridge none here")


def _compose_file(image: str) -> str:
    return textwrap.dedent(f"""\
        version: "2.4"
        services:
          db:
            image: {image}
            command: ["sh", "-c", "echo db-ready; mkdir -p /data/www; exec httpd -f -p 5432 -h /data/www"]
            volumes:
              - dbdata:/data
            healthcheck:
              test: ["CMD", "test", "-d", "/data/www"]
              interval: 1s
              timeout: 5s
              retries: 60
            networks:
              backend:
                aliases: [database]
          web:
            build: ./web
            environment:
              GREETING: hello-from-compose
            ports:
              - "127.0.0.1::80"
            depends_on:
              db:
                condition: service_healthy
            networks: [backend]
          worker:
            image: {image}
            command: ["sleep", "3600"]
            environment:
              - DB_HOST=database
            networks: [backend]
        volumes:
          dbdata: {{}}
        networks:
          backend: {{}}
        """)


def _write_project(root: Path, image: str, page: str) -> None:
    (root / "web").mkdir(exist_ok=True)
    (root / "docker-compose.yml").write_text(_compose_file(image))
    (root / "web" / "Dockerfile").write_text(textwrap.dedent(f"""\
        FROM {image}
        COPY index.html /www/index.html
        CMD ["sh", "-c", "echo \\"$GREETING\\" > /www/env.txt; exec httpd -f -p 80 -h /www"]
        """))
    (root / "web" / "index.html").write_text(page)


class Project:
    """`docker-compose -p <name>` in a directory, against one daemon."""

    def __init__(self, d, root: Path, name: str) -> None:
        self.d, self.root, self.name = d, root, name
        # compose's own HTTP timeout; the docker CLI it calls for exec/run uses the same DOCKER_HOST.
        self.env = {**d.env, "COMPOSE_HTTP_TIMEOUT": "120"}

    def __call__(self, *args: str, check: bool = True, timeout: float = 180,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        argv = [COMPOSE, "--no-ansi", "-p", self.name, *args]
        try:
            cp = subprocess.run(argv, cwd=self.root, env={**self.env, **(env or {})}, text=True,
                                capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            pytest.fail(f"`docker-compose {' '.join(args)}` did not finish in {timeout}s; "
                        f"stdout={e.stdout!r} stderr={e.stderr!r}", pytrace=False)
        if check and cp.returncode != 0:
            pytest.fail(f"`docker-compose {' '.join(args)}` exited {cp.returncode}\nstdout: {cp.stdout}\n"
                        f"stderr: {cp.stderr}", pytrace=False)
        return cp

    def containers(self, service: str = "", all_: bool = True) -> list[dict]:
        """The project's containers (docker ps's JSON lines), optionally of one service."""
        args = ["ps", "--format", "{{json .}}", "--filter", f"label=com.docker.compose.project={self.name}"]
        if service:
            args += ["--filter", f"label=com.docker.compose.service={service}"]
        if all_:
            args.append("-a")
        out = docker(self.d, *args).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def host_port(self, service: str, index: int = 1) -> str:
        out = self("port", f"--index={index}", service, "80").stdout.strip()
        assert out.startswith("127.0.0.1:"), out
        return out


def _get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.read().decode()
    except OSError:
        return ""


@pytest.fixture
def project(berthd, image, tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    _write_project(root, image, "first page\n")
    p = Project(berthd, root, unique_name("cmp").replace("-", ""))
    yield p
    p("down", "-v", "--rmi", "local", "--remove-orphans", check=False, timeout=300)


def _health(d, cid: str) -> str:
    cp = docker(d, "inspect", "-f", "{{if .State.Health}}{{.State.Health.Status}}{{end}}", cid, check=False)
    return cp.stdout.strip()


def test_three_service_project_through_the_verbs(berthd, project):
    p = project
    # -- up -d: db first and healthy (depends_on: service_healthy), then web (built) and worker
    up = p("up", "-d", timeout=600)
    assert "Creating" in up.stderr, up.stderr
    for service in ("db", "web", "worker"):
        [c] = p.containers(service)
        assert c["State"] == "running", c
    [db] = p.containers("db")
    assert _health(berthd, db["ID"]) == "healthy"
    assert f"{p.name}_backend" in docker(berthd, "network", "ls", "--format", "{{.Name}}").stdout.split()
    assert f"{p.name}_dbdata" in docker(berthd, "volume", "ls", "--format", "{{.Name}}").stdout.split()

    # -- ps, logs
    ps = p("ps").stdout
    for service in ("db", "web", "worker"):
        assert f"{p.name}_{service}_1" in ps, ps
    assert "Up" in ps and "127.0.0.1:" in ps and "->80/tcp" in ps, ps
    logs = p("logs", "--no-color", "db").stdout
    assert "db-ready" in logs, logs

    # -- the published port from the host; environment; names and the alias on the project network
    url = f"http://{p.host_port('web')}"
    assert wait_until(lambda: _get(url + "/index.html"), 30, "web's published port") == "first page\n"
    assert _get(url + "/env.txt") == "hello-from-compose\n"
    out = p("exec", "-T", "worker", "sh", "-c",
            'echo "$DB_HOST"; wget -qO- http://web/index.html; echo stored > /tmp/x; '
            'wget -qO- "http://$DB_HOST:5432/" >/dev/null 2>&1; echo "db=$?"').stdout
    assert out.splitlines()[:2] == ["database", "first page"], out
    p("exec", "-T", "db", "sh", "-c", "echo kept-across-restarts > /data/www/state.txt")
    out = p("exec", "-T", "worker", "wget", "-qO-", "http://database:5432/state.txt").stdout
    assert out == "kept-across-restarts\n", out

    # -- run --rm: a one-off container of a service, on the project network, removed afterwards
    before = {c["ID"] for c in p.containers()}
    run = p("run", "--rm", "worker", "sh", "-c", 'echo "one-off $DB_HOST"; wget -qO- http://db:5432/state.txt',
            timeout=120)
    assert run.stdout.replace("\r\n", "\n").splitlines()[-2:] == ["one-off database", "kept-across-restarts"], run
    assert {c["ID"] for c in p.containers()} == before  # --rm: nothing left
    # compose's own attach and exec over the API (dockerpty, hijacked streams) instead of the docker CLI
    python_side = {"COMPOSE_INTERACTIVE_NO_CLI": "1"}
    # (dockerpty attaches only after the start, with logs=0, so a short one-off's output can be missed, with
    # Docker too: the exit code is what comes back for sure)
    run = p("run", "--rm", "-T", "worker", "sh", "-c", '[ "$DB_HOST" = database ] && exit 4', env=python_side,
            check=False, timeout=120)
    assert run.returncode == 4, run
    out = p("exec", "-T", "worker", "sh", "-c", "echo api-exec; exit 3", env=python_side, check=False)
    assert out.returncode == 3 and "api-exec" in out.stdout, out
    assert {c["ID"] for c in p.containers()} == before

    # -- restart, stop, start: the named volume keeps its content
    p("restart", "db", timeout=120)
    wait_until(lambda: _health(berthd, p.containers("db")[0]["ID"]) == "healthy", 60, "db healthy again")
    out = p("exec", "-T", "db", "cat", "/data/www/state.txt").stdout
    assert out == "kept-across-restarts\n", out
    p("stop", timeout=120)
    assert {c["State"] for c in p.containers()} == {"exited"}
    p("start", timeout=300)
    assert {c["State"] for c in p.containers()} == {"running"}
    out = p("exec", "-T", "worker", "wget", "-qO-", "http://database:5432/state.txt").stdout
    assert out == "kept-across-restarts\n", out

    # -- scale: two web containers, each with its own published port, both answering
    p("up", "-d", "--scale", "web=2", timeout=300)
    webs = p.containers("web")
    assert len(webs) == 2 and {c["State"] for c in webs} == {"running"}, webs
    for index in (1, 2):
        url_n = f"http://{p.host_port('web', index)}/index.html"
        assert wait_until(lambda u=url_n: _get(u), 30, f"web #{index}") == "first page\n"
    out = p("exec", "-T", "worker", "sh", "-c", "nslookup web 2>/dev/null || ping -c1 -W2 web").stdout
    assert "web" in out, out

    # -- build, then up -d: web is recreated from the new image (compose renames the old one first)
    (p.root / "web" / "index.html").write_text("second page\n")
    p("build", "web", timeout=300)
    p("up", "-d", "--scale", "web=1", timeout=300)
    webs = p.containers("web")
    assert len(webs) == 1 and webs[0]["State"] == "running", webs
    url = f"http://{p.host_port('web')}"
    assert wait_until(lambda: _get(url + "/index.html"), 30, "recreated web") == "second page\n"
    # KNOWN RACE (closing note): about 1 run in 8, the name "web" did not resolve right after the
    # recreation; cause not yet found (suspect: the old container's removal against the new alias).
    out = wait_until(lambda: p("exec", "-T", "worker", "wget", "-qO-", "http://web/index.html",
                               check=False).stdout, 15, "web resolvable by name after its recreation")
    assert out == "second page\n", out

    # -- down -v: containers, the network and the volume are gone
    p("down", "-v", timeout=300)
    assert p.containers() == []
    assert f"{p.name}_backend" not in docker(berthd, "network", "ls", "--format", "{{.Name}}").stdout.split()
    assert f"{p.name}_dbdata" not in docker(berthd, "volume", "ls", "--format", "{{.Name}}").stdout.split()


def test_project_at_api_1_41(berthd, project):
    """compose pinned to an older API (COMPOSE_API_VERSION): it sees the short id among the Aliases, as
    Docker shows them below 1.45, and skips the disconnect/connect it does at newer versions."""
    p = project
    p.env["COMPOSE_API_VERSION"] = "1.41"
    p("up", "-d", timeout=600)
    [worker] = p.containers("worker")
    net = f"{p.name}_backend"
    aliases = json.loads(docker(berthd, "inspect", "-f", "{{json .NetworkSettings.Networks}}", worker["ID"]).stdout)
    assert "worker" in aliases[net]["Aliases"], aliases
    out = p("exec", "-T", "worker", "wget", "-qO-", "http://web/index.html").stdout
    assert out == "first page\n", out
    p("down", "-v", timeout=300)
    assert p.containers() == []
