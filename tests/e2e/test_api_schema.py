"""berthd's answers against the Engine API v1.47 specification's response schemas.

The spec (shared/reference/docker-engine-api-v1.47.yaml, beside the repository) is
the contract. Each answer is validated with jsonschema against the response schema
of its operation. Swagger 2.0 marks nullable fields inconsistently, and Docker
itself sends null for empty lists and maps, so null is accepted wherever a type is
given; everything else (types, required fields, shapes) must match.
"""

from __future__ import annotations

import copy
import json
import socket
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from berth_e2e_conftest import RUN_NET, docker, is_dockerd

SPEC_PATH = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "docker-engine-api-v1.47.yaml"

pytestmark = pytest.mark.skipif(not SPEC_PATH.exists(), reason=f"the API spec is not at {SPEC_PATH}")


def _nullable(node: Any) -> Any:
    if isinstance(node, dict):
        out = {k: _nullable(v) for k, v in node.items()}
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        if "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None, ""]
        return out
    if isinstance(node, list):
        return [_nullable(v) for v in node]
    return node


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return _nullable(yaml.safe_load(SPEC_PATH.read_text()))


def schema_for(spec: dict[str, Any], path: str, method: str = "get", status: int = 200) -> dict[str, Any]:
    op = spec["paths"][path][method]
    schema = copy.deepcopy(op["responses"][status]["schema"])
    schema["definitions"] = spec["definitions"]
    return schema


def get(d, path: str) -> Any:
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(d.sock)
    sock.sendall(f"GET /v1.41{path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split()[1] == b"200", head
    if b"chunked" in head.lower():
        out, rest = b"", body
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            out, rest = out + rest[:size], rest[size + 2:]
        body = out
    return json.loads(body)


def check(spec, path: str, value: Any) -> None:
    jsonschema.validate(value, schema_for(spec, path))


@pytest.fixture(scope="module")
def one_container(berthd, image):
    name = "schema-probe"
    docker(berthd, "rm", "-f", name, check=False)
    docker(berthd, "run", "-d", *RUN_NET, "--name", name, "-l", "k=v", "-e", "A=1", "-m", "64m", image,
           "sleep", "300")
    yield name
    docker(berthd, "rm", "-f", name, check=False)


def test_version_and_info(berthd, spec):
    check(spec, "/version", get(berthd, "/version"))
    check(spec, "/info", get(berthd, "/info"))


def test_containers(berthd, spec, one_container):
    listing = get(berthd, "/containers/json?all=1")
    assert listing
    check(spec, "/containers/json", listing)
    check(spec, "/containers/{id}/json", get(berthd, f"/containers/{one_container}/json"))
    check(spec, "/containers/{id}/top", get(berthd, f"/containers/{one_container}/top"))


def test_images(berthd, spec, image):
    check(spec, "/images/json", get(berthd, "/images/json"))
    check(spec, "/images/{name}/json", get(berthd, f"/images/{image}/json"))
    check(spec, "/images/{name}/history", get(berthd, f"/images/{image}/history"))


def test_exec_inspect(berthd, spec, one_container, client):
    if is_dockerd(berthd):
        pytest.skip("exec inspect shape is covered on berthd")
    exec_id = client.api.exec_create(one_container, ["true"])["Id"]
    client.api.exec_start(exec_id)
    check(spec, "/exec/{id}/json", get(berthd, f"/exec/{exec_id}/json"))
