"""`berth manifest inspect|create|annotate|push|rm`: docker's manifest lists, client-side.

Strategy: like docker's CLI, these verbs never ask the daemon: they talk to
registries directly (berth.tools.manifests) and keep lists being built in
docker's own store, $DOCKER_CONFIG/manifests (berth.tools.manifeststore), so
`docker manifest` and `berth manifest` share them. Output, errors and exit
codes are docker 28's: inspect prints the manifest (tabs) or the list
(Go's three-space layout), -v docker's ImageManifest JSON; failures print
docker's message bare and exit 1. Credentials are the stored logins
(`berth login`/`docker login`), looked up per registry.

One deliberate difference: docker's inspect and create reach a plain-HTTP
registry on loopback only with --insecure, its push without; berth reaches
loopback registries over plain HTTP with or without --insecure, as its
daemon does. --insecure also allows any other registry over plain HTTP or
unverified TLS.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from berth.cli import groups
from berth.cli.commands_registry import config_path, read_config
from berth.cli.common import Ctx, StatusError
from berth.cli.parser import Parser
from berth.errors import BerthError, NotFound
from berth.oci import manifestlist as ml
from berth.tools import manifests
from berth.tools.manifeststore import ManifestStore
from berth.wire.registryauth import Credentials, credentials_from_config

T = TypeVar("T")

_DESCRIPTION = ("Manage manifest lists: inspect images and lists in a registry, build a list locally "
                "(create, annotate) and push it")


def _store() -> ManifestStore:
    """docker's store: manifests/ beside config.json ($DOCKER_CONFIG, default ~/.docker)."""
    return ManifestStore(Path(config_path()).parent / "manifests")


def _creds_for(registry: str) -> Credentials | None:
    """The stored login for *registry* (`berth login` / `docker login`), as push uses it."""
    return credentials_from_config(read_config(), registry)


def _ref(text: str) -> ml.Ref:
    try:
        return ml.normalize(text)
    except BerthError as exc:
        raise StatusError(1, str(exc)) from None


def _registry(ref: ml.Ref, insecure: bool,
              work: Callable[[manifests.Manifests], Awaitable[T]]) -> T:
    """Run *work* with a registry client for *ref*'s registry (--insecure: *insecure*)."""
    return asyncio.run(manifests.with_registry(ref, insecure, _creds_for, work))


def _fail(exc: BerthError) -> StatusError:
    return StatusError(1, str(exc))


# ---- inspect ----------------------------------------------------------------------------

def _print_list(ctx: Ctx, ref: ml.Ref, entries: list[ml.Entry], verbose: bool) -> None:
    if verbose:
        ctx.out.write(ml.verbose_list(entries).decode())
        return
    try:
        _, body = ml.list_bytes(ref, entries)
    except BerthError as exc:
        raise StatusError(1, f"failed to assemble ManifestDescriptor: {exc}") from None
    ctx.out.write(body.decode() + "\n")


def _print_one(ctx: Ctx, entry: ml.Entry, verbose: bool) -> None:
    ctx.out.write((entry.verbose() if verbose else entry.plain()).decode())


