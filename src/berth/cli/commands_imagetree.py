"""`berth images --tree`: ask the daemon for each image's manifests and draw them (berth.cli.imagetree).

Strategy: the I/O edge of the tree view: refuse what the docker CLI refuses with
--tree (in its words, exit 1), ask GET /images/json with manifests=1 (API 1.47),
and write the pure rendering, coloured and fitted when stdout is a terminal.
"""

from __future__ import annotations

from berth.cli import imagetree, tty
from berth.cli.common import Ctx, StatusError, require_api

# docker's refusals, checked in this order (its text, "--show-digest" included)
_NOT_WITH_TREE = (("quiet", "--quiet"), ("no_trunc", "--no-trunc"), ("digests", "--show-digest"),
                  ("format_", "--format"))


def images_tree(ctx: Ctx, all_: bool, filters: dict[str, list[str]], *, quiet: bool = False,
                no_trunc: bool = False, digests: bool = False, format_: str | None = None) -> int:
    """Print the image tree; exit 1 with docker's message for a flag --tree does not take."""
    given = {"quiet": quiet, "no_trunc": no_trunc, "digests": digests, "format_": bool(format_)}
    for key, flag in _NOT_WITH_TREE:
        if given[key]:
            raise StatusError(1, f"{flag} is not yet supported with --tree")
    require_api(ctx, "--tree", "1.47")
    images = ctx.client.get("/images/json", {"all": all_, "filters": filters or None, "manifests": True})
    terminal, columns = _terminal(ctx)
    view = imagetree.tree_view(images if isinstance(images, list) else [], all_)
    ctx.out.write(imagetree.render(view, terminal=terminal, columns=columns))
    return 0


def _terminal(ctx: Ctx) -> tuple[bool, int]:
    """(stdout is a terminal, its width or 0)."""
    try:
        fd = ctx.out.fileno()
    except (AttributeError, OSError, ValueError):
        return False, 0
    if not tty.is_tty(fd):
        return False, 0
    size = tty.terminal_size(fd)
    return True, size[1] if size else 0
