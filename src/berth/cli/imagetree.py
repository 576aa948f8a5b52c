"""`berth images --tree`: each image with its platform variants, drawn as the docker CLI (28.2) draws it.

Strategy: pure. `tree_view()` turns the API's image summaries (asked with
`manifests=1`) into rows: an image with its names and, under it, one row per
platform manifest (attestations only add to the image's content size);
`render()` lays them out for a terminal or a pipe. The layout follows what the
docker CLI prints, byte for byte:

- a warning that the view is experimental, then a legend (" Info ->  U In Use ")
  right-aligned to the width, then a blank line;
- columns IMAGE, ID, DISK USAGE, CONTENT SIZE, EXTRA, three spaces apart; the
  width is the terminal's (80 on a pipe, at least 20); a column that would leave
  the IMAGE column narrower than 12 is dropped with those after it; IMAGE is as
  wide as its widest name or platform row needs (counted in bytes, a platform
  row as the platform plus 7), within what is left;
- the headers are bold even on a pipe (the docker CLI colours them
  unconditionally); everything else is coloured only on a terminal;
- an image's other names, longest first, stand on lines of their own above the
  last one, which starts the row; an image without names is "<untagged>";
- sizes are decimal with 3 significant digits (Go's %.3g: "4.57MB", "1e+03kB");
- a blank line follows each image, and one more separates an image from its
  platform rows when any image has platform rows.

Strings from the daemon (platforms come from an image's index) have their
control characters replaced by "?" so that an image cannot drive the terminal.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

WARNING = "WARNING: This is an experimental feature. The output may change and shouldn't be depended on."
SPACING = 3  # spaces between columns
DEFAULT_WIDTH = 80  # when the output is not a terminal
MIN_WIDTH = 20

# The docker CLI's escape sequences (used on a terminal, and for the headers always).
_RESET = "\x1b[0m"
_TITLE = "\x1b[39m\x1b[1m"  # default foreground, bold
_TOP_NAME = "\x1b[34m\x1b[1m"  # blue, bold
_NORMAL = "\x1b[39m"
_FAINT = "\x1b[39m\x1b[2m"  # untagged images, platforms whose content is not here
_WARNING = "\x1b[93m"
_CHIP_IN_USE = "\x1b[38;5;0m\x1b[48;5;14m U " + _RESET
_INFO_HEADER = "\x1b[1m\x1b[106m\x1b[30mi" + _RESET + _RESET + " \x1b[96mInfo \u2192 " + _RESET + _RESET
_INFO_HEADER_PLAIN = " Info -> "


@dataclass(frozen=True, slots=True)
class Details:
    """What the columns after IMAGE show for an image or one of its platforms."""

    id: str
    disk_usage: str
    in_use: bool
    content_size: str


@dataclass(frozen=True, slots=True)
class Platform:
    """One platform row under an image."""

    platform: str
    available: bool
    details: Details


@dataclass(frozen=True, slots=True)
class Top:
    """One image: its names (as the API lists them), its details and its platform rows."""

    names: tuple[str, ...]
    details: Details
    children: tuple[Platform, ...]
    created: int


@dataclass(frozen=True, slots=True)
class TreeView:
    images: tuple[Top, ...]
    spacing: bool  # some image has platform rows: a blank line after each image's own row


def human_size(size: float) -> str:
    """Decimal size with 3 significant digits, as Go's units.HumanSizeWithPrecision(size, 3)."""
    units = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
    value, i = float(size), 0
    while value >= 1000.0 and i < len(units) - 1:
        value /= 1000.0
        i += 1
    return f"{value:.3g}{units[i]}"


def short_id(image_id: str) -> str:
    """The first 12 characters after the algorithm (docker's stringid.TruncateID)."""
    return image_id.partition(":")[2][:12] if ":" in image_id else image_id[:12]


