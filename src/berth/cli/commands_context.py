"""`berth context create|export|import|inspect|ls|rm|show|update|use`: docker's contexts, in docker's store.

Strategy: the verbs read and write the docker CLI's own store (berth.cli.contextstore
does the I/O, berth.client.contexts holds the rules), so a context made by either
CLI serves both. They print what docker 28 prints: the name on stdout and
"Successfully ..." on stderr, errors as docker words them with exit 1. `export`
writes docker's tar (meta.json, then tls/<endpoint>/<file>, uid 0, time 0);
`import` takes a tar (docker's own lack the end-of-archive blocks) or a zip and
keeps only meta.json and the docker endpoint's TLS files, whatever else is in it.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tarfile
import zipfile
from collections.abc import Callable
from typing import Any

from berth.cli import contextstore, groups
from berth.cli.common import Ctx, StatusError
from berth.cli.gotemplate import Template, prepare_format, render_rows
from berth.cli.parser import Parser, UsageError, typed
from berth.cli.tables import go_json, json_rows
from berth.client import contexts
from berth.client.contexts import Context, StoreLayout
from berth.errors import BerthError, InvalidArgument

LS_HEADERS = {"Name": "NAME", "Description": "DESCRIPTION", "DockerEndpoint": "DOCKER ENDPOINT", "Error": "ERROR"}
LS_DEFAULT = "table {{.Name}}\t{{.Description}}\t{{.DockerEndpoint}}\t{{.Error}}"
MAX_ARCHIVE = 16 << 20  # an import larger than this is refused
_DOCKER_HELP = """
Docker endpoint config:

