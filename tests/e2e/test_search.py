"""`docker search` and `berth search` (GET /images/search) against a search server on 127.0.0.1.

No registry here serves Docker's v1 search API, so each test module starts a small one: a Python
http.server thread on 127.0.0.1 that answers `GET /v1/search?q=&n=` with a fixed set of results, as
Docker Hub's index (index.docker.io) would. Queries name what the server does: "busy" gets the good
results, "huge" an answer that never ends, "garbage" HTML, "types" rows with wrong field types. Every
CLI test runs with both clients (`cli_name`), whose output must be docker's. A real docker-registry
(distribution v2, which has no search) checks the answer for an index that does not serve search.

The reference dockerd runs in a network namespace of its own, where this server is out of reach: the
tests that need it run against berthd only.
"""

from __future__ import annotations

import functools
import gzip
import json
import shutil
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from berth_e2e_conftest import assert_responsive, cli_run, is_dockerd

from berth.testing.registry import LocalRegistry

pytestmark = pytest.mark.skipif(is_dockerd(), reason="the search server on 127.0.0.1 is out of the reference "
                                                     "dockerd's network namespace")

RESULTS = [
    {"name": "busy/one", "description": "A short one", "star_count": 5, "is_official": True, "is_automated": True},
    {"name": "busy/two", "description": "A description that is much longer than forty-five characters, really",
     "star_count": 2, "is_official": False, "is_automated": False},
    {"name": "busy/three", "description": "two\nlines", "star_count": 3, "is_official": False,
     "is_automated": True},
]

TABLE = (
    "NAME         DESCRIPTION                                     STARS     OFFICIAL\n"
    "busy/one     A short one                                     5         [OK]\n"
    "busy/two     A description that is much longer than forty…   2         \n"
    "busy/three   two lines                                       3         \n")

HUGE_BYTES = 64 << 20  # what the hostile answer would send if read to its end


@functools.cache
def _bomb() -> bytes:
    return gzip.compress(b'{"results": [{"name": "a", "description": "' + b"x" * HUGE_BYTES + b'"}]}')


