"""Rows and columns for `ps`, `images`, `top` and friends.

Strategy: pure. Each listing turns the API's JSON into a row mapping with the
field names docker's templates use (`.ID`, `.Image`, `.RunningFor`...), plus a
header table for the `table` prefix; berth.cli.gotemplate renders both. Values
that docker computes lazily (`.Label "k"`) are callables in the row.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from berth.cli.gotemplate import go_quote
from berth.cli.units import ago, human_duration, human_size, human_size4

PS_DEFAULT = ("table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}"
              "\t{{.Ports}}\t{{.Names}}")
PS_QUIET = "{{.ID}}"
PS_HEADERS = {
    "ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
    "RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE", "Status": "STATUS",
    "Size": "SIZE", "Names": "NAMES", "Labels": "LABELS", "Label": "LABEL",
    "Mounts": "MOUNTS", "Networks": "NETWORKS", "LocalVolumes": "LOCAL VOLUMES",
    "Platform": "PLATFORM",
}

IMAGES_DEFAULT = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
IMAGES_QUIET = "{{.ID}}"
IMAGES_HEADERS = {
    "ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST",
    "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE",
    "Containers": "CONTAINERS", "SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE",
    "VirtualSize": "VIRTUAL SIZE",
}


def ellipsis(text: str, width: int) -> str:
    """Shorten to *width* characters, the last being '…' when cut."""
    if len(text) <= width:
        return text
    if width <= 1:
        return text[:width]
    return text[: width - 1] + "…"


def short_id(ident: str, trunc: bool = True) -> str:
    """12 hex digits without the `sha256:` prefix; the whole id when not truncating."""
    if not trunc:
        return ident
    bare = ident.split(":", 1)[1] if ident.startswith("sha256:") else ident
    return bare[:12]


def container_names(names: list[str] | None, trunc: bool = True) -> str:
    out = []
    for name in names or []:
        bare = name[1:] if name.startswith("/") else name
        if trunc and "/" in bare:  # a link alias, shown only with --no-trunc
            continue
        out.append(bare)
    return ",".join(out)


def format_ports(ports: list[Mapping[str, Any]] | None) -> str:
    out = []
    for p in ports or []:
        proto = p.get("Type", "tcp")
        if p.get("PublicPort"):
            ip = p.get("IP") or "0.0.0.0"
            host = f"[{ip}]" if ":" in ip else ip
            out.append(f"{host}:{p['PublicPort']}->{p.get('PrivatePort')}/{proto}")
        else:
            out.append(f"{p.get('PrivatePort')}/{proto}")
    return ", ".join(out)


def _format_utc_local(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(ts))


def _labels_text(labels: Mapping[str, str] | None) -> str:
    return ",".join(f"{k}={v}" for k, v in (labels or {}).items())


def ps_row(c: Mapping[str, Any], now: float, trunc: bool = True,
           status: str | None = None) -> dict[str, Any]:
    """A `ps` row from one GET /containers/json entry."""
    cid = str(c.get("Id", ""))
    image = str(c.get("Image", ""))
    if trunc and image.startswith("sha256:"):
        image = short_id(image)
    command = str(c.get("Command", ""))
    labels = c.get("Labels") or {}
    created = float(c.get("Created") or 0)
    size_rw, size_root = c.get("SizeRw"), c.get("SizeRootFs")
    size = human_size(size_rw or 0)  # docker: "0B" when the daemon did not measure
    if size_root:
        size += f" (virtual {human_size(size_root)})"
    mounts = ",".join(
        ellipsis(m.get("Name") or m.get("Source", ""), 15 if trunc else 10**9)
        for m in c.get("Mounts") or [])
    networks = ",".join(sorted(((c.get("NetworkSettings") or {}).get("Networks") or {})))
    label: Callable[[str], str] = lambda key: str(labels.get(key, ""))
    return {
        "ID": cid[:12] if trunc else cid,
        "Image": image,
        "Command": go_quote(ellipsis(command, 20) if trunc else command),
        "CreatedAt": _format_utc_local(created),
        "RunningFor": ago(created, now),
        "Ports": format_ports(c.get("Ports")),
        "State": str(c.get("State", "")),
        "Status": status if status is not None else str(c.get("Status", "")),
        "Size": size,
        "Names": container_names(c.get("Names"), trunc),
        "Labels": _labels_text(labels),
        "Label": label,
        "Mounts": mounts,
        "Networks": networks,
        "LocalVolumes": str(sum(1 for m in c.get("Mounts") or [] if m.get("Driver") == "local")),
        "Platform": (c.get("ImageManifestDescriptor") or {}).get("platform"),
    }


def status_text(state: Mapping[str, Any], now: float,
                parse_time: Callable[[str], float | None]) -> str:
    """docker's status wording from a container's State (for daemons that omit Status)."""
    status = str(state.get("Status", ""))
    started = parse_time(str(state.get("StartedAt", "")))
    finished = parse_time(str(state.get("FinishedAt", "")))
    if state.get("Running"):
        if state.get("Paused"):
            return f"Up {human_duration(now - (started or now))} (Paused)"
        if state.get("Restarting"):
            return f"Restarting ({state.get('ExitCode', 0)}) {ago(finished or now, now)}"
        return f"Up {human_duration(now - (started or now))}"
    if status == "removing":
        return "Removal In Progress"
    if status == "dead":
        return "Dead"
    if status == "created" or started is None:
        return "Created"
    return f"Exited ({state.get('ExitCode', 0)}) {ago(finished or now, now)}"


def image_rows(images: list[Mapping[str, Any]], now: float, trunc: bool = True,
               show_dangling: bool = True, show_digests: bool = False) -> list[dict[str, Any]]:
    """`images` rows: one per repo:tag, then, as docker's CLI adds them, one per repository known only by
    digest (its tag <none>; its digest shown with --digests, one row per digest then); one <none>:<none>
    row for an image with neither."""
    rows = []
    for img in images:
        iid = str(img.get("Id", ""))
        shown_id = short_id(iid) if trunc else iid
        tags = [t for t in img.get("RepoTags") or [] if t != "<none>:<none>"]
        digests = [d for d in img.get("RepoDigests") or [] if d != "<none>@<none>"]
        created = float(img.get("Created") or 0)
        virtual = int(img.get("VirtualSize") or img.get("Size") or 0)
        shared_size = img.get("SharedSize")
        shared = int(shared_size) if isinstance(shared_size, (int, float)) else -1
        base = {
            "ID": shown_id,
            "CreatedSince": ago(created, now),
            "CreatedAt": _format_utc_local(created),
            "Size": human_size(img.get("Size") or 0),
            "VirtualSize": human_size4(virtual),  # docker: 4 digits here, 3 for Size
            "SharedSize": human_size4(shared) if shared >= 0 else "N/A",
            "UniqueSize": human_size4(virtual - shared) if shared >= 0 and virtual >= 0 else "N/A",
            "Containers": "N/A" if (img.get("Containers", -1) or 0) < 0
            else str(img.get("Containers")),
            "Digest": "<none>",
        }
        if not tags and not digests:
            if show_dangling:
                rows.append({**base, "Repository": "<none>", "Tag": "<none>"})
            continue
        tagged = set()
        for tag in tags:
            repo, _, t = tag.rpartition(":")
            if "/" in t:  # the colon was a registry port, not a tag
                repo, t = tag, "<none>"
            tagged.add(repo)
            digest = next((d.rsplit("@", 1)[1] for d in digests  # docker shows a tag's digest only when asked
                           if d.rsplit("@", 1)[0] == repo), "<none>") if show_digests else "<none>"
            rows.append({**base, "Repository": repo, "Tag": t, "Digest": digest})
        by_repo: dict[str, list[str]] = {}
        for ref in digests:
            repo, _, digest = ref.rpartition("@")
            if repo not in tagged:
                by_repo.setdefault(repo, []).append(digest)
        for repo, repo_digests in by_repo.items():
            for digest in (repo_digests if show_digests else [""]):
                rows.append({**base, "Repository": repo, "Tag": "<none>", "Digest": digest})
    return rows


def split_repo_tag(ref: str) -> tuple[str, str]:
    """`repo[:tag]` -> (repo, tag); the tag is what follows the last ':' after the last '/'."""
    name, sep, tag = ref.rpartition(":")
    if sep and "/" not in tag:
        return name, tag
    return ref, ""


def normalize_ref(ref: str) -> str:
    """Add ':latest' to a reference with neither tag nor digest."""
    if "@" in ref:
        return ref
    _, tag = split_repo_tag(ref)
    return ref if tag else f"{ref}:latest"


def inspected_tail(fmt: str | None, found: list[Any], templated: bool) -> str | None:
    """What `inspect` prints once every object was looked up: the compact array for `--format json`, the
    indented array with no format, an empty line when a template matched nothing (docker still ends its
    line); None when the template already printed each object."""
    if fmt == "json":
        return go_json(found, escape_html=False)
    if not templated:
        import json

        return json.dumps(found, indent=4, ensure_ascii=False) if found else "[]"
    return None if found else ""


def go_json(value: Any, sort_keys: bool = False, escape_html: bool = True) -> str:
    """Compact JSON as Go's json.Marshal writes it (&, <, > and U+2028/9 escaped; they occur only in strings);
    without *escape_html*, as docker's `inspect --format json` passes the daemon's JSON on."""
    import json

    text = json.dumps(value, sort_keys=sort_keys, separators=(",", ":"), ensure_ascii=False)
    if not escape_html:
        return text
    for ch, esc in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"), ("\u2028", "\\u2028"),
                    ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


def json_rows(rows: Iterable[Mapping[str, Any]]) -> str:
    """docker's `--format json` for a listing: one compact JSON object a row, keys sorted, lazy fields left out."""
    return "".join(go_json({k: v for k, v in row.items() if not callable(v)}, sort_keys=True) + "\n"
                   for row in rows)


def render_listing(fmt: str, rows: Iterable[Mapping[str, Any]], headers: Mapping[str, str]) -> str:
    """A listing's output for `--format`: docker's `json` keyword, else the template (`table ...` or not)."""
    from berth.cli.gotemplate import render_rows

    rows = list(rows)
    return json_rows(rows) if fmt.strip() == "json" else render_rows(fmt, rows, headers)