def cmd_inspect(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("manifest inspect", "[OPTIONS] [MANIFEST_LIST] MANIFEST", "Display an image manifest, or manifest list",
               min_args=1, max_args=2)
    p.add_argument("--insecure", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    ref = _ref(ns.args[-1])
    store = _store()
    try:
        if len(ns.args) == 2:
            _print_one(ctx, store.get(_ref(ns.args[0]), ref), ns.verbose)
            return 0
        try:
            local = store.get_list(ref)
        except NotFound:
            local = None
        if local is not None:
            _print_list(ctx, ref, local, ns.verbose)
            return 0
        got = _registry(ref, ns.insecure, lambda m: m.fetch(ref))
    except BerthError as exc:
        raise _fail(exc) from None
    if got.is_list:
        _print_list(ctx, ref, got.entries, ns.verbose)
    else:
        _print_one(ctx, got.entries[0], ns.verbose)
    return 0


# ---- create / annotate ------------------------------------------------------------------

def _fetch_image(ref: ml.Ref) -> Callable[[manifests.Manifests], Awaitable[ml.Entry]]:
    return lambda m: m.fetch_image(ref)


def cmd_create(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("manifest create", "MANIFEST_LIST MANIFEST [MANIFEST...]",
               "Create a local manifest list for annotating and pushing to a registry", min_args=2)
    p.add_argument("-a", "--amend", action="store_true")
    p.add_argument("--insecure", action="store_true")
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    try:
        target = ml.normalize(ns.args[0])
    except BerthError as exc:
        raise StatusError(1, f"error parsing name for manifest list {ns.args[0]}: {exc}") from None
    store = _store()
    try:
        if store.exists(target) and not ns.amend:
            raise StatusError(1, "refusing to amend an existing manifest list with no --amend flag")
        for text in ns.args[1:]:
            ref = _ref(text)
            try:
                entry = store.get(target, ref)
            except NotFound:
                entry = _registry(ref, ns.insecure, _fetch_image(ref))
            store.save(target, ref, entry)
    except StatusError:
        raise
    except BerthError as exc:
        raise _fail(exc) from None
    ctx.print(f"Created manifest list {target}")
    return 0


def _features(values: list[str]) -> tuple[str, ...]:
    """--os-features as docker's string slice reads it: repeatable, each comma-separated."""
    return tuple(f for v in values for f in v.split(",") if v)


def cmd_annotate(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("manifest annotate", "[OPTIONS] MANIFEST_LIST MANIFEST",
               "Add additional information to a local image manifest", min_args=2, max_args=2)
    p.add_argument("--arch", default="")
    p.add_argument("--os", default="")
    p.add_argument("--os-features", action="append", default=[])
    p.add_argument("--os-version", default="")
    p.add_argument("--variant", default="")
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    list_text, image_text = ns.args
    try:
        target = ml.normalize(list_text)
    except BerthError as exc:
        raise StatusError(1, f"annotate: error parsing name for manifest list {list_text}: {exc}") from None
    try:
        ref = ml.normalize(image_text)
    except BerthError as exc:
        raise StatusError(1, f"annotate: error parsing name for manifest {image_text}: {exc}") from None
    store = _store()
    try:
        try:
            entry = store.get(target, ref)
        except NotFound:
            raise StatusError(1, f"manifest for image {image_text} does not exist in {list_text}") from None
        note = ml.Annotation(os=ns.os, arch=ns.arch, os_features=_features(ns.os_features),
                             os_version=ns.os_version, variant=ns.variant)
        store.save(target, ref, ml.annotate(entry, note))
    except StatusError:
        raise
    except BerthError as exc:
        raise _fail(exc) from None
    return 0


# ---- push / rm --------------------------------------------------------------------------

def cmd_push(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("manifest push", "[OPTIONS] MANIFEST_LIST", "Push a manifest list to a repository",
               min_args=1, max_args=1)
    p.add_argument("--insecure", action="store_true")
    p.add_argument("-p", "--purge", action="store_true")
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    target = _ref(ns.args[0])
    store = _store()

    def say(line: str) -> None:
        ctx.out.write(line)
        ctx.out.flush()

    try:
        entries = store.get_list(target)
        digest = _registry(target, ns.insecure, lambda m: m.push(target, entries, say))
        ctx.print(digest)
        if ns.purge:
            store.remove(target)
    except BerthError as exc:
        raise _fail(exc) from None
    return 0


def cmd_rm(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("manifest rm", "MANIFEST_LIST [MANIFEST_LIST...]",
               "Delete one or more manifest lists from local storage", min_args=1)
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    store = _store()
    errors = []
    for text in ns.args:
        try:
            target = ml.normalize(text)
            if not store.exists(target):
                raise ml.not_found(target)
            store.remove(target)
        except BerthError as exc:
            errors.append(str(exc))
    if errors:
        raise StatusError(1, "\n".join(errors))
    return 0


def cmd_manifest(ctx: Ctx, argv: list[str]) -> int:
    table: groups.Table = {
        "annotate": (cmd_annotate, "Add additional information to a local image manifest"),
        "create": (cmd_create, "Create a local manifest list for annotating and pushing to a registry"),
        "inspect": (cmd_inspect, "Display an image manifest, or manifest list"),
        "push": (cmd_push, "Push a manifest list to a repository"),
        "rm": (cmd_rm, "Delete one or more manifest lists from local storage"),
    }
    return groups.dispatch(ctx, "manifest", _DESCRIPTION, table, argv, use="manifest COMMAND")


COMMANDS = {"manifest": cmd_manifest}
