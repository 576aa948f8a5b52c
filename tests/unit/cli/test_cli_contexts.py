"""`berth context ...` and `-c/--context` on a real store in a temporary DOCKER_CONFIG (no daemon needed).

The layouts compared here (meta.json, modes, the export tar's headers) are what docker 28's CLI
wrote in the same situations; tests/e2e/test_cli_contexts.py checks both CLIs side by side.
"""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from berth.cli import commands_context, contextstore, main
from berth.client import contexts
from berth.client.tls import TlsConfig
from berth.errors import InvalidArgument

PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("DOCKER_HOST", "BERTH_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "cfg"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "cfg"


def berth(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main.run(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _pems(tmp_path: Path) -> dict[str, str]:
    paths = {}
    for name in ("ca", "cert", "key"):
        (tmp_path / f"{name}.pem").write_bytes(PEM + name.encode())
        paths[name] = str(tmp_path / f"{name}.pem")
    return paths


def test_create_writes_docker_store(cfg: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = _pems(tmp_path)
    code, out, err = berth(capsys, "context", "create", "t1", "--docker",
                           f"host=tcp://1.2.3.4:2376,ca={p['ca']},cert={p['cert']},key={p['key']}")
    assert (code, out, err) == (0, "t1\n", 'Successfully created context "t1"\n')
    store = contexts.StoreLayout(str(cfg))
    meta = Path(store.meta_file("t1"))
    assert meta.read_bytes() == (b'{"Name":"t1","Metadata":{},"Endpoints":{"docker":'
                                 b'{"Host":"tcp://1.2.3.4:2376","SkipTLSVerify":false}}}')
    assert stat.S_IMODE(meta.stat().st_mode) == 0o644
    tls = Path(store.tls_dir("t1")) / "docker"
    assert sorted(os.listdir(tls)) == ["ca.pem", "cert.pem", "key.pem"]
    assert (tls / "key.pem").read_bytes() == PEM + b"key"
    assert stat.S_IMODE((tls / "key.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE(tls.stat().st_mode) == 0o700


def test_create_errors_as_docker(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert berth(capsys, "context", "create", "a1", "--docker", "host=unix:///x.sock")[0] == 0
    cases = [
        (["a1"], 'context "a1" already exists'),
        (["b/x"], 'context name "b/x" is invalid, names are validated against regexp'),
        (["default"], '"default" is a reserved context name'),
        (["ab", "--docker", "hst=foo"], "unable to create docker endpoint config: unrecognized config key: hst"),
        (["ab", "--docker", "ca=/nonexist"], "unable to create docker endpoint config: open /nonexist: no such file"),
        (["ab", "--docker", "host=tcp://x:1,skip-tls-verify=maybe"],
         'unable to create docker endpoint config: skip-tls-verify: parsing "maybe"'),
        (["ab", "--from", "nope"], 'context "nope": context not found: open '),
        (["ab", "--docker", "host=tcp://x:1", "--from", "a1"], "cannot use --docker flag when --from is set"),
        (["ab", "--docker", "host=/tmp/sock"], "unable to create docker endpoint config: unable to apply docker "
                                               "endpoint options: unable to parse docker host `/tmp/sock`"),
    ]
    for args, message in cases:
        code, out, err = berth(capsys, "context", "create", *args)
        assert code == 1 and out == "" and err.startswith(message), (args, err)
    code, _, err = berth(capsys, "context", "create", "ab", "--docker", "host")
    assert code == 125 and err.startswith('invalid argument "host" for "--docker" flag: host must be formatted')
    assert not Path(contexts.StoreLayout(str(cfg)).meta_dir("ab")).exists()


def test_from_and_copy_of_current(cfg: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = _pems(tmp_path)
    berth(capsys, "context", "create", "src", "--description", "d1", "--docker", f"host=tcp://h:1,ca={p['ca']}")
    assert berth(capsys, "context", "create", "copy", "--from", "src")[0] == 0
    copy = contextstore.load(contextstore.layout(), "copy")
    assert (copy.host, copy.description, dict(copy.tls)) == ("tcp://h:1", "d1", {"docker": ("ca.pem",)})
    assert berth(capsys, "context", "create", "fromdefault")[0] == 0
    made = contextstore.load(contextstore.layout(), "fromdefault")
    assert (made.host, made.description) == ("unix:///run/berth/berth.sock", contexts.DEFAULT_DESCRIPTION)
    assert berth(capsys, "context", "create", "ep", "--docker", "from=src")[0] == 0
    ep = contextstore.load(contextstore.layout(), "ep")
    assert (ep.host, dict(ep.tls)) == ("tcp://h:1", {})  # docker: the endpoint only, not its TLS files


def test_ls_use_show_rm(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    berth(capsys, "context", "create", "a1", "--description", "desc one", "--docker", "host=unix:///x.sock")
    code, out, _ = berth(capsys, "context", "ls")
    assert out.splitlines() == [
        "NAME        DESCRIPTION                               DOCKER ENDPOINT                ERROR",
        "a1          desc one                                  unix:///x.sock                 ",
        "default *   Current DOCKER_HOST based configuration   unix:///run/berth/berth.sock   ",
    ]
    assert berth(capsys, "context", "use", "a1") == (0, "a1\n", 'Current context is now "a1"\n')
    assert json.loads((cfg / "config.json").read_text()) == {"auths": {}, "currentContext": "a1"}
    assert berth(capsys, "context", "show")[1] == "a1\n"
    code, out, _ = berth(capsys, "context", "ls", "--format", "json")
    assert json.loads(out.splitlines()[0]) == {"Current": True, "Description": "desc one",
                                               "DockerEndpoint": "unix:///x.sock", "Error": "", "Name": "a1"}
    assert berth(capsys, "context", "ls", "-q")[1] == "a1\ndefault\n"
    assert berth(capsys, "context", "rm", "a1") == (1, "", 'context "a1" is in use, set -f flag to force remove\n')
    assert berth(capsys, "context", "rm", "-f", "nope", "a1") == (1, "a1\n", 'context "nope" does not exist\n')
    assert json.loads((cfg / "config.json").read_text()) == {"auths": {}}
    assert berth(capsys, "context", "show")[1] == "default\n"
    assert berth(capsys, "context", "rm", "default")[2] == 'context "default" cannot be removed\n'


def test_use_keeps_the_rest_of_config_json(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg.mkdir()
    (cfg / "config.json").write_text('{"auths": {"r.example": {"auth": "eA=="}}, "psFormat": "x"}')
    berth(capsys, "context", "create", "a1", "--docker", "host=unix:///x.sock")
    assert berth(capsys, "context", "use", "a1")[0] == 0
    doc = json.loads((cfg / "config.json").read_text())
    assert doc == {"auths": {"r.example": {"auth": "eA=="}}, "psFormat": "x", "currentContext": "a1"}
    assert stat.S_IMODE((cfg / "config.json").stat().st_mode) == 0o600
    assert berth(capsys, "context", "use", "nope")[2].startswith('context "nope": context not found')


def test_override_warnings(cfg: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    berth(capsys, "context", "create", "a1", "--docker", "host=unix:///x.sock")
    monkeypatch.setenv("DOCKER_HOST", "unix:///other.sock")
    code, out, err = berth(capsys, "context", "use", "a1")
    assert err.splitlines()[1] == ('Warning: DOCKER_HOST environment variable overrides the active context. To use '
                                   '"a1", either set the global --context flag, or unset DOCKER_HOST environment '
                                   "variable.")
    code, out, err = berth(capsys, "context", "ls", "-q")
    assert "To use a context, either set the global --context flag" in err
    assert berth(capsys, "context", "show")[1] == "default\n"
    assert berth(capsys, "-c", "a1", "context", "show")[1] == "a1\n"


def test_inspect(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    berth(capsys, "context", "create", "a1", "--description", "d", "--docker", "host=unix:///x.sock")
    code, out, err = berth(capsys, "context", "inspect", "nope", "a1")
    assert code == 1 and err.startswith('context "nope": context not found')
    doc = json.loads(out)
    store = contexts.StoreLayout(str(cfg))
    assert doc == [{"Name": "a1", "Metadata": {"Description": "d"},
                    "Endpoints": {"docker": {"Host": "unix:///x.sock", "SkipTLSVerify": False}},
                    "TLSMaterial": {}, "Storage": {"MetadataPath": store.meta_dir("a1"),
                                                   "TLSPath": store.tls_dir("a1")}}]
    assert out.startswith('[\n    {\n        "Name": "a1",')
    code, out, _ = berth(capsys, "context", "inspect", "--format", "json")
    assert '"MetadataPath":"\\u003cIN MEMORY\\u003e"' in out
    assert berth(capsys, "context", "inspect", "-f", "{{.Name}} {{.Endpoints.docker.Host}}", "a1")[1] == \
        "a1 unix:///x.sock\n"


def test_malformed_meta_is_a_clean_error(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    berth(capsys, "context", "create", "br", "--docker", "host=unix:///x.sock")
    path = contexts.StoreLayout(str(cfg)).meta_file("br")
    Path(path).write_text('{"Name":"br",')
    code, _, err = berth(capsys, "context", "ls")
    assert code == 1 and err.startswith(f"failed to read metadata: parsing {path}: ")
    code, _, err = berth(capsys, "-c", "br", "ps")
    assert code == 1 and err.startswith(f'Failed to initialize: unable to resolve docker endpoint: context "br": '
                                        f"parsing {path}")


def test_global_flag_resolution(cfg: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    p = _pems(tmp_path)
    berth(capsys, "context", "create", "t1", "--docker",
          f"host=tcp://h:2376,ca={p['ca']},cert={p['cert']},key={p['key']}")
    store = contexts.StoreLayout(str(cfg))
    tls_dir = os.path.join(store.tls_dir("t1"), "docker")
    expected = ("tcp://h:2376", TlsConfig(True, f"{tls_dir}/ca.pem", f"{tls_dir}/cert.pem", f"{tls_dir}/key.pem"))
    assert contextstore.endpoint_for(contextstore.chosen_name(None, "t1")) == expected
    monkeypatch.setenv("DOCKER_CONTEXT", "t1")
    assert contextstore.chosen_name(None, None) == "t1"
    monkeypatch.setenv("DOCKER_HOST", "unix:///d.sock")
    assert contextstore.chosen_name(None, None) == "default"
    assert contextstore.endpoint_for("default") is None
    opts, rest = main.parse_globals(["-c", "t1", "ps"])
    assert (opts.context, rest) == ("t1", ["ps"])
    assert main.parse_globals(["--context=t2", "ps"])[0].context == "t2"
    assert main.parse_globals(["-ct3", "ps"])[0].context == "t3"
    assert berth(capsys, "-H", "unix:///x", "-c", "t1", "ps") == (
        1, "", "conflicting options: cannot specify both --host and --context\n")
    code, _, err = berth(capsys, "-c", "nope", "ps")
    assert code == 1 and err.startswith('Failed to initialize: unable to resolve docker endpoint: context "nope": '
                                        "context not found: open ")


def test_update(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    berth(capsys, "context", "create", "a1", "--description", "old", "--docker", "host=unix:///x.sock")
    assert berth(capsys, "context", "update", "a1", "--description", "new") == (
        0, "a1\n", 'Successfully updated context "a1"\n')
    assert berth(capsys, "context", "update", "a1", "--docker", "host=tcp://z:5")[0] == 0
    ctx = contextstore.load(contextstore.layout(), "a1")
    assert (ctx.description, ctx.host) == ("new", "tcp://z:5")
    assert berth(capsys, "context", "update", "default", "--description", "x")[2] == \
        '"default" is a reserved context name\n'


def test_export_is_docker_tar(cfg: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = _pems(tmp_path)
    berth(capsys, "context", "create", "t1", "--docker", f"host=tcp://h:1,ca={p['ca']},key={p['key']}")
    assert berth(capsys, "context", "export", "t1") == (0, "", 'Written file "t1.dockercontext"\n')
    assert berth(capsys, "context", "export", "t1")[2] == "open t1.dockercontext: file exists\n"
    data = (tmp_path / "t1.dockercontext").read_bytes()
    assert data[257:265] == b"ustar\x0000" and data[329:345] == b"0000000\x000000000\x00"
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = [(m.name, m.type, m.mode, m.uid, m.mtime) for m in tar]
    assert members == [("meta.json", tarfile.REGTYPE, 0o644, 0, 0), ("tls", tarfile.DIRTYPE, 0o700, 0, 0),
                       ("tls/docker", tarfile.DIRTYPE, 0o700, 0, 0),
                       ("tls/docker/ca.pem", tarfile.REGTYPE, 0o600, 0, 0),
                       ("tls/docker/key.pem", tarfile.REGTYPE, 0o600, 0, 0)]
    assert berth(capsys, "context", "import", "t2", "t1.dockercontext") == (
        0, "t2\n", 'Successfully imported context "t2"\n')
    t2 = contextstore.load(contextstore.layout(), "t2")
    assert t2.doc["Name"] == "t2" and t2.host == "tcp://h:1" and dict(t2.tls) == {"docker": ("ca.pem", "key.pem")}


def test_import_docker_truncated_tar_and_zip(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ctx = contexts.Context("x", contexts.meta_doc("x", "", "tcp://h:1", False))
    full = commands_context.export_tar(ctx, {"ca.pem": b"A" * 700})
    # docker's own archives end right after the last file's bytes (no padding, no end blocks)
    truncated = full[:512 * 5 + 700]
    doc, tls = commands_context.read_archive(truncated)
    assert doc["Endpoints"]["docker"]["Host"] == "tcp://h:1" and tls == {"ca.pem": b"A" * 700}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("meta.json", contexts.encode_meta(ctx.doc))
        zf.writestr("tls/docker/cert.pem", b"C")
    assert commands_context.read_archive(buf.getvalue())[1] == {"cert.pem": b"C"}
    with pytest.raises(InvalidArgument, match="not a context archive"):
        commands_context.read_archive(b"garbage\n")


def test_import_never_writes_outside_the_store(cfg: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Hostile archive: traversal names, links and a foreign endpoint are dropped; only meta.json and the
    docker endpoint's ca/cert/key are kept, written under the new context's digest."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def add(name: str, data: bytes, kind: bytes = tarfile.REGTYPE, link: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.size = kind, link, len(data) if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
        add("meta.json", b'{"Name":"../../evil","Metadata":{},"Endpoints":{"docker":{"Host":"tcp://h:1"}}}')
        add("../escape.pem", b"x")
        add("tls/docker/../../../escape2", b"x")
        add("tls/docker/key.pem", b"", tarfile.SYMTYPE, "/etc/shadow")
        add("tls/other/ca.pem", b"x")
        add("tls/docker/ca.pem", b"CA")
    (tmp_path / "h.tar").write_bytes(buf.getvalue())
    assert berth(capsys, "context", "import", "ok1", str(tmp_path / "h.tar"))[0] == 0
    ctx = contextstore.load(contextstore.layout(), "ok1")
    assert ctx.doc["Name"] == "ok1" and dict(ctx.tls) == {"docker": ("ca.pem",)}
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == ["cfg/" + str(Path(ctx.meta_path, "meta.json").relative_to(cfg)),
                       "cfg/" + str(Path(ctx.tls_path, "docker", "ca.pem").relative_to(cfg)), "h.tar"]