def format_platform(platform: Any) -> str:
    """An OCI platform object as "os/arch[/variant]" ("unknown" without an os), as containerd's Format."""
    p = platform if isinstance(platform, dict) else {}
    os_name = _text(p.get("os"))
    if not os_name:
        return "unknown"
    parts = [s for s in (os_name, _text(p.get("architecture")), _text(p.get("variant"))) if s]
    return _clean("/".join(parts))


def _clean(path: str) -> str:
    """Go's path.Clean."""
    rooted = path.startswith("/")
    out: list[str] = []
    for seg in path.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(seg)
    joined = ("/" if rooted else "") + "/".join(out)
    return joined or "."


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _dangling(img: dict[str, Any]) -> bool:
    tags, digests = _strings(img.get("RepoTags")), _strings(img.get("RepoDigests"))
    if not tags and not digests:
        return True
    return tags == ["<none>:<none>"] and digests == ["<none>@<none>"]


def tree_view(images: Sequence[dict[str, Any]], all_: bool = False) -> TreeView:
    """The rows of the tree from GET /images/json?manifests=1 (dangling images left out unless *all_*)."""
    tops: list[Top] = []
    spacing = False
    for img in images:
        if not isinstance(img, dict) or (not all_ and _dangling(img)):
            continue
        in_use = _int(img.get("Containers")) > 0
        content = 0
        children: list[Platform] = []
        manifests = img.get("Manifests")
        for m in manifests if isinstance(manifests, list) else ():
            if not isinstance(m, dict):
                continue
            size = _object(m.get("Size"))
            content += _int(size.get("Content"))
            if m.get("Kind") != "image":
                continue
            data = _object(m.get("ImageData"))
            used = bool(data.get("Containers"))
            children.append(Platform(
                format_platform(data.get("Platform")), m.get("Available") is True,
                Details(_text(m.get("ID")), human_size(_int(size.get("Total"))), used,
                        human_size(_int(size.get("Content"))))))
            in_use = in_use or used
            spacing = True
        names = tuple(_strings(img.get("RepoTags")))
        tops.append(Top(names, Details(_text(img.get("Id")), human_size(_int(img.get("Size"))), in_use,
                                       human_size(content)), tuple(children), _int(img.get("Created"))))
    tops.sort(key=lambda t: t.created, reverse=True)
    return TreeView(tuple(tops), spacing)


# layout ---------------------------------------------------------------

def _sanitize(s: str) -> str:
    return "".join("?" if unicodedata.category(c) == "Cc" else c for c in s)


def _strip_ansi(s: str) -> str:
    while (start := s.find("\x1b")) != -1:
        end = s.find("m", start)
        if end == -1:
            return s
        s = s[:start] + s[end + 1:]
    return s


def width_of(s: str) -> int:
    """Display width: escape sequences count 0, wide characters 2, combining marks 0."""
    total = 0
    for c in _strip_ansi(s):
        if unicodedata.combining(c):
            continue
        total += 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1
    return total


def ellipsis(s: str, length: int) -> str:
    """*s* cut to *length* characters, the last of them "…" (escape sequences kept whole)."""
    out: list[str] = []
    n, in_escape, too_long = 0, False, False
    for c in s:
        if c == "\x1b":
            out.append(c)
            in_escape = True
            continue
        if in_escape:
            out.append(c)
            if c == "m":
                in_escape = False
                if too_long:
                    break
            continue
        n += 1
        if n == length:
            too_long = True
        if not too_long:
            out.append(c)
    return "".join(out) + ("\u2026" if too_long else "")


class _Colors:
    def __init__(self, terminal: bool) -> None:
        self.terminal = terminal

    def apply(self, color: str, s: str) -> str:
        return color + s + _RESET if self.terminal and color else s


@dataclass
class _Column:
    title: str
    width: int
    right: bool = False
    value: Callable[[Details], str] | None = None
    plain: bool = False  # printed without colour (EXTRA)

    def cell(self, colors: _Colors, color: str, s: str, always: bool = False) -> str:
        """*s* padded (or cut) to the column's width, coloured with *color* (*always*: also on a pipe)."""
        paint = (lambda t: color + t + _RESET) if always else (lambda t: colors.apply(color, t))
        n = width_of(s)
        if n > self.width:
            return paint(ellipsis(s, self.width))
        pad = " " * (self.width - n)
        return pad + paint(s) if self.right else paint(s) + pad


