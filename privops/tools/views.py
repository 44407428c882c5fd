"""How privops' answers read to a person: tables, yes/no, an access response in words.

Shared by the CLI and the demo (the demo sits below the CLI, so this lives here). Tables
fold a long word onto the next line instead of cutting it with an ellipsis: a DPO on an
80-column terminal must still read `request_received` and `(HMRC: VAT Act 1994 ...)` whole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from rich.markup import escape
from rich.table import Table


def table(*headers: str, title: str | None = None, **options: Any) -> Table:
    """A table whose every column wraps, folding words longer than the column."""
    out = Table(title=title, **options)
    for header in headers:
        out.add_column(header, overflow="fold")
    return out


def grid() -> Table:
    """Label/value rows without borders (a summary); values wrap like table cells."""
    out = Table.grid(padding=(0, 2))
    out.add_column(style="bold", overflow="fold")
    out.add_column(overflow="fold")
    return out


def yes_no(value: object) -> str:
    return "yes" if value else "no"


def cell(value: Any, default: str = "-") -> str:
    """A value from the worker's JSON as table text: markup escaped, blanks shown as a dash."""
    return default if value is None or value == "" else escape(str(value))


def _words(value: Any) -> str:
    return cell(value).replace("_", " ")


def _listing(items: Iterable[str], empty: str = "none") -> str:
    """One item a line: a section of a response reads as a list, not a paragraph."""
    return "\n".join(items) or empty


def exports_table(exports: Iterable[Mapping[str, Any]], title: str = "Exports") -> Table | None:
    """The systems' export answers (where the copy is, how many records, its checksum);
    a copy its system says shows other people (the DPO reviews it), or the DPO redacted
    or withheld, says so."""
    rows = [e for e in exports if e]
    if not rows:
        return None
    out = table("system", "records", "location", "checksum", title=title)
    for e in rows:
        marks = [word.replace("_", " ") for word in _MARKS if e.get(word)]
        system = cell(e.get("system")) + "".join(f" ({word})" for word in marks)
        out.add_row(
            system, cell(e.get("record_count")), cell(e.get("location")), cell(e.get("checksum"))
        )
    return out


_MARKS: Final = ("shows_others", "redacted", "withheld")


def task_exports(tasks: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each task's export answer with its system, as the worker's request JSON holds them
    (``redacted``: the DPO's redacted copy replaced the system's; ``shows_others``: the
    system's own copy said it shows other people, so the DPO reviews it)."""
    return [
        {
            "system": t.get("system"),
            **t["export"],
            "redacted": bool(t.get("redacted")),
            "shows_others": bool(_own_copy(t).get("shows_others")),
        }
        for t in tasks
        if isinstance(t.get("export"), Mapping)
    ]


def _own_copy(task: Mapping[str, Any]) -> Mapping[str, Any]:
    original = task.get("original_export")
    return original if isinstance(original, Mapping) else task["export"]


Item = Mapping[str, Any]


def _purpose(p: Item) -> str:
    name = cell(p.get("description") or p.get("name"))
    return f"{name} (lawful basis: {_words(p.get('lawful_basis'))})"


def _category(c: Item) -> str:
    retention = c.get("retention") or {}
    kept = f", kept {cell(retention.get('summary'))}" if retention else ""
    held = ", ".join(cell(s) for s in c.get("systems") or [])
    return f"{_words(c.get('category'))} (in {held or '-'}{kept})"


def _recipient(r: Item) -> str:
    categories = ", ".join(_words(c) for c in r.get("categories") or [])
    return f"{cell(r.get('name'))} ({cell(r.get('country'))}): {categories}"


def _transfer(t: Item) -> str:
    where = f"{cell(t.get('recipient'))} ({cell(t.get('country'))})"
    return f"{where}, safeguard: {cell(t.get('safeguard'))}"


def _source(s: Item) -> str:
    return f"{cell(s.get('source'))} (for {_words(s.get('purpose'))})"


def _automated(a: Item) -> str:
    kind = "solely automated" if a.get("solely_automated") else "not solely automated"
    return f"{cell(a.get('description'))} ({kind})"


def _each(key: str, line: Callable[[Item], str], empty: str = "none") -> Callable[[Item], str]:
    """A section listing the manifest's `key` entries, one a line."""
    return lambda manifest: _listing((line(x) for x in manifest.get(key) or []), empty)


def _rights(manifest: Item) -> str:
    return ", ".join(_words(r.get("right")) for r in manifest.get("rights") or []) or "-"


def _copy(manifest: Item) -> str:
    totals = manifest.get("totals") or {}
    records, files = cell(totals.get("records"), "0"), cell(totals.get("exports"), "0")
    text = f"{records} record(s) in {files} file(s)"
    missing = manifest.get("missing_exports") or []
    if missing:
        text += "; still to come from " + ", ".join(cell(m) for m in missing)
    return text


def _privacy_records(manifest: Item) -> str:
    """privops' own records of the subject (manifest version 2 on): their choices, the
    subject-wide flags and the systems that know them; "-" for an older manifest."""
    own = manifest.get("privacy_records")
    if not isinstance(own, Mapping):
        return "-"
    lines = [
        f"{_words(p.get('purpose'))} by {cell(p.get('channel'))}: {_words(p.get('status'))} "
        f"({_words(p.get('basis'))}, from {cell(p.get('source'))})"
        for p in own.get("preferences") or []
    ]
    lines += [_words(f.get("flag")) for f in own.get("flags") or []]
    known = ", ".join(cell(k.get("system")) for k in own.get("known_in") or [])
    if known:
        lines.append(f"known in {known}")
    requests = own.get("rights_requests")
    if isinstance(requests, Mapping) and requests.get("count"):
        lines.append(f"{cell(requests.get('count'))} other request(s) on record")
    return _listing(lines, "no choices, flags or identifiers")


_SECTIONS: tuple[tuple[str, Callable[[Item], str]], ...] = (
    ("Purposes and lawful basis", _each("purposes", _purpose)),
    ("Data held and how long it is kept", _each("categories", _category)),
    ("privops' own records", _privacy_records),
    ("Recipients", _each("recipients", _recipient)),
    ("Transfers outside the UK/EEA", _each("transfers", _transfer)),
    (
        "Where data not from the subject came from",
        _each("sources", _source, "all from the subject"),
    ),
    ("Automated decisions and profiling", _each("automated_decisions", _automated)),
    ("The subject's rights", _rights),
    ("The copy of the data", _copy),
)


def art15_sections(manifest: Item) -> list[tuple[str, str]]:
    """The access response's Art. 15 information as (section, what it says) in words.

    Markup-escaped text; an empty section says so ("none") instead of disappearing, since
    a missing section in a response is itself something the DPO must see.
    """
    return [(title, render(manifest)) for title, render in _SECTIONS]


def art15_table(manifest: Item) -> Table:
    out = grid()
    for title, text in art15_sections(manifest):
        out.add_row(title, text)
    return out
