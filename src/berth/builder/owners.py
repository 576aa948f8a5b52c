"""Owners of what COPY and ADD write: --chown's value turned into numeric ids.

Strategy: names are looked up in the image's own /etc/passwd and /etc/group
(the caller reads them through the image; berth.oci.passwd parses them), as
BuildKit does: a user given alone brings its primary group, a bare uid the
same number as gid, and a name the files do not know is an error that says
how to fix it. The result is a small frozen value; no ids are ever taken from
the host's own user database.
"""

from __future__ import annotations

from dataclasses import dataclass

from berth.errors import InvalidArgument
from berth.oci import passwd as passwd_files


@dataclass(frozen=True, slots=True)
class Owner:
    """Numeric owner of copied files."""

    uid: int
    gid: int


ROOT = Owner(0, 0)


def _numeric(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() else None


def resolve_owner(chown: str, passwd: str | None, group: str | None) -> Owner:
    """Turn a --chown value into numeric ids, names looked up in the image's files.

    Forms: "user", "uid", "user:group", "uid:gid", "user:gid", "uid:group". A user
    given alone brings its primary group from passwd (a bare uid brings the same
    number as gid), as BuildKit does. "" is root.

    Args:
        chown: the flag's value.
        passwd: the text of the image's /etc/passwd (None or "" when it has none).
        group: the text of the image's /etc/group (None or "" when it has none).
    Raises:
        InvalidArgument: a name the files do not know, an empty part, or an id out of range.
    """
    if not chown:
        return ROOT
    user_part, sep, group_part = chown.partition(":")
    if not user_part or (sep and not group_part) or ":" in group_part:
        raise InvalidArgument(f"invalid chown string format: {chown!r}; use user, user:group, uid or uid:gid")
    prefix = "unable to convert uid/gid chown string to host mapping"
    uid = _numeric(user_part)
    gid: int | None
    if uid is not None:
        gid = uid
    else:
        entry = next((e for e in passwd_files.parse_passwd(passwd or "") if e.name == user_part), None)
        if entry is None:
            raise InvalidArgument(f"{prefix}: can't find uid for user {user_part}: no such user: {user_part} "
                                  "(add the user in an earlier step, or give a numeric uid)")
        uid, gid = entry.uid, entry.gid
    if group_part:
        gid = _numeric(group_part)
        if gid is None:
            found = next((g for g in passwd_files.parse_group(group or "") if g.name == group_part), None)
            if found is None:
                raise InvalidArgument(f"{prefix}: can't find gid for group {group_part}: no such group: "
                                      f"{group_part} (add the group in an earlier step, or give a numeric gid)")
            gid = found.gid
    for kind, value in (("uid", uid), ("gid", gid)):
        if value > passwd_files.MAX_ID:
            raise InvalidArgument(f"{prefix}: {kind} {value} is out of range 0-{passwd_files.MAX_ID}")
    return Owner(uid, gid)


__all__ = ["Owner", "ROOT", "resolve_owner"]
