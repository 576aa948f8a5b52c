"""docker's contexts, the pure part: names, store paths, which context a command line means, its endpoint."""

from __future__ import annotations

import os

import pytest

from berth.client import contexts
from berth.client.contexts import Context, StoreLayout
from berth.client.tls import TlsConfig
from berth.errors import InvalidArgument


@pytest.mark.parametrize("name", ["a1", "my-ctx", "A.b_c+d-e", "0x"])
def test_names_docker_accepts(name: str) -> None:
    contexts.validate_name(name)


@pytest.mark.parametrize("name", ["x", "-x", "b/x", "../x", "..", "a b", "", "é1", "a\n"])
def test_names_docker_refuses(name: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        contexts.validate_name(name)
    assert str(err.value) == (f'context name "{name}" is invalid, names are validated against regexp '
                              '"^[a-zA-Z0-9][a-zA-Z0-9_.+-]+$"')


def test_default_is_reserved() -> None:
    with pytest.raises(InvalidArgument, match='"default" is a reserved context name'):
        contexts.check_new_name("default")


def test_store_paths_are_the_digest_of_the_name() -> None:
    store = StoreLayout("/cfg")
    # the digest docker's CLI used for "t1" (seen in its store)
    digest = "628b49d96dcde97a430dd4f597705899e09a968f793491e4b704cae33a40dc02"
    assert store.meta_file("t1") == f"/cfg/contexts/meta/{digest}/meta.json"
    assert store.tls_dir("t1") == f"/cfg/contexts/tls/{digest}"
    assert store.config_file == "/cfg/config.json"
    for hostile in ("../../etc", "/etc/passwd", "a/../../b"):
        assert os.path.dirname(store.meta_dir(hostile)) == "/cfg/contexts/meta"


def test_config_dir() -> None:
    assert contexts.config_dir({"DOCKER_CONFIG": "/x"}, "/root") == "/x"
    assert contexts.config_dir({}, "/root") == "/root/.docker"


@pytest.mark.parametrize("host, flag, env, current, expected", [
    (None, None, {}, None, "default"),
    (None, None, {}, "saved", "saved"),
    (None, None, {"DOCKER_CONTEXT": "env"}, "saved", "env"),
    (None, None, {"DOCKER_HOST": "unix:///s", "DOCKER_CONTEXT": "env"}, "saved", "default"),
    (None, None, {"BERTH_HOST": "unix:///s"}, "saved", "default"),
    (None, "flag", {"DOCKER_HOST": "unix:///s", "DOCKER_CONTEXT": "env"}, "saved", "flag"),
    (None, "flag", {"BERTH_HOST": "unix:///s"}, None, "flag"),
    ("unix:///h", None, {"DOCKER_CONTEXT": "env"}, "saved", "default"),
])
def test_precedence(host: str | None, flag: str | None, env: dict[str, str], current: str | None,
                    expected: str) -> None:
    assert contexts.choose(host, flag, env, current) == expected


def test_host_and_context_flags_conflict() -> None:
    with pytest.raises(InvalidArgument, match="cannot specify both --host and --context"):
        contexts.choose("unix:///h", "c1", {}, None)


def test_override_variable() -> None:
    assert contexts.host_override_var({"DOCKER_HOST": "x", "BERTH_HOST": "y"}) == "BERTH_HOST"
    assert contexts.host_override_var({"DOCKER_HOST": "x"}) == "DOCKER_HOST"
    assert contexts.host_override_var({"DOCKER_HOST": ""}) == ""


def _ctx(host: str = "tcp://h:2376", skip: bool = False, files: tuple[str, ...] = ()) -> Context:
    doc = contexts.meta_doc("c1", "", host, skip)
    return Context("c1", doc, {"docker": files} if files else {}, "/m", "/t")


def test_endpoint_without_tls() -> None:
    assert contexts.endpoint(_ctx("unix:///s")) == ("unix:///s", None)


def test_endpoint_with_tls_files() -> None:
    host, tls = contexts.endpoint(_ctx(files=("ca.pem", "cert.pem", "key.pem")))
    assert host == "tcp://h:2376"
    assert tls == TlsConfig(True, "/t/docker/ca.pem", "/t/docker/cert.pem", "/t/docker/key.pem")


def test_endpoint_skip_verify_and_half_a_key_pair() -> None:
    assert contexts.endpoint(_ctx(skip=True))[1] == TlsConfig(False, "", "", "")
    assert contexts.endpoint(_ctx(files=("cert.pem",)))[1] == TlsConfig(True, "", "", "")


def test_endpoint_missing() -> None:
    ctx = Context("c1", {"Name": "c1", "Metadata": {}, "Endpoints": {}})
    with pytest.raises(InvalidArgument, match="cannot find docker endpoint in context"):
        contexts.endpoint(ctx)
    assert contexts.endpoint_error(ctx) == "cannot find docker endpoint in context"


def test_endpoint_options() -> None:
    assert contexts.parse_endpoint_options(["host=tcp://a:1,ca=/c", "key=/k"]) == {
        "host": "tcp://a:1", "ca": "/c", "key": "/k"}
    # pflag: a part without "=" continues the value before it
    assert contexts.split_endpoint_item("host=tcp://y:1,skip-tls-verify") == [("host", "tcp://y:1,skip-tls-verify")]
    with pytest.raises(InvalidArgument, match="host must be formatted as key=value"):
        contexts.split_endpoint_item("host")
    assert contexts.unknown_endpoint_keys({"host": "", "hst": ""}) == ["hst"]
    assert contexts.tls_sources({"ca": "/c", "cert": "", "host": "x"}) == {"ca.pem": "/c"}


@pytest.mark.parametrize("host", ["unix:///run/x.sock", "tcp://h:2376", "tcp://[::1]:2376", "ssh://u@h",
                                  "foo://bar"])
def test_hosts_docker_accepts(host: str) -> None:
    contexts.check_host(host)


@pytest.mark.parametrize("host, message", [
    ("/tmp/sock", "unable to parse docker host `/tmp/sock`"),
    ("x:1", "unable to parse docker host `x:1`"),
    ("tcp://y:1,skip-tls-verify", 'invalid port ":1,skip-tls-verify" after host'),
])
def test_hosts_docker_refuses(host: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message.replace("[", r"\[")):
        contexts.check_host(host)


def test_parse_bool() -> None:
    assert contexts.parse_bool("true") and contexts.parse_bool("1") and not contexts.parse_bool("False")
    with pytest.raises(InvalidArgument, match='skip-tls-verify: parsing "maybe": invalid syntax'):
        contexts.parse_bool("maybe")


def test_meta_json_as_docker_writes_it() -> None:
    doc = contexts.meta_doc("t1", "", "tcp://1.2.3.4:2376", False)
    assert contexts.encode_meta(doc) == (b'{"Name":"t1","Metadata":{},"Endpoints":{"docker":'
                                         b'{"Host":"tcp://1.2.3.4:2376","SkipTLSVerify":false}}}')
    kept = contexts.meta_doc("t2", "d", "unix:///s", True, {"Extra": 1, "Metadata": {"Other": 2},
                                                            "Endpoints": {"kube": {}}})
    assert kept == {"Extra": 1, "Name": "t2", "Metadata": {"Other": 2, "Description": "d"},
                    "Endpoints": {"kube": {}, "docker": {"Host": "unix:///s", "SkipTLSVerify": True}}}


def test_parse_meta_names_the_file() -> None:
    with pytest.raises(InvalidArgument, match="parsing /p/meta.json"):
        contexts.parse_meta(b'{"Name":', "/p/meta.json")
    with pytest.raises(InvalidArgument, match="not a JSON object"):
        contexts.parse_meta(b"[]", "/p/meta.json")


def test_default_context_and_its_rows() -> None:
    ctx = contexts.default_context({"DOCKER_HOST": "unix:///d.sock"})
    assert ctx.host == "unix:///d.sock"
    assert contexts.inspect_doc(ctx) == {
        "Name": "default", "Metadata": {},
        "Endpoints": {"docker": {"Host": "unix:///d.sock", "SkipTLSVerify": False}},
        "TLSMaterial": {}, "Storage": {"MetadataPath": "<IN MEMORY>", "TLSPath": "<IN MEMORY>"}}
    row = contexts.ls_row(ctx, "default", "default")
    assert row == {"Name": "default", "Current": True, "Description": "Current DOCKER_HOST based configuration",
                   "DockerEndpoint": "unix:///d.sock", "Error": ""}


def test_ls_error_is_cut_like_docker() -> None:
    long = 'context "nope": context not found: open /tmp/ctxexp/contexts/meta/ca37/meta.json: no such file'
    row = contexts.ls_row(None, "nope", "nope", long)
    assert row["Error"] == 'context "nope": context not found: open /tmp…'
    assert len(row["Error"]) == 45


def test_a_context_without_ca_verifies_with_the_system_authorities() -> None:
    import ssl

    made = TlsConfig(True, "", "", "").context()
    assert made.verify_mode == ssl.CERT_REQUIRED and made.check_hostname
