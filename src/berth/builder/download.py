"""ADD <url>: fetching a remote file into a directory of the daemon's, for the copy that follows.

Strategy: one streaming GET with httpx (redirects followed, the daemon's
proxy settings honoured), written to a temporary file and renamed into
place only when complete. The file is named as Docker names it: the URL
path's last segment, else Content-Disposition's filename, else the
destination's own name; it takes Last-Modified as its mtime. Failures are
sorted by who can fix them: a bad URL or a 4xx is the request's fault
(InvalidArgument), an unreachable or failing server is Unavailable. The
caller copies the file through the `files` argument of copy_into/add_into,
which never unpacks it (Docker does not unpack an archive fetched from a
URL).
"""

from __future__ import annotations

import datetime
import email.message
import email.utils
import os
import posixpath
import tempfile
import urllib.parse
from pathlib import Path

import httpx

from berth.errors import InvalidArgument, Unavailable
from berth.host import spool

_CHUNK = 1 << 20


def _usable_name(name: str | None) -> str | None:
    if not name or name.endswith("/"):
        return None
    base = posixpath.basename(name)
    return base if base not in ("", ".", "..") and "\0" not in base else None


def download_name(url: str, content_disposition: str | None) -> str | None:
    """The file name for a download: the URL path's last segment, else Content-Disposition's filename."""
    name = _usable_name(urllib.parse.unquote(urllib.parse.urlsplit(url).path))
    if name is None and content_disposition:
        msg = email.message.Message()
        msg["content-disposition"] = content_disposition
        name = _usable_name(msg.get_filename())
    return name


def _http_time(value: str | None) -> float | None:
    """Seconds since the epoch of an HTTP date (a naive one taken as UTC); None when absent or malformed."""
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.timestamp()


async def download(url: str, dest_dir: Path, *, fallback_name: str | None = None, timeout: float = 300.0,
                   trust_env: bool = True) -> Path:
    """Fetch *url* for ADD into *dest_dir*; return the file's path.

    Redirects are followed. The name comes from the URL's path, else from the
    Content-Disposition header, else *fallback_name* (the destination's base name when
    the destination is a file). The file is mode 0600 with the mtime of Last-Modified
    (left as is without one). Pass it to add_into in `files`: ADD does not unpack downloads.

    Args:
        url: an http:// or https:// URL.
        dest_dir: an existing directory of the daemon's.
        fallback_name: the name to use when neither the URL nor the server gives one.
        timeout: seconds without progress before giving up.
        trust_env: honour HTTP(S)_PROXY/NO_PROXY from the daemon's environment.
    Raises:
        InvalidArgument: not an http(s) URL, a 4xx answer, too many redirects, or no
            file name to be found.
        Unavailable: the server could not be reached, timed out, or answered 5xx.
    """
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidArgument(f"ADD failed: {url} is not an http:// or https:// URL")
    limits = httpx.Timeout(timeout, connect=min(timeout, 30.0))
    try:
        async with httpx.AsyncClient(follow_redirects=True, timeout=limits, trust_env=trust_env) as client:
            async with client.stream("GET", url) as resp:
                if resp.status_code >= 400:
                    category = Unavailable if resp.status_code >= 500 else InvalidArgument
                    raise category(f"ADD failed: GET {url} answered {resp.status_code} {resp.reason_phrase}; "
                                   "check the URL and that the server serves it")
                name = download_name(url, resp.headers.get("content-disposition")) or _usable_name(fallback_name)
                if name is None:
                    raise InvalidArgument(f"ADD failed: cannot determine filename from url: {url}; name the "
                                          "destination file (ADD <url> /path/file)")
                fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=".download-")
                try:
                    with os.fdopen(fd, "wb") as out:  # written in a worker thread, never on the event loop
                        await spool.drain(resp.aiter_bytes(_CHUNK), out.write)
                    os.chmod(tmp, 0o600)
                    when = _http_time(resp.headers.get("last-modified"))
                    if when is not None:
                        os.utime(tmp, (when, when))
                    final = Path(dest_dir, name)
                    os.replace(tmp, final)
                except BaseException:
                    try:
                        os.unlink(tmp)
                    except FileNotFoundError:
                        pass
                    raise
                return final
    except httpx.InvalidURL as exc:
        raise InvalidArgument(f"ADD failed: {url} is not a valid URL: {exc}") from exc
    except httpx.TooManyRedirects as exc:
        raise InvalidArgument(f"ADD failed: GET {url}: too many redirects; check the URL") from exc
    except httpx.TimeoutException as exc:
        raise Unavailable(f"ADD failed: GET {url} timed out ({type(exc).__name__}); try again or check the "
                          "server") from exc
    except httpx.HTTPError as exc:
        raise Unavailable(f"ADD failed: GET {url}: {exc or type(exc).__name__}; check that the server is "
                          "reachable from the daemon") from exc


__all__ = ["download", "download_name"]
