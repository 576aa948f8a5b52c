"""Resolve Docker's `User` field against an image's /etc/passwd and /etc/group.

Strategy: the caller reads the two files out of the image (or passes None when
a file is absent) and this module does the rest as pure text processing. A
user is matched by name, or by uid when numeric; a numeric uid may be absent
from passwd. Supplementary groups come from /etc/group membership, and only
when the user was found by name or uid and no group was given explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass

from berth.errors import InvalidArgument

MAX_ID = 2**31 - 1


@dataclass(frozen=True, slots=True)
class PasswdEntry:
    name: str
    uid: int
    gid: int


@dataclass(frozen=True, slots=True)
class GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...]


def _int_or_none(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isdigit() else None


def parse_passwd(text: str) -> list[PasswdEntry]:
    """Parse passwd-format text, skipping comments and malformed lines.

    Args:
        text: the content of an /etc/passwd file.

    Returns:
        The entries in file order.
    """
    entries: list[PasswdEntry] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        if len(fields) < 4:
            continue
        uid, gid = _int_or_none(fields[2]), _int_or_none(fields[3])
        if uid is None or gid is None:
            continue
        entries.append(PasswdEntry(fields[0], uid, gid))
    return entries


def parse_group(text: str) -> list[GroupEntry]:
    """Parse group-format text, skipping comments and malformed lines.

    Args:
        text: the content of an /etc/group file.

    Returns:
        The entries in file order.
    """
    entries: list[GroupEntry] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        if len(fields) < 3:
            continue
        gid = _int_or_none(fields[2])
        if gid is None:
            continue
        members = tuple(m.strip() for m in fields[3].split(",") if m.strip()) if len(fields) > 3 else ()
        entries.append(GroupEntry(fields[0], gid, members))
    return entries


def _check_range(kind: str, value: int) -> int:
    if value > MAX_ID:
        raise InvalidArgument(f"{kind} {value} is out of range 0-{MAX_ID}")
    return value


def resolve_user(user: str, passwd: str | None, group: str | None) -> tuple[int, int, tuple[int, ...]]:
    """Resolve a Docker `User` value to numeric ids.

    Accepted forms: "", "name", "uid", "name:group", "uid:gid", "name:gid", "uid:group".
    An empty user part means root (uid 0).

    Args:
        user: the `User` field of the container config.
        passwd: content of the image's /etc/passwd, or None if it has none.
        group: content of the image's /etc/group, or None if it has none.

    Returns:
        (uid, gid, additional gids). gid is the user's primary group from passwd
        (0 for a numeric uid passwd does not know) unless a group was given.
        The additional gids are the primary gid, then the groups listing the user by name
        in file order; with an explicit group, just that group (as Docker sets them).


    Raises:
        berth.errors.InvalidArgument: a user or group name not found, or an id
            out of range.
    """
    user_part, sep, group_part = user.partition(":")
    user_part, group_part = user_part.strip(), group_part.strip()
    if sep and not group_part:
        raise InvalidArgument(f"invalid user {user!r}: empty group")

    users = parse_passwd(passwd) if passwd is not None else []
    wanted_uid = _int_or_none(user_part) if user_part else 0
    entry: PasswdEntry | None = None
    for candidate in users:
        if (user_part and candidate.name == user_part) or (
            wanted_uid is not None and candidate.uid == wanted_uid
        ):
            entry = candidate
            break

    if entry is not None:
        uid, gid, name = entry.uid, entry.gid, entry.name
    elif wanted_uid is not None:
        uid, gid, name = _check_range("uid", wanted_uid), 0, None
    else:
        raise InvalidArgument(f"unable to find user {user_part}: no matching entries in passwd file")

    groups = parse_group(group) if group is not None else []
    if group_part:
        wanted_gid = _int_or_none(group_part)
        match = next(
            (g for g in groups if g.name == group_part or (wanted_gid is not None and g.gid == wanted_gid)),
            None,
        )
        if match is not None:
            return uid, match.gid, (match.gid,)
        if wanted_gid is None:
            raise InvalidArgument(f"unable to find group {group_part}: no matching entries in group file")
        return uid, _check_range("gid", wanted_gid), (wanted_gid,)

    extra: list[int] = [gid]  # Docker lists the primary group among the supplementary ones
    if name is not None:
        for g in groups:
            if name in g.members and g.gid not in extra:
                extra.append(g.gid)
    return uid, gid, tuple(extra)


def resolve_groups(names: list[str] | tuple[str, ...], group: str | None) -> tuple[int, ...]:
    """Docker's `GroupAdd` (`--group-add`) as gids: each name or gid looked up in /etc/group, a number
    not listed there taken as given.

    Args:
        names: the `HostConfig.GroupAdd` entries.
        group: content of the image's /etc/group, or None if it has none.

    Returns:
        The gids in the order given, each once.

    Raises:
        berth.errors.InvalidArgument: a name that /etc/group does not list (Docker's words:
            "Unable to find group X: no matching entries in group file"), or a gid out of range.
    """
    groups = parse_group(group) if group is not None else []
    out: list[int] = []
    for raw in names:
        name = raw.strip()
        wanted = _int_or_none(name)
        match = next((g for g in groups if g.name == name or (wanted is not None and g.gid == wanted)), None)
        if match is not None:
            gid = match.gid
        elif wanted is not None:
            gid = _check_range("gid", wanted)
        else:
            raise InvalidArgument(f"Unable to find group {name}: no matching entries in group file")
        if gid not in out:
            out.append(gid)
    return tuple(out)