def render(view: TreeView, terminal: bool = False, columns: int = 0) -> str:
    """The tree as the docker CLI prints it; *columns* is the terminal's width (0 when not a terminal)."""
    colors = _Colors(terminal)
    width = columns or DEFAULT_WIDTH
    width = max(width, MIN_WIDTH)
    chip = _CHIP_IN_USE if terminal else "U"
    placeholder = "   " if terminal else " "
    chips = any(c.details.in_use for t in view.images for c in t.children)  # the only chip: In Use

    def extra(d: Details) -> str:
        return (chip if d.in_use else placeholder) if chips else ""

    cols = [
        _Column("Image", 0),
        _Column("ID", 12, value=lambda d: short_id(d.id)),
        _Column("Disk usage", 10, right=True, value=lambda d: d.disk_usage),
        _Column("Content size", 12, right=True, value=lambda d: d.content_size),
        _Column("Extra", max(len("Extra"), width_of(chip) if chips else 0), value=extra, plain=True),
    ]
    cols = _fit(width, cols, view.images)
    out: list[str] = []
    out.append((colors.apply(_WARNING, WARNING)) + "\n")
    legend = (_INFO_HEADER if terminal else _INFO_HEADER_PLAIN) + " " + chip + " In Use "
    out.append(" " * max(0, width - width_of(legend)) + legend + "\n")
    out.append("\n")
    out.append((" " * SPACING).join(c.cell(colors, _TITLE, c.title.upper(), always=True) for c in cols) + "\n")
    for img in view.images:
        out.append(_names(colors, cols[0], img, columns))
        out.append(_details(colors, cols, _NORMAL, img.details))
        if img.children or view.spacing:
            out.append("\n")
        for i, sub in enumerate(img.children):
            color = _NORMAL if sub.available else _FAINT
            branch = "\u2514\u2500 " if i == len(img.children) - 1 else "\u251c\u2500 "
            out.append(cols[0].cell(colors, color, branch + _sanitize(sub.platform)))
            out.append(_details(colors, cols, color, sub.details) + "\n")
        out.append("\n")
    return "".join(out)


def _fit(width: int, cols: list[_Column], images: Sequence[Top]) -> list[_Column]:
    """Drop the columns that would leave IMAGE narrower than 12; make IMAGE as narrow as its rows allow."""
    name_width = width
    keep = len(cols)
    for i, col in enumerate(cols):
        if col.width == 0:
            continue
        need = col.width + (SPACING if i > 0 else 0)
        if name_width - need < 12:
            keep = i
            break
        name_width -= need
    cols = cols[:keep]
    widest = len(cols[0].title)
    for img in images:
        for name in img.names:
            widest = max(widest, len(name.encode()))
        for sub in img.children:
            widest = max(widest, len(_sanitize(sub.platform).encode()) + len("\u2514\u2500 ".encode()))
    cols[0].width = min(name_width, widest)
    return cols


def _names(colors: _Colors, col: _Column, img: Top, columns: int) -> str:
    if not img.names:
        return col.cell(colors, _FAINT, "<untagged>")
    names = sorted((_sanitize(n) for n in img.names), key=lambda n: len(n.encode()), reverse=True)
    lines = [colors.apply(_TOP_NAME, ellipsis(n, columns)) + "\n" for n in names[:-1]]
    return "".join(lines) + col.cell(colors, _TOP_NAME, names[-1])


def _details(colors: _Colors, cols: Sequence[_Column], color: str, d: Details) -> str:
    out = []
    for col in cols:
        if col.value is None:
            continue
        out.append(" " * SPACING + col.cell(colors, "" if col.plain else color, col.value(d)))
    return "".join(out)
