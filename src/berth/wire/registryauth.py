"""Registry credentials and the pure half of the registry auth flow.

Strategy: everything here is text in, values out; no network. It covers

- where credentials come from: Docker's X-Registry-Auth header (base64url
  JSON, as the docker CLI and SDKs send it) and a docker config.json "auths"
  section;
- what a registry asks for: the WWW-Authenticate header, parsed into
  challenges (RFC 7235: several challenges in one header, quoted values with
  commas and escapes inside, token68 values);
- what a token server answers: {"token"|"access_token", "expires_in"}.

The client (berth.registry.client) does the requests. Secrets never appear
in a repr: Credentials hides them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from berth.errors import InvalidArgument
from berth.wire.jsondepth import check_depth

# Token lifetime assumed when a token server gives none or a shorter one
# (the distribution spec's token docs: at least 60 seconds).
MIN_TOKEN_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Credentials:
    """What berth can present to a registry; empty strings mean "not given".

    identity_token is an OAuth2 refresh token (from `docker login` against a
    registry that issues them); registry_token is a bearer token to send as is.
    """

    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)
    registry_token: str = field(default="", repr=False)

    @property
    def has_password(self) -> bool:
        return bool(self.username and self.password)

    @property
    def empty(self) -> bool:
        return not (self.username or self.password or self.identity_token or self.registry_token)


@dataclass(frozen=True, slots=True)
class Challenge:
    """One challenge of a WWW-Authenticate header: scheme (lower case) and its parameters.

    Parameter names are lower case; a token68 value (rare) is kept under "token68".
    """

    scheme: str
    params: dict[str, str] = field(default_factory=dict)

    def get(self, key: str, default: str = "") -> str:
        return self.params.get(key, default)


@dataclass(frozen=True, slots=True)
class Token:
    """A bearer token from a token server and how many seconds it may be used."""

    value: str = field(repr=False)
    expires_in: float


# --------------------------------------------------------------------------- #
# WWW-Authenticate

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_WS = " \t"


def _skip(text: str, i: int, chars: str) -> int:
    while i < len(text) and text[i] in chars:
        i += 1
    return i


def _quoted(text: str, i: int) -> tuple[str, int]:
    """Read the quoted-string starting at text[i] == '"'; return (value, index after it)."""
    out: list[str] = []
    i += 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
            continue
        if ch == '"':
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    return "".join(out), i  # unterminated: take the rest


def parse_challenges(www_authenticate: str) -> list[Challenge]:
    """Parse a WWW-Authenticate value (or several joined by ", ") into challenges.

    A word followed by "=" is a parameter of the current challenge; any other
    word starts a new challenge. Malformed pieces are skipped, not fatal: a
    registry's odd header should not hide the challenges that are usable.
    """
    out: list[Challenge] = []
    scheme: str | None = None
    params: dict[str, str] = {}
    text = www_authenticate
    i = 0

    def close() -> None:
        if scheme is not None:
            out.append(Challenge(scheme, dict(params)))

    while i < len(text):
        i = _skip(text, i, _WS + ",")
        if i >= len(text):
            break
        m = _TOKEN.match(text, i)
        if m is None:
            i += 1  # a stray character; skip it
            continue
        word = m.group()
        j = _skip(text, m.end(), _WS)
        is_param = scheme is not None and j < len(text) and text[j] == "="
        if is_param:
            j = _skip(text, j + 1, _WS)
            if j < len(text) and text[j] == '"':
                value, j = _quoted(text, j)
            else:
                mv = _TOKEN.match(text, j)
                value = mv.group() if mv else ""
                j = mv.end() if mv else j
            params[word.lower()] = value
            i = j
            continue
        close()
        scheme, params = word.lower(), {}
        i = m.end()
        # A token68 straight after the scheme ("Negotiate abc==", "Basic abc"):
        # one word, then the end of the header or a comma.
        k = _skip(text, i, _WS)
        m68 = _TOKEN68.match(text, k) if k > i else None
        if m68 is not None:
            after = _skip(text, m68.end(), _WS)
            if after >= len(text) or text[after] == ",":
                params["token68"] = m68.group()
                i = after
    close()
    return out


# --------------------------------------------------------------------------- #
# Credentials from the Engine API and from config.json


def _b64decode(value: str) -> bytes:
    """Decode base64 in either alphabet (URL-safe or standard), padding optional."""
    value = value.strip()
    value += "=" * (-len(value) % 4)
    return base64.urlsafe_b64decode(value.encode("ascii"))


def _from_fields(doc: dict[str, Any], what: str) -> Credentials | None:
    fields = {str(k).lower(): v for k, v in doc.items()}

    def text(key: str) -> str:
        value = fields.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise InvalidArgument(f"{what}: {key!r} must be a string, not {type(value).__name__}")
        return value

    username, password = text("username"), text("password")
    auth = text("auth")
    if auth and not username:
        try:
            user_pass = _b64decode(auth).decode("utf-8")
        except (binascii.Error, ValueError) as exc:
            raise InvalidArgument(f"{what}: \"auth\" is not base64 of user:password ({exc}); "
                                  "log in again with `docker login`") from exc
        username, sep, password = user_pass.partition(":")
        if not sep:
            raise InvalidArgument(f"{what}: \"auth\" decodes to no user:password pair; "
                                  "log in again with `docker login`")
    creds = Credentials(username=username, password=password,
                        identity_token=text("identitytoken"), registry_token=text("registrytoken"))
    return None if creds.empty else creds


def decode_x_registry_auth(value: str) -> Credentials | None:
    """Credentials from an X-Registry-Auth header; None when it is absent, "" or "{}".

    The header is base64url of JSON {username, password, auth, serveraddress,
    identitytoken, registrytoken}; padding is optional and the standard
    alphabet is accepted too. Field names match case-insensitively, as Docker's do.

    Raises:
        InvalidArgument: the header is not base64 of a JSON object.
    """
    value = (value or "").strip()
    if not value or value == "{}":
        return None
    try:
        raw = _b64decode(value)
        check_depth(raw)  # TooDeep is a ValueError: json.loads would recurse past the stack
        doc = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise InvalidArgument(f"invalid X-Registry-Auth header: not base64url-encoded JSON ({exc}); "
                              "send base64url of {\"username\": ..., \"password\": ...}") from exc
    if not isinstance(doc, dict):
        raise InvalidArgument("invalid X-Registry-Auth header: the JSON must be an object "
                              "like {\"username\": ..., \"password\": ...}")
    return _from_fields(doc, "X-Registry-Auth header")


def _config_key_host(key: str) -> str:
    """"https://index.docker.io/v1/" -> "index.docker.io"; "host:5000" stays."""
    key = key.strip()
    for scheme in ("https://", "http://"):
        if key.lower().startswith(scheme):
            key = key[len(scheme):]
            break
    return key.split("/", 1)[0].lower()


def credentials_from_config(doc: dict[str, Any], registry: str) -> Credentials | None:
    """Credentials for *registry* from a docker config.json document (its "auths" section).

    Keys may be "host", "https://host[/...]" or, for Docker Hub,
    "https://index.docker.io/v1/". An exact key wins over a normalised match.
    Entries with nothing usable (credential-helper users have "{}") give None.

    Raises:
        InvalidArgument: the matching entry is malformed.
    """
    auths = doc.get("auths")
    if not isinstance(auths, dict):
        return None
    want = registry.lower()
    hub = want in ("docker.io", "index.docker.io", "registry-1.docker.io")
    candidates: list[str] = []
    for key in auths:
        if not isinstance(key, str):
            continue
        host = _config_key_host(key)
        if key == registry:
            candidates.insert(0, key)
        elif host == want or (hub and host in ("docker.io", "index.docker.io", "registry-1.docker.io")):
            candidates.append(key)
    for key in candidates:
        entry = auths[key]
        if not isinstance(entry, dict):
            raise InvalidArgument(f"docker config: auths[{key!r}] must be an object")
        creds = _from_fields(entry, f"docker config auths[{key!r}]")
        if creds is not None:
            return creds
    return None


# --------------------------------------------------------------------------- #
# Token requests and answers


def scope(repo: str, actions: Iterable[str]) -> str:
    """The token scope for *actions* on *repo*: "repository:a/b:pull,push"."""
    return f"repository:{repo}:{','.join(actions)}"


def basic_header(creds: Credentials) -> str:
    """The Authorization value for HTTP basic auth with *creds*' username and password."""
    raw = f"{creds.username}:{creds.password}".encode("utf-8")
    return "Basic " + base64.b64encode(raw).decode("ascii")


def parse_token_response(body: bytes, realm: str) -> Token:
    """The token in a token server's JSON answer ("token", else "access_token").

    Raises:
        ValueError: the body is not such JSON (the message names *realm*).
    """
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise ValueError(f"token server {realm} answered with something that is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ValueError(f"token server {realm} answered with JSON that is not an object")
    value = doc.get("token") or doc.get("access_token")
    if not isinstance(value, str) or not value:
        raise ValueError(f"token server {realm} answered without a \"token\" or \"access_token\"")
    expires = doc.get("expires_in")
    seconds = float(expires) if isinstance(expires, (int, float)) and not isinstance(expires, bool) else 0.0
    return Token(value, max(seconds, MIN_TOKEN_SECONDS))


def credentials_key(creds: Credentials | None) -> str:
    """A stable key telling credentials apart in caches without keeping the secret readable."""
    if creds is None or creds.empty:
        return ""
    raw = "\0".join((creds.username, creds.password, creds.identity_token, creds.registry_token))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:16]


__all__ = [
    "Challenge", "Credentials", "Token", "basic_header", "credentials_from_config", "credentials_key",
    "decode_x_registry_auth", "parse_challenges", "parse_token_response", "scope",
]