NAME                DESCRIPTION
from                Copy named context's Docker endpoint configuration
host                Docker endpoint on which to connect
ca                  Trust certs signed only by this CA
cert                Path to TLS certificate file
key                 Path to TLS key file
skip-tls-verify     Skip TLS certificate validation
"""


def _docker_item(text: str) -> str:
    contexts.split_endpoint_item(text)
    return text


def _docker_flag(p: Parser) -> None:
    p.add_argument("--docker", action="append", default=[], type=typed("--docker", _docker_item))


def _fail(fn: Callable[[Ctx, list[str]], int]) -> Callable[[Ctx, list[str]], int]:
    """A context verb whose errors are printed as docker prints them: the message alone, exit 1."""
    def run(ctx: Ctx, argv: list[str]) -> int:
        try:
            return fn(ctx, argv)
        except (UsageError, StatusError):
            raise
        except BerthError as exc:
            raise StatusError(1, str(exc)) from None
        except OSError as exc:
            raise StatusError(1, str(exc)) from None
    return run


def _store() -> StoreLayout:
    return contextstore.layout()


def current(ctx: Ctx) -> str:
    """The context this command line uses (what `context show` prints; main decides it)."""
    return ctx.context


def cmd_context(ctx: Ctx, argv: list[str]) -> int:
    table: groups.Table = {
        "create": (cmd_create, "Create a context"),
        "export": (cmd_export, "Export a context to a tar archive FILE or a tar stream on STDOUT."),
        "import": (cmd_import, "Import a context from a tar or zip file"),
        "inspect": (cmd_inspect, "Display detailed information on one or more contexts"),
        "ls": (cmd_ls, "List contexts"), "list": (cmd_ls, "List contexts"),
        "rm": (cmd_rm, "Remove one or more contexts"), "remove": (cmd_rm, "Remove one or more contexts"),
        "show": (cmd_show, "Print the name of the current context"),
        "update": (cmd_update, "Update a context"),
        "use": (cmd_use, "Set the current docker context"),
    }
    return groups.dispatch(ctx, "context", "Manage contexts", table, argv, set(table) - {"list", "remove"})


# --------------------------------------------------------------------------- create / update


def _endpoint_from_options(store: StoreLayout, options: dict[str, str]) -> tuple[str, bool, dict[str, bytes]]:
    """(host, skip-tls-verify, TLS files) from `--docker` options, checked as docker checks them."""
    unknown = contexts.unknown_endpoint_keys(options)
    if unknown:
        raise InvalidArgument(f"unable to create docker endpoint config: unrecognized config key: {unknown[0]}")
    if options.get("from"):
        source = contextstore.load(store, options["from"])
        return source.host, source.skip_tls_verify, {}
    try:
        skip = contexts.parse_bool(options["skip-tls-verify"]) if "skip-tls-verify" in options else False
        tls = contextstore.read_tls_sources(options)
        host = options.get("host", "")
        if host:
            contexts.check_host(host)
    except InvalidArgument as exc:
        text = str(exc)
        raise InvalidArgument(text if text.startswith("unable to create") else
                              f"unable to create docker endpoint config: {text}") from None
    return host, skip, tls


def _create_help(verb: str) -> str:
    return (f"\n{_DOCKER_HELP}\nExample:\n\n$ berth context {verb} my-context --description \"some description\" "
            "--docker \"host=tcp://myserver:2376,ca=~/ca-file,cert=~/cert-file,key=~/key-file\"")


@_fail
def cmd_create(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("context create", "[OPTIONS] CONTEXT", "Create a context" + _create_help("create"),
               min_args=1, max_args=1)
    p.add_argument("--description", default="")
    _docker_flag(p)
    p.add_argument("--from", dest="source", default="")
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    name = ns.args[0]
    store = _store()
    contexts.check_new_name(name)
    if contextstore.exists(store, name):
        raise InvalidArgument(f'context "{name}" already exists')
    if ns.docker and ns.source:
        raise InvalidArgument("cannot use --docker flag when --from is set")
    if ns.docker:
        host, skip, tls = _endpoint_from_options(store, contexts.parse_endpoint_options(ns.docker))
        doc = contexts.meta_doc(name, ns.description, host, skip)
    else:  # a copy of --from's context, or of the current one
        source = contextstore.load(store, ns.source or current(ctx))
        description = ns.description or (contexts.DEFAULT_DESCRIPTION if source.name == contexts.DEFAULT
                                         else source.description)
        doc = contexts.meta_doc(name, description, source.host, source.skip_tls_verify, source.doc)
        tls = contextstore.tls_bytes(source) if source.name != contexts.DEFAULT else {}
    contextstore.create(store, name, doc, tls)
    ctx.print(name)
    ctx.error(f'Successfully created context "{name}"')
    return 0


@_fail
def cmd_update(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("context update", "[OPTIONS] CONTEXT", "Update a context" + _create_help("update"),
               min_args=1, max_args=1)
    p.add_argument("--description", default="")
    _docker_flag(p)
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    name = ns.args[0]
    store = _store()
    contexts.check_new_name(name)
    old = contextstore.load(store, name)
    description = ns.description or old.description
    host, skip, tls = old.host, old.skip_tls_verify, None
    if ns.docker:
        host, skip, new_tls = _endpoint_from_options(store, contexts.parse_endpoint_options(ns.docker))
        tls = new_tls or None
    contextstore.write(store, name, contexts.meta_doc(name, description, host, skip, old.doc), tls)
    ctx.print(name)
    ctx.error(f'Successfully updated context "{name}"')
    return 0


# --------------------------------------------------------------------------- ls / inspect / show / use / rm


def _override_warning(ctx: Ctx, target: str = "") -> None:
    var = contexts.host_override_var(os.environ)
    if var:
        what = f'"{target}"' if target else "a context"
        ctx.error(f"Warning: {var} environment variable overrides the active context. To use {what}, either "
                  f"set the global --context flag, or unset {var} environment variable.")


@_fail
def cmd_ls(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("context ls", "[OPTIONS]", "List contexts", max_args=0)
    p.add_argument("--format", default=None)
    p.add_argument("-q", "--quiet", action="store_true")
    ns = p.parse(argv)
    store = _store()
    now = current(ctx)
    found = [contexts.default_context(os.environ), *contextstore.list_all(store)]
    rows = [contexts.ls_row(c, c.name, now) for c in found]
    if now not in {c.name for c in found}:
        try:
            rows.append(contexts.ls_row(contextstore.load(store, now), now, now))
        except BerthError as exc:
            rows.append(contexts.ls_row(None, now, now, str(exc)))
    rows.sort(key=lambda r: r["Name"])
    if ns.quiet:
        for row in rows:
            ctx.print(row["Name"])
    elif ns.format is not None and ns.format.strip() == "json":
        ctx.out.write(json_rows(rows))
    elif ns.format in (None, "", "table"):
        marked = [{**r, "Name": r["Name"] + (" *" if r["Current"] else "")} for r in rows]
        ctx.out.write(render_rows(LS_DEFAULT, marked, LS_HEADERS))
    elif ns.format.startswith("table"):
        ctx.out.write(render_rows(ns.format, rows, LS_HEADERS))
    else:  # docker aligns only tables: a plain template's tabs stay tabs
        tmpl = Template(prepare_format(ns.format)[1])
        ctx.out.write("".join(tmpl.execute(row) + "\n" for row in rows))
    _override_warning(ctx)
    return 0


def inspect_json(docs: list[dict[str, Any]]) -> str:
    """docker's indented JSON (four spaces, Go's HTML escapes)."""
    text = json.dumps(docs, indent=4, ensure_ascii=False)
    for ch, esc in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
        text = text.replace(ch, esc)
    return text


@_fail
def cmd_inspect(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("context inspect", "[OPTIONS] [CONTEXT] [CONTEXT...]",
               "Display detailed information on one or more contexts")
    p.add_argument("-f", "--format", default=None)
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    store = _store()
    names = ns.args or [current(ctx)]
    found: list[dict[str, Any]] = []
    errors: list[str] = []
    for name in names:
        try:
            found.append(contexts.inspect_doc(contextstore.load(store, name)))
        except BerthError as exc:
            errors.append(str(exc))
    if ns.format == "json":
        ctx.print(go_json(found))
    elif ns.format:
        tmpl = Template(ns.format)
        for doc in found:
            ctx.print(tmpl.execute(doc))
        if not found:
            ctx.print()
    else:
        ctx.print(inspect_json(found))
    for line in errors:
        ctx.error(line)
    return 1 if errors else 0


@_fail
def cmd_show(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("context show", "", "Print the name of the current context", max_args=0)
    p.usage = (p.usage or "").rstrip()
    p.parse(argv)
    ctx.print(current(ctx))
    return 0


@_fail
def cmd_use(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("context use", "CONTEXT", "Set the current docker context")
    p.add_argument("args", nargs="*")
    args = p.parse(argv).args
    if len(args) != 1:
        raise StatusError(1, f"accepts 1 arg(s), received {len(args)}")
    name = args[0]
    store = _store()
    if name != contexts.DEFAULT:
        contexts.validate_name(name)
        contextstore.load(store, name)
    contextstore.set_current(store, name)
    ctx.print(name)
    ctx.error(f'Current context is now "{name}"')
    if name != contexts.DEFAULT:
        _override_warning(ctx, name)
    return 0


@_fail
def cmd_rm(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("context rm", "CONTEXT [CONTEXT...]", "Remove one or more contexts", min_args=1)
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    store = _store()
    now = current(ctx)
    saved = contextstore.current_name(store, warn=False)
    problems: list[str] = []
    for name in ns.args:
        if name == contexts.DEFAULT:
            problem = f'context "{name}" cannot be removed'
        elif not contexts.NAME_RE.fullmatch(name) or not contextstore.exists(store, name):
            problem = f'context "{name}" does not exist'
        elif name == now and not ns.force:
            problem = f'context "{name}" is in use, set -f flag to force remove'
        else:
            problem = ""
        if problem:
            problems.append(problem)
            continue
        contextstore.remove(store, name)
        if name == saved:
            contextstore.set_current(store, contexts.DEFAULT)
        ctx.print(name)
    for problem in problems:  # docker: after the names it removed
        ctx.error(problem)
    return 1 if problems else 0


# --------------------------------------------------------------------------- export / import


def _ustar_header(name: str, mode: int, size: int, dir_: bool) -> bytes:
    """One USTAR header as Go's archive/tar writes docker's: root-owned, time 0, numeric fields in octal."""
    def octal(value: int, width: int) -> bytes:
        return f"{value:0{width - 1}o}".encode() + b"\0"
    block = bytearray(512)
    fields = [(0, name.encode().ljust(100, b"\0")), (100, octal(mode, 8)), (108, octal(0, 8)), (116, octal(0, 8)),
              (124, octal(size, 12)), (136, octal(0, 12)), (156, b"5" if dir_ else b"0"),
              (257, b"ustar\x0000"), (329, octal(0, 8)), (337, octal(0, 8))]
    for offset, value in fields:
        block[offset:offset + len(value)] = value
    block[148:156] = b" " * 8
    block[148:156] = f"{sum(block):06o}".encode() + b"\0 "
    return bytes(block)


def export_tar(ctx: Context, tls: dict[str, bytes]) -> bytes:
    """docker's export archive of a context: meta.json, tls/, tls/docker/ and its files, as root, at time 0
    (with the end-of-archive blocks docker's own archives lack)."""
    out = bytearray()

    def add(name: str, mode: int, data: bytes | None) -> None:
        out.extend(_ustar_header(name, mode, len(data or b""), data is None))
        if data:
            out.extend(data + b"\0" * (-len(data) % 512))
    add("meta.json", 0o644, contexts.encode_meta(ctx.doc))
    add("tls", 0o700, None)
    if tls:
        add(f"tls/{contexts.DOCKER_ENDPOINT}", 0o700, None)
        for file_name in sorted(tls):
            add(f"tls/{contexts.DOCKER_ENDPOINT}/{file_name}", 0o600, tls[file_name])
    return bytes(out + b"\0" * 1024)


def _keep(path: str, data: bytes, meta: list[bytes], tls: dict[str, bytes]) -> None:
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if parts == ["meta.json"]:
        meta.append(data)
    elif len(parts) == 3 and parts[0] == "tls" and parts[1] == contexts.DOCKER_ENDPOINT \
            and parts[2] in contexts.TLS_FILES:
        tls[parts[2]] = data


def read_archive(data: bytes) -> tuple[dict[str, Any], dict[str, bytes]]:
    """meta.json's document and the docker TLS files of an exported context (tar or zip); InvalidArgument
    when it is neither, or has no meta.json."""
    meta: list[bytes] = []
    tls: dict[str, bytes] = {}
    try:
        if data.startswith(b"PK\x03\x04"):
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                for zinfo in zf.infolist():
                    if not zinfo.is_dir() and zinfo.file_size <= contextstore.MAX_FILE:
                        _keep(zinfo.filename, zf.read(zinfo), meta, tls)
        else:
            # docker's own archives stop without the end blocks (and the last file's padding)
            padded = data + b"\0" * (-len(data) % 512) + b"\0" * 1024
            with tarfile.open(fileobj=io.BytesIO(padded), mode="r:") as tar:
                for member in tar:
                    if member.isreg() and member.size <= contextstore.MAX_FILE:
                        f = tar.extractfile(member)
                        if f is not None:
                            _keep(member.name, f.read(), meta, tls)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise InvalidArgument(f"not a context archive (tar or zip): {exc}") from None
    if not meta:
        raise InvalidArgument("not a context archive: it has no meta.json")
    return contexts.parse_meta(meta[-1], "meta.json"), tls


@_fail
def cmd_export(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("context export", "[OPTIONS] CONTEXT [FILE|-]",
               "Export a context to a tar archive FILE or a tar stream on STDOUT.", min_args=1, max_args=2)
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    name = ns.args[0]
    store = _store()
    source = contextstore.load(store, name)
    data = export_tar(source, contextstore.tls_bytes(source) if name != contexts.DEFAULT else {})
    dest = ns.args[1] if len(ns.args) > 1 else f"{name}.dockercontext"
    if dest == "-":
        ctx.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return 0
    try:
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise StatusError(1, f"open {dest}: {(exc.strerror or str(exc)).lower()}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    ctx.error(f'Written file "{dest}"')
    return 0


@_fail
def cmd_import(ctx: Ctx, argv: list[str]) -> int:
    p = Parser("context import", "CONTEXT FILE|-", "Import a context from a tar or zip file",
               min_args=2, max_args=2)
    p.add_argument("args", nargs="*")
    ns = p.parse(argv)
    name, source = ns.args
    store = _store()
    contexts.check_new_name(name)
    if contextstore.exists(store, name):
        raise InvalidArgument(f'context "{name}" already exists')
    if source == "-":
        data = sys.stdin.buffer.read(MAX_ARCHIVE + 1)
    else:
        try:
            with open(source, "rb") as f:
                data = f.read(MAX_ARCHIVE + 1)
        except OSError as exc:
            raise StatusError(1, f"open {source}: {(exc.strerror or str(exc)).lower()}") from None
    if len(data) > MAX_ARCHIVE:
        raise InvalidArgument(f"{source}: larger than {MAX_ARCHIVE} bytes, not a context archive")
    doc, tls = read_archive(data)
    contextstore.create(store, name, {**doc, "Name": name}, tls)
    ctx.print(name)
    ctx.error(f'Successfully imported context "{name}"')
    return 0


COMMANDS = {"context": cmd_context}