class _Index(BaseHTTPRequestHandler):
    """Docker's v1 search API, as an index serves it; what it was asked is kept in `server.asked`."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        url = urllib.parse.urlparse(self.path)
        if url.path != "/v1/search":
            self._send(404, b'{"errors": [{"code": "NOT_FOUND"}]}')
            return
        query = urllib.parse.parse_qs(url.query)
        q, n = query.get("q", [""])[0], int(query.get("n", ["0"])[0])
        self.server.asked.append((q, n, self.headers.get("X-Docker-Token", "")))  # type: ignore[attr-defined]
        if q == "huge":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            try:
                self.wfile.write(b'{"results": [{"name": "a", "description": "')
                for _ in range(HUGE_BYTES >> 16):
                    self.wfile.write(b"x" * (1 << 16))
            except OSError:
                pass  # berthd stopped reading, as it should
            return
        if q == "bomb":  # 64 MiB of JSON in 64 KiB, sent compressed although berthd asked for identity
            self.send_response(200)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(_bomb())))
            self.end_headers()
            self.wfile.write(_bomb())
            return
        if q == "garbage":
            self._send(200, b"<html><body>Welcome to nginx!</body></html>")
            return
        if q == "types":
            rows = [{"name": 7}, {"name": "x", "star_count": "many"}, "row", {"name": "a\x1b[31mb"},
                    {"name": "fine/one", "star_count": 1, "is_official": False}]
            self._send(200, json.dumps({"num_results": 5, "query": q, "results": rows}).encode())
            return
        rows = RESULTS[:n]
        self._send(200, json.dumps({"num_results": len(RESULTS), "query": q, "results": rows}).encode())

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def index() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Index)
    server.daemon_threads = True
    server.asked = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _term(server: ThreadingHTTPServer, query: str) -> str:
    return f"127.0.0.1:{server.server_address[1]}/{query}"


def test_search_table_as_docker_prints_it(berthd, index, cli_name: str) -> None:
    out = cli_run(cli_name, berthd, "search", _term(index, "busy")).stdout
    assert out == TABLE
    assert index.asked[-1] == ("busy", 25, "true")  # Docker's default limit, and its header


def test_limit_and_filters(berthd, index, cli_name: str) -> None:
    term = _term(index, "busy")
    assert cli_run(cli_name, berthd, "search", "--limit", "2", "--format", "{{.Name}}", term).stdout == \
        "busy/one\nbusy/two\n"
    assert index.asked[-1][:2] == ("busy", 2)
    assert cli_run(cli_name, berthd, "search", "--filter", "stars=3", "--format", "{{.Name}}", term).stdout == \
        "busy/one\nbusy/three\n"
    assert cli_run(cli_name, berthd, "search", "-f", "is-official=true", "--format", "{{.Name}}|{{.IsOfficial}}",
                   term).stdout == "busy/one|[OK]\n"
    assert cli_run(cli_name, berthd, "search", "-f", "is-official=false", "-f", "stars=3", "--format",
                   "{{.Name}}", term).stdout == "busy/three\n"
    automated = cli_run(cli_name, berthd, "search", "-f", "is-automated=true", term)
    assert automated.stdout == "NAME      DESCRIPTION   STARS     OFFICIAL\n"  # deprecated: nothing is automated
    assert 'the "is-automated" filter is deprecated' in automated.stderr


def test_no_trunc_and_formats(berthd, index, cli_name: str) -> None:
    term = _term(index, "busy")
    wide = cli_run(cli_name, berthd, "search", "--no-trunc", term).stdout
    assert "busy/two     A description that is much longer than forty-five characters, really   2" in wide
    lines = cli_run(cli_name, berthd, "search", "--format", "json", "--limit", "1", term).stdout
    assert lines == '{"Description":"A short one","IsOfficial":"true","Name":"busy/one","StarCount":"5"}\n'
    table = cli_run(cli_name, berthd, "search", "--format", "table {{.Name}}\\t{{.StarCount}}", term).stdout
    assert table == "NAME         STARS\nbusy/one     5\nbusy/two     2\nbusy/three   3\n"


def test_bad_filters_and_limits_are_refused_in_dockers_words(berthd, index, cli_name: str) -> None:
    term = _term(index, "busy")
    for args, words in ((("-f", "foo=bar"), "invalid filter 'foo'"),
                        (("-f", "stars=abc"), "invalid filter 'stars=abc'"),
                        (("-f", "is-official=maybe"), "invalid filter 'is-official=maybe'"),
                        (("--limit", "101"), "limit 101 is outside the range of [1, 100]")):
        cp = cli_run(cli_name, berthd, "search", *args, term, check=False)
        assert cp.returncode == 1, (args, cp.stderr)
        assert cp.stderr.startswith(f"Error response from daemon: {words}"), (args, cp.stderr)
    cp = cli_run(cli_name, berthd, "search", "-f", "stars", term, check=False)
    assert cp.returncode == 125 and "bad format of filter (expected name=value)" in cp.stderr


def test_api_answer_and_sdk(berthd, index, client) -> None:
    found = client.images.search(_term(index, "busy"), limit=2)
    assert found == [{"description": "A short one", "is_official": True, "is_automated": False, "name": "busy/one",
                      "star_count": 5},
                     {"description": RESULTS[1]["description"], "is_official": False, "is_automated": False,
                      "name": "busy/two", "star_count": 2}]
    api = client.api
    for params, status, words in (({"term": _term(index, "busy"), "limit": "0"}, 200, None),
                                  ({"term": _term(index, "busy"), "limit": "-1"}, 400, "outside the range"),
                                  ({"term": _term(index, "busy"), "limit": "x"}, 400, "invalid limit specified"),
                                  ({"term": _term(index, "busy"), "filters": "{"}, 400, None),
                                  ({"term": "http://" + _term(index, "busy")}, 400, "should not have a scheme"),
                                  ({}, 400, "a search term is required")):
        resp = api._get(api._url("/images/search"), params=params)
        assert resp.status_code == status, (params, resp.text)
        if words:
            assert words in resp.json()["message"]


def test_registry_without_search_says_so(berthd, cli_name: str, tmp_path: Path) -> None:
    if shutil.which("docker-registry") is None:
        pytest.skip("needs docker-registry (the README's set-up installs it)")
    with LocalRegistry(tmp_path) as reg:
        cp = cli_run(cli_name, berthd, "search", f"{reg.address}/busy", check=False)
    assert cp.returncode == 1
    assert cp.stdout == ""
    assert cp.stderr.startswith("Error response from daemon: Unexpected status code 404"), cp.stderr
    assert "does not serve the v1 search API" in cp.stderr


def test_docker_hub_out_of_reach_is_a_clean_error(berthd, cli_name: str) -> None:
    cp = cli_run(cli_name, berthd, "search", "--limit", "1", "busybox", check=False, timeout=120)
    if cp.returncode == 0:
        pytest.skip("Docker Hub is reachable from here")
    assert cp.returncode == 1
    assert cp.stderr.startswith("Error response from daemon: cannot search Docker Hub"), cp.stderr
    assert "Traceback" not in cp.stderr and "internal error" not in cp.stderr


def test_hostile_index_answers_are_refused_cleanly(berthd, index, cli_name: str) -> None:
    huge = cli_run(cli_name, berthd, "search", _term(index, "huge"), check=False, timeout=120)
    assert huge.returncode == 1
    assert "more than 1048576 bytes, more than berth reads for a search" in huge.stderr, huge.stderr
    bomb = cli_run(cli_name, berthd, "search", _term(index, "bomb"), check=False)
    assert bomb.returncode == 1
    assert "something that is not JSON" in bomb.stderr, bomb.stderr
    garbage = cli_run(cli_name, berthd, "search", _term(index, "garbage"), check=False)
    assert garbage.returncode == 1
    assert "something that is not JSON" in garbage.stderr, garbage.stderr
    types = cli_run(cli_name, berthd, "search", "--format", "{{.Name}}", _term(index, "types"))
    assert types.stdout == "fine/one\n"  # the rows with wrong types (and a name with an escape) are left out
    assert_responsive(berthd)
