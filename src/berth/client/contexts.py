"""docker's contexts: named daemon endpoints, kept in the docker CLI's own store, and which one a command uses.

Strategy: pure. The store is docker's layout under $DOCKER_CONFIG (default ~/.docker):
`contexts/meta/<sha256 of the name>/meta.json` holds the name, the metadata (a
description) and the endpoints ({"docker": {"Host": ..., "SkipTLSVerify": ...}}),
`contexts/tls/<sha256>/docker/{ca,cert,key}.pem` the endpoint's TLS files, and
config.json's "currentContext" the one in use. This module names the paths
(`StoreLayout`), parses what was read (`parse_meta`), decides which context a
command line means (`choose`) and what endpoint it gives (`endpoint`); the file
I/O is berth.cli.contextstore's. A name is validated (docker's regexp) before it
ever becomes part of a path, and a path is made from its digest, never from the
name itself, so no name leads outside the store.

Which daemon, in order (docker 28's, checked by experiment; BERTH_HOST is berth's
own DOCKER_HOST and comes before it): -H (refused together with -c), -c/--context,
BERTH_HOST, DOCKER_HOST (both mean the "default" context), DOCKER_CONTEXT,
config.json's currentContext, the default socket.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from berth.client.hosts import resolve_host
from berth.client.tls import TlsConfig
from berth.errors import InvalidArgument, NotFound

DEFAULT = "default"
DEFAULT_DESCRIPTION = "Current DOCKER_HOST based configuration"
NAME_PATTERN = "^[a-zA-Z0-9][a-zA-Z0-9_.+-]+$"
NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.+-]+")
DOCKER_ENDPOINT = "docker"
TLS_FILES = ("ca.pem", "cert.pem", "key.pem")  # the only files a context's TLS directory holds
ENDPOINT_KEYS = ("from", "host", "ca", "cert", "key", "skip-tls-verify")  # --docker's keys
_TLS_KEYS = {"ca": "ca.pem", "cert": "cert.pem", "key": "key.pem"}
IN_MEMORY = "<IN MEMORY>"  # docker's Storage paths of the default context
ERROR_WIDTH = 45  # `context ls` cuts its ERROR column (and the JSON's Error) to this many characters


class ContextNotFound(NotFound):
    """No context of that name in the store."""


def validate_name(name: str) -> None:
    """docker's rule for a context name; InvalidArgument in docker's words."""
    if not NAME_RE.fullmatch(name):
        raise InvalidArgument(f'context name "{name}" is invalid, names are validated against regexp '
                              f'"{NAME_PATTERN}"')


def check_new_name(name: str) -> None:
    """A name a context may be created (or imported, or updated) under."""
    if name == DEFAULT:
        raise InvalidArgument(f'"{DEFAULT}" is a reserved context name')
    validate_name(name)


def store_id(name: str) -> str:
    """The directory name of a context in the store: the SHA-256 of its name, in hex."""
    return hashlib.sha256(name.encode()).hexdigest()


@dataclass(frozen=True)
class StoreLayout:
    """Paths of docker's context store below a config directory ($DOCKER_CONFIG or ~/.docker)."""

    config_dir: str

    @property
    def config_file(self) -> str:
        return os.path.join(self.config_dir, "config.json")

    @property
    def meta_root(self) -> str:
        return os.path.join(self.config_dir, "contexts", "meta")

    @property
    def tls_root(self) -> str:
        return os.path.join(self.config_dir, "contexts", "tls")

    def meta_dir(self, name: str) -> str:
        return os.path.join(self.meta_root, store_id(name))

    def meta_file(self, name: str) -> str:
        return os.path.join(self.meta_dir(name), "meta.json")

    def tls_dir(self, name: str) -> str:
        return os.path.join(self.tls_root, store_id(name))


def config_dir(env: Mapping[str, str], home: str) -> str:
    """Where docker's CLI keeps its files: $DOCKER_CONFIG, else ~/.docker."""
    return env.get("DOCKER_CONFIG") or os.path.join(home, ".docker")


