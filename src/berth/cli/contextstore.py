"""The file I/O of docker's context store (the layout and the rules are berth.client.contexts').

Strategy: every read and write of $DOCKER_CONFIG/contexts and of config.json's
"currentContext" happens here, in docker's modes (meta.json 0644, TLS files 0600 in
0700 directories, config.json 0600) and through atomic replaces. The store is
the user's own: a malformed file is a clean error naming it, not an attack; but
every path is made from a context name's digest, so no name reaches outside it,
and no file read here is unbounded.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping
from typing import Any

from berth.client import contexts
from berth.client.contexts import Context, ContextNotFound, StoreLayout
from berth.client.tls import TlsConfig
from berth.errors import AlreadyExists, InvalidArgument

MAX_FILE = 4 << 20  # meta.json, config.json or a TLS file larger than this is refused


def layout(env: Mapping[str, str] | None = None) -> StoreLayout:
    env = os.environ if env is None else env
    return StoreLayout(contexts.config_dir(env, os.path.expanduser("~")))


def read_file(path: str) -> bytes:
    """A file of the store or one the user named; OSError as the OS says it, FileTooLarge past MAX_FILE."""
    with open(path, "rb") as f:
        data = f.read(MAX_FILE + 1)
    if len(data) > MAX_FILE:
        raise InvalidArgument(f"{path}: larger than {MAX_FILE} bytes")
    return data


def atomic_write(path: str, data: bytes, mode: int) -> None:
    """Replace *path* with *data* at once (a temporary file beside it, renamed over it)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _os_error(op: str, path: str, exc: OSError) -> str:
    """Go's wording of a failed open: "open PATH: no such file or directory"."""
    return f"{op} {path}: {(exc.strerror or str(exc)).lower()}"


# --------------------------------------------------------------------------- config.json


def _read_config(store: StoreLayout, warn: bool) -> dict[str, Any] | None:
    try:
        raw = read_file(store.config_file)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        if warn:
            sys.stderr.write(f"WARNING: Error loading config file: {_os_error('open', store.config_file, exc)}\n")
        return None
    try:
        doc = json.loads(raw) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError) as exc:
        doc = exc
    if not isinstance(doc, dict):
        if warn:
            sys.stderr.write(f"WARNING: Error parsing config file ({store.config_file}): {doc}\n")
        return None
    return doc


def current_name(store: StoreLayout, warn: bool = True) -> str | None:
    """config.json's "currentContext" (None when unset, or when the file is unreadable: a warning says so)."""
    doc = _read_config(store, warn) or {}
    value = doc.get("currentContext")
    return value if isinstance(value, str) and value else None


def set_current(store: StoreLayout, name: str) -> None:
    """Record *name* as the current context ("default" removes the key), keeping the rest of config.json."""
    doc = _read_config(store, warn=False)
    doc = {"auths": {}} if not doc else doc
    if name == contexts.DEFAULT:
        doc.pop("currentContext", None)
    else:
        doc["currentContext"] = name
    os.makedirs(store.config_dir, mode=0o700, exist_ok=True)
    atomic_write(store.config_file, json.dumps(doc, indent="\t", ensure_ascii=False).encode(), 0o600)


# --------------------------------------------------------------------------- contexts


def _tls_files(store: StoreLayout, name: str) -> dict[str, tuple[str, ...]]:
    base = store.tls_dir(name)
    out: dict[str, tuple[str, ...]] = {}
    try:
        endpoints = sorted(os.listdir(base))
    except OSError:
        return out
    for endpoint in endpoints:
        try:
            with os.scandir(os.path.join(base, endpoint)) as it:
                files = sorted(e.name for e in it if e.is_file(follow_symlinks=False))
        except OSError:
            continue
        if files:
            out[endpoint] = tuple(files)
    return out


def _context(store: StoreLayout, name: str, doc: Mapping[str, Any]) -> Context:
    return Context(name, doc, _tls_files(store, name), store.meta_dir(name), store.tls_dir(name))


def load(store: StoreLayout, name: str, env: Mapping[str, str] | None = None) -> Context:
    """The context *name* ("default" is made from the environment); ContextNotFound, or InvalidArgument
    for a meta.json that cannot be read, both in docker's words."""
    if name == contexts.DEFAULT:
        return contexts.default_context(os.environ if env is None else env)
    path = store.meta_file(name)
    try:
        raw = read_file(path)
    except FileNotFoundError as exc:
        raise ContextNotFound(f'context "{name}": context not found: {_os_error("open", path, exc)}') from None
    except OSError as exc:
        raise InvalidArgument(f'context "{name}": {_os_error("open", path, exc)}') from None
    try:
        doc = contexts.parse_meta(raw, path)
    except InvalidArgument as exc:
        raise InvalidArgument(f'context "{name}": {exc}') from None
    return _context(store, name, doc)


