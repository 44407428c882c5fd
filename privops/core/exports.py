"""Where an export may point: only below the answering system's declared export root.

An export's location is copied into the subject's access response (DESIGN.md section 5),
so a location a system (or whoever can write its results topic) made up would send the
subject wherever the writer wanted: a login page, another host, another subject's file.
The data map declares each system's export root; an answer is used only if its location
lies below that root and names its request.

Locations are compared as parsed URLs, segment by segment after percent-decoding, never
as string prefixes: ``https://exports.example.com.evil.net/`` starts with the text of
``https://exports.example.com`` but is another host, and ``%2e%2e`` is ``..`` to the
server that will resolve it. Anything a URL parser and a web server might read
differently (userinfo, a query or fragment, backslashes, empty or dot segments, encoded
separators, double encoding) is refused rather than interpreted.

The layout below a root is ``<root><request id>.<ext>`` or ``<root><request id>/...``,
so the request id must be usable as one path segment unchanged: an id a connector would
have to rewrite (``REQ/../../etc``, ``a@b.example``) could collide with another
request's export, and is rejected instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final
from urllib.parse import SplitResult, unquote, urlsplit

from privops.core.records import ExportReference
from privops.core.vocab import Category, System

if TYPE_CHECKING:
    from privops.core.datamap import DataMap

# Letters, digits, "-", "_" and inner dots: a file or URL segment as it is on every
# platform, never "." or "..", and without ":" (task ids are "<request>:<system>:<action>").
REQUEST_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_EXTENSION: Final = re.compile(r"[A-Za-z0-9]{1,16}")
_DEFAULT_PORTS: Final = {"https": 443, "file": None}
_MAX_URL: Final = 2048
# Characters whose meaning differs between URL parsers, file systems and servers
# ("..;/" is ".." to some servlet containers, a backslash is "/" to others); refused in the raw
# URL and again once a segment is decoded, so "%3F" or "%252e" cannot smuggle them in.
_AMBIGUOUS: Final = frozenset("\\?#;%")


@dataclass(frozen=True)
class _Location:
    """A URL reduced to what decides where it points."""

    scheme: str
    host: str
    port: int | None
    segments: tuple[str, ...]
    directory: bool  # the path ends with "/"


def path_safe(request_id: str) -> bool:
    """Whether the id can name a file or URL segment as it is."""
    return REQUEST_ID.fullmatch(request_id) is not None


def root_problem(root: str) -> str | None:
    """What is wrong with a declared export root, or None (used by the data map)."""
    parsed = _parse(root)
    if parsed is None:
        return (
            "must be an https URL with a host, or a file:// URL with an absolute path, "
            "without userinfo, query, fragment, empty or dot segments"
        )
    if not parsed.directory:
        return 'must end with "/" (a directory the exports live in)'
    return None


def below_root(root: str, location: str) -> tuple[str, ...] | None:
    """The decoded path segments of `location` below `root`; None if it is not below it."""
    base, target = _parse(root), _parse(location)
    if base is None or target is None or not base.directory or target.directory:
        return None
    if (target.scheme, target.host, target.port) != (base.scheme, base.host, base.port):
        return None
    depth = len(base.segments)
    if target.segments[:depth] != base.segments or len(target.segments) <= depth:
        return None
    return target.segments[depth:]


def roots_overlap(first: str, second: str) -> bool:
    """One root is the other or lies below it, so one system could point into the other's."""
    a, b = _parse(first), _parse(second)
    if a is None or b is None or (a.scheme, a.host, a.port) != (b.scheme, b.host, b.port):
        return False
    depth = min(len(a.segments), len(b.segments))
    return a.segments[:depth] == b.segments[:depth]


def names_request(below: tuple[str, ...], request_id: str) -> bool:
    """The path below the root is ``<request id>.<ext>`` or ``<request id>/...``."""
    if len(below) > 1:
        return below[0] == request_id
    stem, dot, extension = below[0].rpartition(".")
    return bool(dot) and stem == request_id and _EXTENSION.fullmatch(extension) is not None


MAX_DESCRIPTION_CHARS: Final = 256
"""The longest checksum or media type a copy may carry (a sha512's 135 characters fit).
Both are kept on the request record, in the access manifest and in the subject's
notification: a 900 kB checksum made each over Kafka's limit, stopping every worker that
read the answer again (review, session 43)."""


def description_problem(export: ExportReference) -> str | None:
    """Why a copy's description must not reach the subject, or None: a checksum or media
    type of more than ``MAX_DESCRIPTION_CHARS`` characters, or one that is not printable
    (a trailing newline included: it would go into the notification as it is); a count
    of records below 0 (a copy of fewer than none skipped the DPO's review of footage,
    which asks for copies of one record or more, and went out; review, session 44)."""
    for name, text in (("checksum", export.checksum), ("media type", export.media_type)):
        if len(text) > MAX_DESCRIPTION_CHARS or not text.isprintable():
            return f"the {name} is not at most {MAX_DESCRIPTION_CHARS} printable characters"
    if export.record_count < 0:
        return "the count of records is below 0"
    return None