@dataclass(frozen=True)
class Context:
    """One context as the store holds it: meta.json's document and the names of its TLS files."""

    name: str
    doc: Mapping[str, Any]  # meta.json, unknown fields kept
    tls: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # endpoint -> file names
    meta_path: str = IN_MEMORY
    tls_path: str = IN_MEMORY

    @property
    def metadata(self) -> Mapping[str, Any]:
        value = self.doc.get("Metadata")
        return value if isinstance(value, Mapping) else {}

    @property
    def description(self) -> str:
        return str(self.metadata.get("Description") or "")

    @property
    def docker(self) -> Mapping[str, Any] | None:
        endpoints = self.doc.get("Endpoints")
        value = endpoints.get(DOCKER_ENDPOINT) if isinstance(endpoints, Mapping) else None
        return value if isinstance(value, Mapping) else None

    @property
    def host(self) -> str:
        return str((self.docker or {}).get("Host") or "")

    @property
    def skip_tls_verify(self) -> bool:
        return bool((self.docker or {}).get("SkipTLSVerify"))


def meta_doc(name: str, description: str, host: str, skip_tls_verify: bool,
             base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """meta.json for a context (keeping what *base* has besides the description and the docker endpoint)."""
    doc = dict(base or {})
    metadata = dict(doc.get("Metadata") or {}) if isinstance(doc.get("Metadata"), Mapping) else {}
    if description:
        metadata["Description"] = description
    else:
        metadata.pop("Description", None)
    endpoints = dict(doc.get("Endpoints") or {}) if isinstance(doc.get("Endpoints"), Mapping) else {}
    endpoints[DOCKER_ENDPOINT] = {"Host": host, "SkipTLSVerify": skip_tls_verify}
    return {**doc, "Name": name, "Metadata": metadata, "Endpoints": endpoints}


def encode_meta(doc: Mapping[str, Any]) -> bytes:
    """meta.json as docker writes it: compact, Name, Metadata and Endpoints first."""
    ordered = {k: doc[k] for k in ("Name", "Metadata", "Endpoints") if k in doc}
    ordered.update({k: v for k, v in doc.items() if k not in ordered})
    return json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode()


def parse_meta(raw: bytes, path: str) -> dict[str, Any]:
    """meta.json's document; InvalidArgument naming the file when it is not a JSON object."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"parsing {path}: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"parsing {path}: not a JSON object")
    return doc


def default_context(env: Mapping[str, str]) -> Context:
    """The "default" context: the host from BERTH_HOST/DOCKER_HOST, or berthd's socket."""
    host = resolve_host(None, env)
    return Context(DEFAULT, meta_doc(DEFAULT, "", host, False, {"Metadata": {}}))


def choose(flag_host: str | None, flag_context: str | None, env: Mapping[str, str],
           current: str | None) -> str:
    """The name of the context a command uses ("default" when a host is given some other way)."""
    if flag_host and flag_context:
        raise InvalidArgument("conflicting options: cannot specify both --host and --context")
    if flag_context:
        return flag_context
    if flag_host or env.get("BERTH_HOST") or env.get("DOCKER_HOST"):
        return DEFAULT
    return env.get("DOCKER_CONTEXT") or current or DEFAULT


def host_override_var(env: Mapping[str, str]) -> str:
    """The environment variable that overrides the active context (BERTH_HOST, DOCKER_HOST), or ""."""
    for var in ("BERTH_HOST", "DOCKER_HOST"):
        if env.get(var):
            return var
    return ""


def endpoint(ctx: Context) -> tuple[str, TlsConfig | None]:
    """The daemon a context names: its host, and TLS when it has TLS files or skips verification
    (docker's rule); InvalidArgument when it has no docker endpoint."""
    if ctx.docker is None:
        raise InvalidArgument("cannot find docker endpoint in context")
    files = set(ctx.tls.get(DOCKER_ENDPOINT, ()))
    if not files and not ctx.skip_tls_verify:
        return ctx.host, None
    base = os.path.join(ctx.tls_path, DOCKER_ENDPOINT)

    def path(name: str) -> str:
        return os.path.join(base, name) if name in files else ""
    cert, key = path("cert.pem"), path("key.pem")
    if not (cert and key):
        cert = key = ""
    return ctx.host, TlsConfig(verify=not ctx.skip_tls_verify, ca=path("ca.pem"), cert=cert, key=key)


def endpoint_error(ctx: Context) -> str:
    """What `context ls` shows in ERROR for a context ("" when its endpoint is usable)."""
    return "" if ctx.docker is not None else "cannot find docker endpoint in context"


def split_endpoint_item(item: str) -> list[tuple[str, str]]:
    """One `--docker` value as (key, value) pairs: comma-separated k=v, a part without "=" continuing the
    value before it (pflag's stringToString); InvalidArgument when the first part has no "="."""
    pairs: list[tuple[str, str]] = []
    for part in item.split(","):
        key, sep, value = part.partition("=")
        if sep:
            pairs.append((key, value))
        elif pairs:
            pairs[-1] = (pairs[-1][0], f"{pairs[-1][1]},{part}")
        else:
            raise InvalidArgument(f"{part} must be formatted as key=value")
    return pairs


def parse_endpoint_options(items: list[str]) -> dict[str, str]:
    """`--docker k=v,k=v` (repeatable; a later key wins). An unknown key is the caller's to refuse
    (docker refuses it only when building the endpoint)."""
    return {key: value for item in items for key, value in split_endpoint_item(item)}


def check_host(host: str) -> None:
    """docker's check of an endpoint's host: a URL with a scheme (unix://, tcp://, ssh://, ...)."""
    scheme, sep, rest = host.partition("://")
    if not sep or not scheme or not re.fullmatch(r"[a-zA-Z][a-zA-Z0-9+.-]*", scheme):
        raise InvalidArgument(f"unable to apply docker endpoint options: unable to parse docker host `{host}`")
    if scheme == "tcp":
        hostport = rest.split("/", 1)[0]
        after = hostport.partition("]")[2] if hostport.startswith("[") else hostport
        port = after.rpartition(":")[2] if ":" in after else ""
        if port and not port.isdigit():
            raise InvalidArgument(f'invalid docker endpoint options: parse "{host}": invalid port '
                                  f'":{port}" after host')


def unknown_endpoint_keys(options: Mapping[str, str]) -> list[str]:
    return [k for k in options if k not in ENDPOINT_KEYS]


def parse_bool(text: str) -> bool:
    """Go's strconv.ParseBool, in docker's error words for skip-tls-verify."""
    if text in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if text in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise InvalidArgument(f'skip-tls-verify: parsing "{text}": invalid syntax')


def tls_sources(options: Mapping[str, str]) -> dict[str, str]:
    """file name in the store -> the path --docker gave for it (ca=, cert=, key=)."""
    return {_TLS_KEYS[k]: v for k, v in options.items() if k in _TLS_KEYS and v}


def inspect_doc(ctx: Context) -> dict[str, Any]:
    """`context inspect`'s object for a context."""
    doc: dict[str, Any] = {"Name": ctx.name, "Metadata": dict(ctx.metadata)}
    endpoints = ctx.doc.get("Endpoints")
    if isinstance(endpoints, Mapping) and endpoints:
        doc["Endpoints"] = {k: dict(v) if isinstance(v, Mapping) else v for k, v in endpoints.items()}
    doc["TLSMaterial"] = {k: list(v) for k, v in ctx.tls.items() if v}
    doc["Storage"] = {"MetadataPath": ctx.meta_path, "TLSPath": ctx.tls_path}
    return doc


def ls_row(ctx: Context | None, name: str, current: str, error: str = "") -> dict[str, Any]:
    """One `context ls` row (docker's template fields); *ctx* None with the *error* that hid it."""
    error = error or (endpoint_error(ctx) if ctx is not None else "")
    if len(error) > ERROR_WIDTH:
        error = error[:ERROR_WIDTH - 1] + "…"
    description = ctx.description if ctx is not None else ""
    if ctx is not None and ctx.name == DEFAULT:
        description = DEFAULT_DESCRIPTION
    return {"Name": name, "Current": name == current, "Description": description,
            "DockerEndpoint": ctx.host if ctx is not None else "", "Error": error}