def exists(store: StoreLayout, name: str) -> bool:
    return name == contexts.DEFAULT or os.path.exists(store.meta_file(name))


def list_all(store: StoreLayout) -> list[Context]:
    """Every context of the store (not "default"), sorted by name; InvalidArgument for a malformed one."""
    found: list[Context] = []
    try:
        entries = sorted(os.listdir(store.meta_root))
    except FileNotFoundError:
        return found
    for entry in entries:
        path = os.path.join(store.meta_root, entry, "meta.json")
        try:
            raw = read_file(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise InvalidArgument(f"failed to read metadata: {_os_error('open', path, exc)}") from None
        try:
            doc = contexts.parse_meta(raw, path)
        except InvalidArgument as exc:
            raise InvalidArgument(f"failed to read metadata: {exc}") from None
        name = doc.get("Name")
        if isinstance(name, str) and name:
            found.append(Context(name, doc, _tls_files(store, name) if contexts.store_id(name) == entry else {},
                                 os.path.join(store.meta_root, entry), os.path.join(store.tls_root, entry)))
    return sorted(found, key=lambda c: c.name)


def write(store: StoreLayout, name: str, doc: Mapping[str, Any], tls: Mapping[str, bytes] | None) -> None:
    """Write a context's meta.json; *tls* (file name -> bytes) replaces its docker TLS files when given."""
    contexts.validate_name(name)
    os.makedirs(store.meta_dir(name), mode=0o755, exist_ok=True)
    atomic_write(store.meta_file(name), contexts.encode_meta(doc), 0o644)
    if tls is None:
        return
    base = os.path.join(store.tls_dir(name), contexts.DOCKER_ENDPOINT)
    shutil.rmtree(base, ignore_errors=True)
    if not tls:
        return
    os.makedirs(base, mode=0o700, exist_ok=True)
    os.chmod(store.tls_dir(name), 0o700)
    for file_name, data in tls.items():
        if file_name not in contexts.TLS_FILES:
            raise InvalidArgument(f"unexpected TLS file {file_name!r}")
        atomic_write(os.path.join(base, file_name), data, 0o600)


def create(store: StoreLayout, name: str, doc: Mapping[str, Any], tls: Mapping[str, bytes]) -> None:
    """A new context; AlreadyExists in docker's words."""
    contexts.check_new_name(name)
    if exists(store, name):
        raise AlreadyExists(f'context "{name}" already exists')
    try:
        write(store, name, doc, tls)
    except BaseException:
        remove(store, name)
        raise


def remove(store: StoreLayout, name: str) -> None:
    contexts.validate_name(name)
    shutil.rmtree(store.meta_dir(name), ignore_errors=True)
    shutil.rmtree(store.tls_dir(name), ignore_errors=True)


def read_tls_sources(options: Mapping[str, str]) -> dict[str, bytes]:
    """The TLS files --docker names (ca=, cert=, key=), read; InvalidArgument naming one that cannot be."""
    out: dict[str, bytes] = {}
    for file_name, path in contexts.tls_sources(options).items():
        try:
            out[file_name] = read_file(path)
        except OSError as exc:
            raise InvalidArgument(f"unable to create docker endpoint config: {_os_error('open', path, exc)}") from None
    return out


def tls_bytes(ctx: Context) -> dict[str, bytes]:
    """A stored context's docker TLS files (for --from, export)."""
    base = os.path.join(ctx.tls_path, contexts.DOCKER_ENDPOINT)
    return {f: read_file(os.path.join(base, f)) for f in ctx.tls.get(contexts.DOCKER_ENDPOINT, ())
            if f in contexts.TLS_FILES}


# --------------------------------------------------------------------------- which daemon


def chosen_name(flag_host: str | None, flag_context: str | None, env: Mapping[str, str] | None = None) -> str:
    """The context a command line uses (berth.client.contexts.choose, with config.json read only when
    nothing before it decides); InvalidArgument for -H with -c."""
    env = os.environ if env is None else env
    current = None
    if not (flag_context or flag_host or contexts.host_override_var(env) or env.get("DOCKER_CONTEXT")):
        current = current_name(layout(env))
    return contexts.choose(flag_host, flag_context, env, current)


def endpoint_for(name: str, env: Mapping[str, str] | None = None) -> tuple[str, TlsConfig | None] | None:
    """The daemon the context *name* names; None for "default" (then -H, BERTH_HOST, DOCKER_HOST and
    the TLS flags decide, as without contexts)."""
    if name == contexts.DEFAULT:
        return None
    env = os.environ if env is None else env
    return contexts.endpoint(load(layout(env), name, env))