def export_problem(
    datamap: DataMap, system: System, export: ExportReference, request_id: str
) -> str | None:
    """Why `system`'s export answer for `request_id` must not reach the subject, or None.

    The reasons name no location: a location can itself identify the subject.
    """
    if (problem := description_problem(export)) is not None:
        return problem
    spec = datamap.systems.get(system)
    if spec is None or spec.export_root is None:
        return f"{system.value} declares no export root in the data map"
    if not path_safe(request_id):
        return "the request id is not usable in a path as it is"
    below = below_root(spec.export_root, export.location)
    if below is None:
        return f"the location is not below {system.value}'s export root"
    if not names_request(below, request_id):
        return "the location does not name the request"
    return None


def _parse(url: str) -> _Location | None:
    if len(url) > _MAX_URL or not url.isprintable() or any(c.isspace() for c in url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or _AMBIGUOUS.difference("%").intersection(url):
        return None
    host = _host(parts, scheme)
    segments = _segments(parts.path)
    if host is None or segments is None:
        return None
    return _Location(
        scheme=scheme,
        host=host,
        port=_DEFAULT_PORTS[scheme] if port is None else port,
        segments=segments,
        directory=parts.path.endswith("/"),
    )


def _host(parts: SplitResult, scheme: str) -> str | None:
    if "@" in parts.netloc or "%" in parts.netloc:
        return None  # userinfo ("https://root@evil") or an encoded host
    host = parts.hostname or ""
    if scheme == "file":
        # file:///path and file://localhost/path name the same file; any other host does not.
        return "" if host in ("", "localhost") and parts.port is None else None
    return host or None


def _segments(path: str) -> tuple[str, ...] | None:
    """The path's segments, decoded; None for anything a server could resolve elsewhere."""
    if not path.startswith("/"):
        return None
    raw = path[1:-1] if path.endswith("/") else path[1:]
    if not raw:
        return ()
    out: list[str] = []
    for segment in raw.split("/"):
        try:
            decoded = unquote(segment, errors="strict")
        except UnicodeDecodeError:
            return None
        if (
            not decoded.strip(".")
            or "/" in decoded
            or _AMBIGUOUS.intersection(decoded)
            or not decoded.isprintable()
        ):
            return None
        out.append(decoded)
    return tuple(out)


MACHINE_READABLE: Final = {
    "application/json": "JSON",
    "application/ld+json": "JSON-LD",
    "application/x-ndjson": "NDJSON",
    "text/csv": "CSV",
    "text/tab-separated-values": "TSV",
    "application/xml": "XML",
    "text/xml": "XML",
}
"""The structured, commonly used, machine-readable formats a portability copy may be in
(UK GDPR Art. 20(1)), by media type, with the name the subject is told; any other
``application/`` type with a ``+json`` or ``+xml`` suffix (RFC 6839) is JSON or XML
(not XHTML, nor an image such as ``image/svg+xml``: those present data, not structure)."""
_MEDIA_TYPE: Final = re.compile(r"application/[a-z0-9][a-z0-9._+-]{0,63}")
_NAMED: Final = frozenset(
    {
        "application/pdf",
        "application/msword",
        "application/octet-stream",
        "application/zip",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.ms-excel",
        "text/plain",
        "text/html",
    }
)
"""Formats no portability copy may be in that a refusal names (a document, a page, an
archive); any other is "an unrecognised media type", the system's words not quoted."""


def _bare(media_type: str) -> str:
    """``media_type`` without its parameters (``; charset=utf-8``), in lower case."""
    return media_type.split(";", 1)[0].strip().lower()


def format_name(media_type: str) -> str | None:
    """The name of ``media_type``'s machine-readable format (JSON, CSV...), its
    parameters (``; charset=utf-8``) and case aside; None when it is none."""
    base = _bare(media_type)
    if (name := MACHINE_READABLE.get(base)) is not None:
        return name
    if _MEDIA_TYPE.fullmatch(base) and base != "application/xhtml+xml":
        for suffix, name in (("+json", "JSON"), ("+xml", "XML")):
            if base.endswith(suffix):
                return name
    return None


def portable_problem(export: ExportReference) -> str | None:
    """Why ``export`` cannot answer a portability request, or None: a copy in no
    structured, machine-readable format (a PDF, a scan, a recording) is not one the
    subject can give another organisation's systems. The media type is the system's
    (or the DPO's) own text: named only as a bare type, never with its parameters
    (a file name there could name the subject), since the reason is audited."""
    if format_name(export.media_type) is not None:
        return None
    base = _bare(export.media_type)
    named = repr(base) if base in _NAMED else "an unrecognised media type"
    return (
        "a portability copy must be structured and machine-readable (UK GDPR Art. 20(1)), "
        f"not {named}: JSON, CSV, TSV or XML ({', '.join(sorted(MACHINE_READABLE))}, or "
        "an application/ +json or +xml type)"
    )


def portable_copy_problem(asked: Iterable[Category], export: ExportReference) -> str | None:
    """Why ``export`` cannot answer a portability task that asked for ``asked``, as the
    reason the worker records and the connector runner answers (``export_not_...``), or
    None. A copy that says no categories (a connector of before 0.38) is taken as asked;
    one holding another category came from a connector ignoring ``Export.portability``
    (a credit file about persons financially linked to the subject with it)."""
    if (problem := portable_problem(export)) is not None:
        return f"export_not_machine_readable: {problem}"
    if export.categories is None:
        return None
    if extra := sorted(c.value for c in set(export.categories) - set(asked)):
        return (
            f"export_not_portable: the copy holds {', '.join(extra)}, which a portability "
            "request does not cover (copy the task's categories only: docs/connectors.md)"
        )
    return None
