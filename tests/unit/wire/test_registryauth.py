"""berth.wire.registryauth: challenges, X-Registry-Auth, config.json credentials, token answers."""

from __future__ import annotations

import base64
import json

import pytest

from berth.errors import InvalidArgument
from berth.wire import registryauth as auth
from berth.wire.registryauth import Challenge, Credentials


def _b64url(doc: object, pad: bool = False) -> str:
    text = base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()
    return text if pad else text.rstrip("=")


# --------------------------------------------------------------------------- #
# WWW-Authenticate

CHALLENGES = [
    ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
     'scope="repository:library/busybox:pull"',
     [Challenge("bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                           "scope": "repository:library/busybox:pull"})]),
    ('Basic realm="Registry Realm"', [Challenge("basic", {"realm": "Registry Realm"})]),
    # a comma inside quotes, two challenges, odd spacing and case
    ('Basic realm="a, b" ,  BEARER Realm = "https://t/x" , Service=svc',
     [Challenge("basic", {"realm": "a, b"}), Challenge("bearer", {"realm": "https://t/x", "service": "svc"})]),
    # escapes in a quoted string
    (r'Bearer realm="a\"b\\c"', [Challenge("bearer", {"realm": 'a"b\\c'})]),
    # a scope with several resources
    ('Bearer realm="r",scope="repository:a:pull repository:b:pull,push",error="insufficient_scope"',
     [Challenge("bearer", {"realm": "r", "scope": "repository:a:pull repository:b:pull,push",
                           "error": "insufficient_scope"})]),
    ("Basic", [Challenge("basic", {})]),
    ("Negotiate abc==, Basic realm=x", [Challenge("negotiate", {"token68": "abc=="}),
                                        Challenge("basic", {"realm": "x"})]),
    ("", []),
    ('Bearer realm="unterminated', [Challenge("bearer", {"realm": "unterminated"})]),
]


@pytest.mark.parametrize("header, expected", CHALLENGES)
def test_parse_challenges(header: str, expected: list[Challenge]) -> None:
    assert auth.parse_challenges(header) == expected


def test_challenge_get() -> None:
    (c,) = auth.parse_challenges('Bearer realm="r"')
    assert c.get("realm") == "r" and c.get("service") == "" and c.get("service", "x") == "x"


# --------------------------------------------------------------------------- #
# X-Registry-Auth


@pytest.mark.parametrize("value", ["", "   ", "{}", _b64url({}), _b64url({"serveraddress": "docker.io"})])
def test_x_registry_auth_empty(value: str) -> None:
    assert auth.decode_x_registry_auth(value) is None


def test_x_registry_auth_password_padding_optional() -> None:
    doc = {"username": "u", "password": "p?>~", "serveraddress": "127.0.0.1:5000"}
    want = Credentials(username="u", password="p?>~")
    assert auth.decode_x_registry_auth(_b64url(doc)) == want
    assert auth.decode_x_registry_auth(_b64url(doc, pad=True)) == want
    standard = base64.b64encode(json.dumps(doc).encode()).decode()
    assert auth.decode_x_registry_auth(standard) == want


def test_x_registry_auth_tokens_and_case() -> None:
    got = auth.decode_x_registry_auth(_b64url({"IdentityToken": "id", "RegistryToken": "rt"}))
    assert got == Credentials(identity_token="id", registry_token="rt")


def test_x_registry_auth_auth_field() -> None:
    got = auth.decode_x_registry_auth(_b64url({"auth": base64.b64encode(b"u:p:q").decode()}))
    assert got == Credentials(username="u", password="p:q")


@pytest.mark.parametrize("value", ["!!!not base64", base64.urlsafe_b64encode(b"not json").decode(),
                                   _b64url(["a list"]), _b64url({"username": 5})])
def test_x_registry_auth_malformed(value: str) -> None:
    with pytest.raises(InvalidArgument, match="X-Registry-Auth"):
        auth.decode_x_registry_auth(value)


def test_credentials_repr_hides_secrets() -> None:
    text = repr(Credentials("u", "hunter2", "idtok", "regtok"))
    assert "u" in text and "hunter2" not in text and "idtok" not in text and "regtok" not in text


def test_credentials_flags() -> None:
    assert Credentials().empty and not Credentials().has_password
    assert Credentials("u", "p").has_password
    assert not Credentials(identity_token="x").has_password and not Credentials(identity_token="x").empty


# --------------------------------------------------------------------------- #
# config.json


def _auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


CONFIG = {
    "auths": {
        "https://index.docker.io/v1/": {"auth": _auth("hubuser", "hubpass")},
        "127.0.0.1:5000": {"auth": _auth("local", "pw")},
        "https://ghcr.io": {"username": "gh", "password": "tok"},
        "quay.io": {"identitytoken": "refresh-me"},
        "helper.example": {},
        "broken.example": {"auth": "@@@"},
        "nocolon.example": {"auth": base64.b64encode(b"justuser").decode()},
    },
    "credsStore": "desktop",
}


@pytest.mark.parametrize("registry, expected", [
    ("docker.io", Credentials("hubuser", "hubpass")),
    ("127.0.0.1:5000", Credentials("local", "pw")),
    ("ghcr.io", Credentials("gh", "tok")),
    ("quay.io", Credentials(identity_token="refresh-me")),
    ("helper.example", None),
    ("127.0.0.1:5001", None),
    ("unknown.example", None),
])
def test_credentials_from_config(registry: str, expected: Credentials | None) -> None:
    assert auth.credentials_from_config(CONFIG, registry) == expected


def test_credentials_from_config_exact_key_wins() -> None:
    doc = {"auths": {"https://myreg:5000/v2/": {"auth": _auth("a", "1")}, "myreg:5000": {"auth": _auth("b", "2")}}}
    assert auth.credentials_from_config(doc, "myreg:5000") == Credentials("b", "2")


def test_credentials_from_config_hub_short_key() -> None:
    doc = {"auths": {"docker.io": {"username": "x", "password": "y"}}}
    assert auth.credentials_from_config(doc, "docker.io") == Credentials("x", "y")


@pytest.mark.parametrize("registry", ["broken.example", "nocolon.example"])
def test_credentials_from_config_malformed(registry: str) -> None:
    with pytest.raises(InvalidArgument, match=registry):
        auth.credentials_from_config(CONFIG, registry)


def test_credentials_from_config_no_auths() -> None:
    assert auth.credentials_from_config({}, "docker.io") is None
    assert auth.credentials_from_config({"auths": []}, "docker.io") is None


# --------------------------------------------------------------------------- #
# Scopes, headers, token answers


def test_scope() -> None:
    assert auth.scope("a/b", ["pull", "push"]) == "repository:a/b:pull,push"
    assert auth.scope("library/busybox", ["pull"]) == "repository:library/busybox:pull"


def test_basic_header() -> None:
    assert auth.basic_header(Credentials("aladdin", "open sesame")) == "Basic YWxhZGRpbjpvcGVuIHNlc2FtZQ=="


@pytest.mark.parametrize("body, value, seconds", [
    (b'{"token": "t1", "expires_in": 300}', "t1", 300.0),
    (b'{"access_token": "t2"}', "t2", 60.0),  # no lifetime: the spec's 60 s
    (b'{"token": "t3", "access_token": "other", "expires_in": 5}', "t3", 60.0),  # never below 60 s
    (b'{"token": "", "access_token": "t4", "expires_in": true}', "t4", 60.0),
])
def test_parse_token_response(body: bytes, value: str, seconds: float) -> None:
    token = auth.parse_token_response(body, "https://t/token")
    assert (token.value, token.expires_in) == (value, seconds)
    assert value not in repr(token)


@pytest.mark.parametrize("body", [b"<html>", b"[1]", b'{"expires_in": 10}'])
def test_parse_token_response_bad(body: bytes) -> None:
    with pytest.raises(ValueError, match="https://t/token"):
        auth.parse_token_response(body, "https://t/token")


def test_credentials_key() -> None:
    assert auth.credentials_key(None) == "" == auth.credentials_key(Credentials())
    a, b = auth.credentials_key(Credentials("u", "p")), auth.credentials_key(Credentials("u", "q"))
    assert a and b and a != b
