"""The reference store: one fake system's SQLite file, and what it does with each task.

- lookups: a subject's rows are found by the task's identifiers and by its
  ``previous_identifiers``; a row found only by an earlier email or phone, which may
  be someone else's by now (a reassigned number), is taken only when its owner key
  says it is the subject's (``ReferenceStore._owned``; docs/connectors.md).
- erase: rows of the asked categories (all the system's categories when none) are
  DELETED, except categories privops says to keep, which stay; when contact data is
  erased but a row is kept (an order kept as a financial record), the row's own contact
  columns (delivery name/address/phone, a recording's caller number) are nulled.
  Invoices keep their billing name and address: the law requires them on the record.
  A system's own hold (CCTV clips under an open investigation) also keeps rows.
- restrict / lift_restriction: set / clear ``restricted`` on every row of the subject; a
  restrict for a marketing objection is kept apart (``_objections``), never lifted.
- rectify: changes (the data map's fields: name, email, a credit account's overdue
  balance in pounds...) applied where the system has them (``TableSpec.rectify``); a
  supplementary statement (``statement:<category>``, Art. 16) recorded in
  ``_statements`` for a category the system holds, exported with the rows and erased
  with the category.
- export: every row of the subject as JSON, written and reported where
  :class:`ExportPlace` says (below the system's export root); a request id that is not
  path-safe raises :class:`UnsafeRequestId` before anything is read or written. With
  an access request's search details (CCTV: privops.core.search), also the rows of a
  searched table in the day, hours and place given, whoever they are filed under,
  each with its ``SearchSpec.shown`` columns only (``found_by_search``). Each
  file is recorded against the subject (``_exports``), so that an erase deletes it: an
  access request's export is a plaintext copy of every row, and it outlived the rows
  (review, session 26).
- hold / release: what legal holds keep of a subject, recorded as the hold record says
  it (``_legal_hold_subjects``: categories, hold ids, identifiers) and by the system's
  own keys (``_legal_holds``: the keys of the subject's rows, by category). The keys
  are found as an erase finds them but wider: a row an earlier email or phone finds
  that names no owner (a call under the subject's old number) is held too, where an
  erase leaves it (a stranger's row kept is the lesser harm; one naming another owner
  is still not taken). Each deletion by age first finds them again from the
  identifiers, so rows the subject got since under a new key are held too; a hold
  whose identifiers did not open keeps the keys it had.
- preserve / end_preservation: an open access request's search details, recorded
  (``_preserved_searches``) until the request is finished; deletion by age keeps the
  rows of a searched table that any of them finds, exactly the rows the export's search
  would (``_search_terms``), whoever they are filed under.
- purge_expired: deletion by age. Rows collected (``TableSpec.collected``) longer ago than
  their category's period are DELETED, except rows a legal hold keeps for their
  category, rows the system's own hold keeps (footage under an investigation not known
  to be closed, or one concluded within the data map's days after), and restricted rows
  (Art. 18: kept, not used). A row with no collection time, or one SQLite cannot read
  as a time, is never deleted by age: counted in the report (``PurgeReport.undated``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from privops.connectors.reference.exports import ExportPlace
from privops.connectors.reference.people import FakeCustomer
from privops.connectors.reference.rows import seed_rows
from privops.connectors.reference.specs import SPECS, SearchSpec, StoreSpec, TableSpec
from privops.connectors.retention import AgeLimit
from privops.core import search
from privops.core.amounts import parse_pounds
from privops.core.datamap import STATEMENT_PREFIX
from privops.core.errors import DomainError
from privops.core.identity import normalise_email, normalise_phone
from privops.core.records import ExportReference, Retention
from privops.core.vocab import Category, SearchDetail, System
from privops.core.workflow import AMOUNT_FIELDS

# A SET clause ("a = ?, b = ?") and its values.
_Assignments = tuple[str, tuple[Any, ...]]

LOCK_TIMEOUT_SECONDS: Final = 10.0
"""How long a call waits for another's write to end (a deletion by age holds the file
for its whole round) before SQLite answers "database is locked" (``is_busy``)."""


@dataclass(frozen=True)
class EraseReport:
    found: bool
    deleted: int = 0
    """Rows deleted, and the subject's export files (``exports_deleted`` of them)."""
    anonymised: int = 0
    kept: dict[Category, str] = field(default_factory=dict)
    exports_deleted: int = 0


_STATEMENTS_DDL = (
    "CREATE TABLE IF NOT EXISTS _statements"
    " (key TEXT NOT NULL, category TEXT NOT NULL, statement TEXT NOT NULL,"
    " recorded_at TEXT NOT NULL, PRIMARY KEY (key, category, statement))"
)

_EXPORTS_DDL = (
    "CREATE TABLE IF NOT EXISTS _exports"
    " (key TEXT NOT NULL, request_id TEXT NOT NULL, path TEXT NOT NULL,"
    " PRIMARY KEY (key, request_id))"
)
# When each copy was made (deletion by age, ``access_exports``): a table of its own, so a
# store written by 0.36 still takes a 0.35 connector's three-column inserts (a rollback).
_EXPORT_TIMES_DDL = (
    "CREATE TABLE IF NOT EXISTS _export_times (path TEXT PRIMARY KEY, made_at TEXT NOT NULL)"
)
SEARCHED_KEY: Final = "search:"
"""The ``_exports`` key of a copy a search made for someone the system has no key of
(``search:<request id>``): no erasure finds it, deletion by age does."""


def _exports_table(db: sqlite3.Connection) -> None:
    """``_exports`` and ``_export_times`` (a store made before 0.36 has neither, or the
    first only)."""
    db.execute(_EXPORTS_DDL)
    db.execute(_EXPORT_TIMES_DDL)


_HOLDS_DDL = (
    "CREATE TABLE IF NOT EXISTS _legal_holds"
    " (subject_id TEXT NOT NULL, key TEXT NOT NULL, category TEXT NOT NULL,"
    " hold_ids TEXT NOT NULL, PRIMARY KEY (subject_id, key, category))"
)

# The hold records themselves (categories and hold ids comma-separated, identifiers and
# previous identifiers JSON): ``_legal_holds`` is derived from them.
_HOLD_SUBJECTS_DDL = (
    "CREATE TABLE IF NOT EXISTS _legal_hold_subjects"
    " (subject_id TEXT PRIMARY KEY, categories TEXT NOT NULL, hold_ids TEXT NOT NULL,"
    " identifiers TEXT NOT NULL, previous TEXT NOT NULL)"
)


# Open access requests' search details (JSON), kept from deletion by age until the
# request is finished (``preserve``).
_PRESERVED_DDL = (
    "CREATE TABLE IF NOT EXISTS _preserved_searches"
    " (request_id TEXT PRIMARY KEY, details TEXT NOT NULL)"
)


@dataclass(frozen=True)
class PurgeReport:
    """What one deletion by age deleted: rows by table, and the supplementary statements
    left with no data of their category to complete; and the rows it cannot tell the
    age of (``undated``, by table: no collection time, or one that is not a time),
    which it never deletes."""

    deleted: dict[str, int] = field(default_factory=dict)
    statements: int = 0
    undated: dict[str, int] = field(default_factory=dict)
    # Copies made for access requests, past the data map's ``access_exports`` days.
    exports: int = 0

    @property
    def total(self) -> int:
        return sum(self.deleted.values()) + self.statements + self.exports


Previous = Mapping[str, Sequence[str]] | None
"""A task's ``previous_identifiers``: the values the system knew the subject by before."""


REASSIGNABLE: Final = frozenset({"email", "phone"})
"""Identifier kinds handed to another person once the holder gives them up (a carrier
reassigns a number, a provider may recycle an address): an earlier one may be a
stranger's now. A system's own ids never are."""

OWNER_COLUMNS: Final = ("customer_id", "contact_id")
"""The columns that say whose a row is, strongest first: the customer number links a
person's records across systems (a second contact record under it is the same
person's). Telephony's rows have none: a caller record (``caller_ref``) is the record
of a number, and a call says which number called, not who."""


def _earlier(previous: Previous) -> Iterator[tuple[str, str]]:
    for name, values in (previous or {}).items():
        for value in values:
            yield name, value


def _owner_columns(table: TableSpec) -> tuple[str, ...]:
    held = {part.split()[0] for part in table.columns.split(",")}
    return tuple(column for column in OWNER_COLUMNS if column in held)


def _normalised(name: str, value: str) -> str | None:
    try:
        if name == "email":
            return normalise_email(value)
        if name == "phone":
            return normalise_phone(value)
    except DomainError:
        return None
    return value.strip() or None


def _stored(field_name: str, column: str, value: str) -> str | int:
    """A rectified value as the column keeps it: amounts (``*_pence``) arrive in pounds
    ("120.50", "£1,200"; ``privops.core.amounts``: the worker checked them the same way,
    a balance may be negative). Raises ValueError, the value not repeated."""
    if not column.endswith("_pence"):
        return value.strip()
    try:
        return parse_pounds(value, signed=AMOUNT_FIELDS.get(field_name, False))
    except ValueError as exc:
        raise ValueError(f"rectify: the new {field_name} is {exc}") from None


class ReferenceStore:
    """A fake system's SQLite file. Synchronous and quick; connectors call it in a thread."""

    def __init__(self, spec: StoreSpec, path: Path) -> None:
        self.spec = spec
        self.path = path

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=LOCK_TIMEOUT_SECONDS)) as db:
            db.row_factory = sqlite3.Row
            with db:
                yield db

    def exists(self) -> bool:
        if not self.path.exists():
            return False
        with self._db() as db:
            row = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='_meta'"
            ).fetchone()
            return row is not None

    # --- seeding ---------------------------------------------------------------------
    def create(self, customers: Sequence[FakeCustomer], *, reset: bool = False) -> bool:
        """Create and seed the file unless it exists (``reset`` recreates it). True if seeded."""
        if reset and self.path.exists():
            self.path.unlink()
        if self.exists():
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            for table in self.spec.tables:
                db.execute(
                    f"CREATE TABLE {table.name} ({table.columns},"
                    " restricted INTEGER NOT NULL DEFAULT 0)"
                )
                for column in {self.spec.key, *table.lookups.values()}:
                    db.execute(
                        f"CREATE INDEX IF NOT EXISTS ix_{table.name}_{column}"
                        f" ON {table.name} ({column})"
                    )
            for ddl in self.spec.extra_ddl:
                db.execute(ddl)
            for table_name, row in seed_rows(self.spec.system, customers):
                cols = ", ".join(row)
                marks = ", ".join("?" * len(row))
                db.execute(
                    f"INSERT INTO {table_name} ({cols}) VALUES ({marks})",  # noqa: S608
                    tuple(row.values()),
                )
            db.execute("CREATE TABLE _meta (key TEXT PRIMARY KEY, value TEXT)")
            db.execute(
                "INSERT INTO _meta VALUES ('customers', ?), ('system', ?)",
                (str(len(customers)), self.spec.system.value),
            )
        return True

    # --- lookups ---------------------------------------------------------------------
    def _resolve(
        self,
        db: sqlite3.Connection,
        identifiers: Mapping[str, str],
        previous: Previous = None,
        *,
        wide: bool = False,
    ) -> list[str]:
        """The subject's keys: those their system ids (current and earlier) find; those
        their current email or phone finds, but a row naming another owner once the ids
        told who the subject is (``_owned``, rows naming no owner taken: the subject's
        number's calls); and those an earlier email or phone finds that name the
        subject's owner key. ``wide`` (a legal hold, where keeping a stranger's row is
        the lesser harm): an earlier email or phone takes the rows naming no owner too,
        as a current one does (calls under the subject's old number).

        A system may hold a number the subject has since replaced, as its current one
        (it was never told): a row under it that names another owner is the number's
        next holder's (second review, session 27: the subject's erasure deleted his CRM
        record and his export listed it)."""
        earlier = list(_earlier(previous))
        fixed = [(n, v) for n, v in (*identifiers.items(), *earlier) if n not in REASSIGNABLE]
        keys = self._keys(db, fixed)
        current = [(name, value) for name, value in identifiers.items() if name in REASSIGNABLE]
        if current and keys:
            keys |= self._owned(db, identifiers, keys, current, unowned=True)
        elif current:  # nothing to tell owners by: the email or phone is all there is
            keys |= self._keys(db, current)
        once = [(name, value) for name, value in earlier if name in REASSIGNABLE]
        if once:
            keys |= self._owned(db, identifiers, keys, once, unowned=wide)
        return sorted(keys)

    def _matches(self, lookups: Sequence[tuple[str, str]]) -> Iterator[tuple[TableSpec, str, str]]:
        """(table, column, normalised value) for each (name, value) a table answers."""
        for name, raw in lookups:
            value = _normalised(name, raw) if raw else None
            if value is None:
                continue
            for table in self.spec.tables:
                column = table.lookups.get(name)
                if column is not None:
                    yield table, column, value

    def _keys(self, db: sqlite3.Connection, lookups: Sequence[tuple[str, str]]) -> set[str]:
        keys: set[str] = set()
        for table, column, value in self._matches(lookups):
            sql = f"SELECT DISTINCT {self.spec.key} FROM {table.name} WHERE {column} = ?"  # noqa: S608
            keys.update(r[0] for r in db.execute(sql, (value,)) if r[0])
        return keys

    def _owned(
        self,
        db: sqlite3.Connection,
        identifiers: Mapping[str, str],
        keys: set[str],
        earlier: Sequence[tuple[str, str]],
        *,
        unowned: bool = False,
    ) -> set[str]:
        """The keys of rows an earlier email or phone finds that are the subject's: their
        owner (the first of ``OWNER_COLUMNS`` they fill) is one the subject is known by.
        ``unowned``: rows naming no owner are taken too (for a current value, and for
        an earlier one when a legal hold asks: ``_resolve``'s ``wide``).

        A row naming another owner is someone else's, who holds the value now (review,
        session 27: the subject's erasure deleted the CRM record of the man their old
        number passed to). A row with no owner (a call recording) would be the
        subject's only if dated while they held the value, which a task cannot tell (it
        carries values without dates): not taken either; nor is one whose owner cannot
        be told against the subject's (none known)."""
        known = self._owners(db, identifiers, keys)
        owned: set[str] = set()
        for table, column, value in self._matches(earlier):
            owners = _owner_columns(table)
            if not owners and not unowned:
                continue
            wanted = ", ".join((self.spec.key, *owners))
            sql = f"SELECT {wanted} FROM {table.name} WHERE {column} = ?"  # noqa: S608
            for key, *values in db.execute(sql, (value,)):
                owner = next(((c, v) for c, v in zip(owners, values, strict=True) if v), None)
                # A row whose only owner is the system's own key (a CRM lead with no
                # customer number) names no one else: for a current value it is taken
                # (third review, session 27: the subject's own lead was left).
                own_key = owner is None or owner[0] == self.spec.key
                if key and (owner in known or (own_key and unowned)):
                    owned.add(key)
        return owned

    def _owners(
        self, db: sqlite3.Connection, identifiers: Mapping[str, str], keys: set[str]
    ) -> set[tuple[str, str]]:
        """(column, value) of every owner key the subject is known by: the task's own (a
        customer_id it carries) and those of the rows the current identifiers found."""
        known: set[tuple[str, str]] = set()
        for table in self.spec.tables:
            owners = _owner_columns(table)
            for name, value in identifiers.items():
                column = table.lookups.get(name)
                if column in owners and value.strip():
                    known.add((column, value.strip()))
            if not owners or not keys:
                continue
            ordered = sorted(keys)
            sql = f"SELECT {', '.join(owners)} FROM {table.name} WHERE {self._where(ordered)}"  # noqa: S608
            for row in db.execute(sql, ordered):
                known.update((c, v) for c, v in zip(owners, row, strict=True) if v)
        return known

    def resolve(self, identifiers: Mapping[str, str], previous: Previous = None) -> list[str]:
        """The system's own keys for the subject these identifiers (and earlier ones) name."""
        with self._db() as db:
            return self._resolve(db, identifiers, previous)

    def _where(self, keys: Sequence[str]) -> str:
        return f"{self.spec.key} IN ({', '.join('?' * len(keys))})"

    def rows(
        self, identifiers: Mapping[str, str], previous: Previous = None
    ) -> dict[str, list[dict[str, Any]]]:
        """Every row of the subject, by table (tests, export)."""
        with self._db() as db:
            keys = self._resolve(db, identifiers, previous)
            return self._rows_of(db, keys)

    def _rows_of(
        self, db: sqlite3.Connection, keys: Sequence[str]
    ) -> dict[str, list[dict[str, Any]]]:
        if not keys:
            return {}
        out: dict[str, list[dict[str, Any]]] = {}
        for table in self.spec.tables:
            sql = f"SELECT * FROM {table.name} WHERE {self._where(keys)}"  # noqa: S608
            out[table.name] = [dict(r) for r in db.execute(sql, keys)]
        return out

    def count(self, table: str) -> int:
        with self._db() as db:
            return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608

    # --- actions ---------------------------------------------------------------------
    def erase(
        self,
        identifiers: Mapping[str, str],
        categories: Sequence[Category] = (),
        keep: Sequence[Retention] = (),
        previous: Previous = None,
    ) -> EraseReport:
        with self._db() as db:
            keys = self._resolve(db, identifiers, previous)
            if not keys:
                return EraseReport(found=False)
            where = self._where(keys)
            keep_ground = {r.category: r.ground for r in keep}
            erase = set(categories or self.spec.categories) - set(keep_ground)
            deleted = anonymised = 0
            kept: dict[Category, str] = {}
            for table in self.spec.tables:
                count_sql = f"SELECT count(*) FROM {table.name} WHERE {where}"  # noqa: S608
                if not db.execute(count_sql, keys).fetchone()[0]:
                    continue
                if table.category in erase:
                    condition = where
                    if table.hold:
                        held_sql = f"{count_sql} AND ({table.hold})"
                        if db.execute(held_sql, keys).fetchone()[0]:
                            kept[table.category] = self.spec.hold_reason
                        condition = f"{where} AND NOT coalesce(({table.hold}), 0)"
                    cur = db.execute(f"DELETE FROM {table.name} WHERE {condition}", keys)  # noqa: S608
                    deleted += cur.rowcount
                    continue
                if table.category in keep_ground:
                    kept[table.category] = keep_ground[table.category]
                if Category.contact in erase and table.contact_columns:
                    nulls = ", ".join(f"{c} = NULL" for c in table.contact_columns)
                    any_set = " OR ".join(f"{c} IS NOT NULL" for c in table.contact_columns)
                    sql = f"UPDATE {table.name} SET {nulls} WHERE {where} AND ({any_set})"  # noqa: S608
                    anonymised += db.execute(sql, keys).rowcount
            deleted += _delete_statements(db, keys, erase)
            exports = self._delete_exports(db, keys)
            return EraseReport(True, deleted + exports, anonymised, kept, exports)

    def _delete_exports(self, db: sqlite3.Connection, keys: Sequence[str]) -> int:
        """Delete the subject's export files (every one, whatever the erase keeps: what
        retention keeps is the rows, not a copy made for the subject). Files deleted."""
        _exports_table(db)
        where = f"key IN ({', '.join('?' * len(keys))})"
        sql = f"SELECT DISTINCT path FROM _exports WHERE {where}"  # noqa: S608
        paths = [Path(row[0]) for row in db.execute(sql, keys)]
        deleted = 0
        for path in paths:
            if path.exists():
                path.unlink()
                deleted += 1
        db.execute(f"DELETE FROM _exports WHERE {where}", keys)  # noqa: S608
        db.executemany("DELETE FROM _export_times WHERE path = ?", [(str(p),) for p in paths])
        return deleted

    def set_restricted(
        self, identifiers: Mapping[str, str], restricted: bool, previous: Previous = None
    ) -> int | None:
        """Rows flagged (or cleared); None when the identifiers match nothing."""
        flag = (int(restricted),)
        return self._update(identifiers, lambda _table: ("restricted = ?", flag), previous=previous)

    def object_to_marketing(
        self, identifiers: Mapping[str, str], previous: Previous = None
    ) -> int | None:
        """Record the subject's objection to direct marketing apart from any restriction
        (``_objections``: lifting a restriction never clears it). Keys recorded; None
        when the identifiers match nothing."""
        with self._db() as db:
            keys = self._resolve(db, identifiers, previous)
            if not keys:
                return None
            db.execute("CREATE TABLE IF NOT EXISTS _objections (key TEXT PRIMARY KEY)")
            db.executemany("INSERT OR IGNORE INTO _objections VALUES (?)", [(k,) for k in keys])
            return len(keys)

    def object_to_purposes(
        self, identifiers: Mapping[str, str], purposes: Sequence[str], previous: Previous = None
    ) -> int | None:
        """Record an upheld objection to processing for ``purposes`` (Art. 21(1)) apart
        from any restriction (``_purpose_objections``: a lift never clears it; the rest of
        the processing goes on). Keys recorded; None when the identifiers match nothing."""
        with self._db() as db:
            keys = self._resolve(db, identifiers, previous)
            if not keys:
                return None
            db.execute(
                "CREATE TABLE IF NOT EXISTS _purpose_objections "
                "(key TEXT, purpose TEXT, PRIMARY KEY (key, purpose))"
            )
            db.executemany(
                "INSERT OR IGNORE INTO _purpose_objections VALUES (?, ?)",
                [(k, p) for k in keys for p in purposes],
            )
            return len(keys)

    def objected_purposes(self, identifiers: Mapping[str, str]) -> set[str]:
        """The purposes the subject's data may no longer be used for here (an upheld
        objection): what a report or a training sample checks."""
        return {row[0] for row in self._marks(identifiers, "_purpose_objections", "purpose")}

    def objects_to_marketing(self, identifiers: Mapping[str, str]) -> bool:
        """Whether the subject objected to direct marketing (what a campaign checks)."""
        return bool(self._marks(identifiers, "_objections", "1"))

    def _marks(
        self, identifiers: Mapping[str, str], table: str, column: str
    ) -> list[tuple[Any, ...]]:
        """``column`` of ``table``'s rows for the subject's keys; none while the table,
        made by the first mark, does not exist yet. Both names are this module's own."""
        with self._db() as db:
            keys = self._resolve(db, identifiers)
            exists = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (table,)
            ).fetchone()
            if not keys or exists is None:
                return []
            marks = ", ".join("?" * len(keys))
            sql = f"SELECT {column} FROM {table} WHERE key IN ({marks})"  # noqa: S608
            return list(db.execute(sql, keys))

    def rectify(
        self, identifiers: Mapping[str, str], changes: Mapping[str, str], previous: Previous = None
    ) -> int | None:
        """Rows updated and statements recorded; None when the identifiers match nothing.
        Raises ValueError on bad input, before anything is written."""
        clean: dict[str, str] = {}
        statements: dict[Category, str] = {}
        held = {c.value: c for c in self.spec.categories}
        for name, value in changes.items():
            if name.startswith(STATEMENT_PREFIX):
                category = held.get(name.removeprefix(STATEMENT_PREFIX))
                if category is not None and value.strip():
                    statements[category] = value.strip()
            elif name in ("email", "phone"):
                normal = _normalised(name, value)
                if normal is None:
                    raise ValueError(f"rectify: the new {name} is not valid")
                clean[name] = normal
            else:
                clean[name] = value.strip()

        postcode = clean.pop("postcode", None)
        if "address" in clean:
            postcode = None  # a whole new address says its postcode already
        sets_by_table: dict[str, dict[str, str | int]] = {
            table.name: {
                table.rectify[f]: _stored(f, table.rectify[f], v)
                for f, v in clean.items()
                if f in table.rectify
            }
            for table in self.spec.tables
        }

        def assignments(table: TableSpec) -> _Assignments | None:
            sets = sets_by_table[table.name]
            return (", ".join(f"{c} = ?" for c in sets), tuple(sets.values())) if sets else None

        def postcodes(db: sqlite3.Connection, table: TableSpec, where: str, keys: list[str]) -> int:
            column = table.rectify.get("address")
            if postcode is None or column is None:
                return 0
            return _new_postcode(db, table.name, column, where, keys, postcode)

        def record(db: sqlite3.Connection, keys: list[str]) -> int:
            # A statement completes data the subject has: none for a category of which
            # the system holds nothing of theirs (third review, session 27).
            about = {c: t for c, t in statements.items() if self._holds(db, keys, c)}
            return _record_statements(db, keys, about) if about else 0

        # One lookup and one transaction for all: the email may change here.
        return self._update(
            identifiers, assignments, also=postcodes, previous=previous, then=record
        )

    def _holds(self, db: sqlite3.Connection, keys: Sequence[str], category: Category) -> bool:
        """Whether any of the subject's ``keys`` has a row of ``category`` here."""
        if not keys:
            return False
        for table in self.spec.tables:
            if table.category is category:
                sql = f"SELECT 1 FROM {table.name} WHERE {self._where(list(keys))} LIMIT 1"  # noqa: S608
                if db.execute(sql, list(keys)).fetchone() is not None:
                    return True
        return False

    def statements(self, identifiers: Mapping[str, str]) -> list[dict[str, Any]]:
        """The subject's supplementary statements (tests, export)."""
        with self._db() as db:
            return _statements_of(db, self._resolve(db, identifiers))

    def _update(
        self,
        identifiers: Mapping[str, str],
        assignments: Callable[[TableSpec], _Assignments | None],
        also: Callable[[sqlite3.Connection, TableSpec, str, list[str]], int] | None = None,
        previous: Previous = None,
        then: Callable[[sqlite3.Connection, list[str]], int] | None = None,
    ) -> int | None:
        """Rows updated, table by table; None when the identifiers match nothing.

        ``assignments`` gives a table's SET clause and its values, or None to leave it alone;
        ``also`` updates a table further in the same transaction (rows it changed);
        ``then`` writes once more for the subject's keys, in it too (rows it wrote).
        """
        with self._db() as db:
            keys = self._resolve(db, identifiers, previous)
            if not keys:
                return None
            total = 0
            where = self._where(keys)
            for table in self.spec.tables:
                update = assignments(table)
                if update is not None:
                    sets, values = update
                    sql = f"UPDATE {table.name} SET {sets} WHERE {where}"  # noqa: S608
                    total += db.execute(sql, (*values, *keys)).rowcount
                if also is not None:
                    total += also(db, table, where, keys)
            if then is not None:
                total += then(db, keys)
            return total

    # --- legal holds and deletion by age -----------------------------------------------
    def hold(
        self,
        subject_id: str,
        categories: Sequence[Category],
        hold_ids: Sequence[str],
        identifiers: Mapping[str, str],
        previous: Previous = None,
    ) -> list[str]:
        """Record that legal holds keep ``categories`` of ``subject_id``: replaces what
        was recorded for them. Their rows are found as an erase finds them, but wider
        (``_resolve``'s ``wide``), and found again at each deletion by age; with no
        identifiers (their key gone), the keys recorded before stay, with these
        categories, and are not looked for again. The keys held."""
        earlier = {name: list(values) for name, values in (previous or {}).items() if values}
        with self._db() as db:
            _begin(db)
            if identifiers or earlier:
                keys = self._resolve(db, identifiers, earlier, wide=True)
            else:
                sql = "SELECT DISTINCT key FROM _legal_holds WHERE subject_id = ?"
                keys = sorted(row[0] for row in db.execute(sql, (subject_id,)))
            held = ",".join(sorted(hold_ids))
            kinds = sorted({c.value for c in categories})
            db.execute(
                "INSERT OR REPLACE INTO _legal_hold_subjects VALUES (?, ?, ?, ?, ?)",
                (
                    subject_id,
                    ",".join(kinds),
                    held,
                    json.dumps(dict(identifiers), sort_keys=True),
                    json.dumps(earlier, sort_keys=True),
                ),
            )
            db.execute("DELETE FROM _legal_holds WHERE subject_id = ?", (subject_id,))
            _record_held(db, subject_id, keys, kinds, held)
            return keys if categories else []

    def _find_held_again(self, db: sqlite3.Connection) -> None:
        """Each held subject's keys found again from the hold's identifiers, added to
        those recorded: rows the subject got since under a new key (a second contact
        record under their customer number) are held too. None is dropped: a row that
        no longer answers the identifiers (its email rectified here before privops sent
        the new one) stays held until the next hold record says otherwise."""
        for row in db.execute("SELECT * FROM _legal_hold_subjects").fetchall():
            ids, earlier = json.loads(row["identifiers"]), json.loads(row["previous"])
            if ids or earlier:
                keys = self._resolve(db, ids, earlier, wide=True)
                categories = row["categories"].split(",")
                _record_held(db, row["subject_id"], keys, categories, row["hold_ids"])

    def release(self, subject_id: str) -> int:
        """No legal hold keeps anything of ``subject_id`` any more. Rows of holds dropped."""
        with self._db() as db:
            _begin(db)
            dropped = 0
            for table in ("_legal_holds", "_legal_hold_subjects"):
                sql = f"DELETE FROM {table} WHERE subject_id = ?"  # noqa: S608
                dropped += db.execute(sql, (subject_id,)).rowcount
            return dropped

    def holding(self) -> list[str]:
        """The subjects a legal hold keeps something of here (found here or not yet)."""
        with self._db() as db:
            _hold_tables(db)
            sql = (
                "SELECT subject_id FROM _legal_hold_subjects"
                " UNION SELECT subject_id FROM _legal_holds ORDER BY subject_id"
            )
            return [row[0] for row in db.execute(sql)]

    def preserve(self, request_id: str, details: Mapping[str, str]) -> str | None:
        """Keep what ``details`` find from deletion by age until ``end_preservation``;
        with no details (they did not open), what was kept for the request stays. Why
        nothing is kept, when nothing is: the system has no table searched by details,
        or no search can be made by them (naming none of them). Never raises for those:
        a preservation that cannot be applied would hold back every deletion by age."""
        if not details:
            return None
        if not any(t.searched for t in self.spec.tables):
            return "this system has no table searched by details"
        if found := search.problem(details, date.max):
            return f"search details that cannot be searched by: {found}"
        with self._db() as db:
            _begin(db)
            db.execute(
                "INSERT OR REPLACE INTO _preserved_searches VALUES (?, ?)",
                (request_id, json.dumps(dict(details), sort_keys=True)),
            )
        return None

    def end_preservation(self, request_id: str) -> int:
        """What ``request_id``'s search finds follows the periods again. Rows dropped."""
        with self._db() as db:
            _begin(db)
            sql = "DELETE FROM _preserved_searches WHERE request_id = ?"
            return db.execute(sql, (request_id,)).rowcount

    def preserving(self) -> list[str]:
        """The requests whose search finds are kept from deletion by age here."""
        with self._db() as db:
            _hold_tables(db)
            sql = "SELECT request_id FROM _preserved_searches ORDER BY request_id"
            return [row[0] for row in db.execute(sql)]

    def legal_holds(self) -> list[dict[str, Any]]:
        """Every recorded hold: subject id, key, category, hold ids (tests, inspection)."""
        with self._db() as db:
            _hold_tables(db)
            sql = "SELECT * FROM _legal_holds ORDER BY subject_id, key, category"
            return [dict(row) for row in db.execute(sql)]

    def purge_expired(
        self,
        now: datetime,
        limits: Mapping[Category, AgeLimit],
        exports_kept: timedelta | None = None,
    ) -> PurgeReport:
        """Delete the rows past their category's period at ``now`` (``limits``: the data
        map's periods from collection, ``retention.age_limits``), but those a legal hold,
        the system's own hold or a restriction keeps. A category without a limit, and a
        table without a collection column, are left alone; a row whose collection time
        is missing or not a time SQLite reads is kept, and counted. And the copies made
        for access requests longer than ``exports_kept`` ago (``retention.export_limit``;
        None: kept). One transaction, the held subjects' keys found again first
        (``_find_held_again``)."""
        deleted: dict[str, int] = {}
        undated: dict[str, int] = {}
        with self._db() as db:
            _begin(db)
            db.execute(_STATEMENTS_DDL)
            exports = 0 if exports_kept is None else _expired_exports(db, now, exports_kept)
            self._find_held_again(db)
            _preserved_windows(db)
            for table in self.spec.tables:
                limit = limits.get(table.category)
                if limit is None or table.collected is None:
                    continue
                kept, values = self._kept_by_age(table, limit, now)
                sql = (
                    f"DELETE FROM {table.name} WHERE julianday({table.collected})"  # noqa: S608
                    f" < julianday(?) AND NOT ({kept})"
                )
                deleted[table.name] = db.execute(
                    sql, (limit.cutoff(now).isoformat(), *values)
                ).rowcount
                sql = (
                    f"SELECT count(*) FROM {table.name}"  # noqa: S608
                    f" WHERE julianday({table.collected}) IS NULL"
                )
                if count := db.execute(sql).fetchone()[0]:
                    undated[table.name] = count
            purged = {t.category for t in self.spec.tables if deleted.get(t.name)}
            statements = sum(self._orphaned_statements(db, c) for c in purged)
        return PurgeReport(deleted, statements, undated, exports)

    def _kept_by_age(
        self, table: TableSpec, limit: AgeLimit, now: datetime
    ) -> tuple[str, tuple[str, ...]]:
        """The condition (and its values) on a row of ``table`` that keeps it past its
        period: restricted, under a legal hold of its category, under the system's own
        hold, open or concluded within the days the data map gives, or found by the
        search details of an open access request (``_preserved_windows``)."""
        key = self.spec.key
        held = f"{key} IN (SELECT key FROM _legal_holds WHERE category = ?)"  # noqa: S608
        kept = ["restricted != 0", f"coalesce({held}, 0)"]
        values: tuple[str, ...] = (table.category.value,)
        if table.hold:
            kept.append(f"coalesce(({table.hold}), 0)")
        concluded = limit.concluded_cutoff(now)
        if table.concluded_hold and concluded is not None:
            kept.append(f"coalesce(({table.concluded_hold}), 0)")
            values += (concluded.isoformat(),)
        if (searched := table.searched) is not None:
            at = f"julianday({searched.at})"
            places = " OR ".join(f"lower({c}) LIKE w.pattern ESCAPE '\\'" for c in searched.places)
            kept.append(
                f"EXISTS (SELECT 1 FROM temp._preserved_windows w WHERE {at} >= w.since"  # noqa: S608
                f" AND {at} < w.until AND (w.pattern IS NULL OR {places}))"
            )
        return " OR ".join(kept), values

    def _orphaned_statements(self, db: sqlite3.Connection, category: Category) -> int:
        """Delete the supplementary statements about ``category`` of keys left with no
        row of it: they completed data that is gone. Statements deleted."""
        tables = [t for t in self.spec.tables if t.category is category]
        key = self.spec.key
        found = " OR ".join(
            f"EXISTS (SELECT 1 FROM {t.name} WHERE {t.name}.{key} = _statements.key)"  # noqa: S608
            for t in tables
        )
        sql = f"DELETE FROM _statements WHERE category = ? AND NOT ({found})"  # noqa: S608
        return db.execute(sql, (category.value,)).rowcount

    def _searched(
        self,
        db: sqlite3.Connection,
        details: Mapping[str, str],
        own: Mapping[str, list[dict[str, Any]]],
    ) -> dict[str, dict[str, Any]]:
        """The rows of each searched table the details find (``SearchSpec``), leaving
        out those already the subject's (``own``, by table: exported in full with the
        rest)."""
        found: dict[str, dict[str, Any]] = {}
        for table in self.spec.tables:
            searched = table.searched
            if searched is None:
                continue
            where, params = _search_where(searched, details)
            columns = ", ".join(searched.shown)
            sql = f"SELECT {columns} FROM {table.name} WHERE {where} ORDER BY {searched.at}"  # noqa: S608
            mine = {tuple(row[c] for c in searched.shown) for row in own.get(table.name, [])}
            rows = [dict(row) for row in db.execute(sql, params) if tuple(row) not in mine]
            found[table.name] = {"category": table.category.value, "rows": rows}
        return found if any(t["rows"] for t in found.values()) else {}

    def export(
        self,
        identifiers: Mapping[str, str],
        request_id: str,
        place: ExportPlace,
        previous: Previous = None,
        details: Mapping[str, str] | None = None,
        only: Collection[Category] | None = None,
    ) -> ExportReference | None:
        """Write the subject's rows as JSON, and those their search ``details`` find;
        None when neither finds anything. The file is recorded against the subject's
        keys, for ``erase``. With ``only`` (a portability request's categories), the
        rows of those categories' tables and the statements about them, and None when
        there are none."""
        target, location = place.locate(request_id)
        shown = [t for t in self.spec.tables if only is None or t.category in only]
        with self._db() as db:
            keys = self._resolve(db, identifiers, previous) if identifiers else []
            tables = self._rows_of(db, keys)
            found = self._searched(db, details, tables) if details else {}
            statements = _statements_of(db, keys)
            if only is not None:
                statements = [s for s in statements if s["category"] in only]
                keys = keys if statements or any(tables.get(t.name) for t in shown) else []
            if not keys and not found:
                return None
            _exports_table(db)
            made_at = datetime.now(UTC)
            path = str(target.resolve())
            db.executemany(
                "INSERT OR REPLACE INTO _exports VALUES (?, ?, ?)",
                [(key, request_id, path) for key in keys or [SEARCHED_KEY + request_id]],
            )
            db.execute(
                "INSERT OR REPLACE INTO _export_times VALUES (?, ?)", (path, made_at.isoformat())
            )
        by_table = {
            t.name: {"category": t.category.value, "rows": _rows(t, tables, only is not None)}
            for t in shown
        }
        count = sum(len(t["rows"]) for t in (*by_table.values(), *found.values()))
        count += len(statements)
        document: dict[str, Any] = {
            "controller": "ALL LED Limited",
            "system": self.spec.system.value,
            "request_id": request_id,
            "generated_at": made_at.isoformat(),
            "record_count": count,
            "tables": by_table,
            # Art. 16 completion: what the subject added to their data is theirs too.
            "supplementary_statements": statements,
        }
        if only is not None:
            document["portability"] = {
                "article": "UK GDPR Art. 20",
                "categories": [c.value for c in Category if c in only],
            }
        if details:
            # What was looked for (the subject's own words) and what it found, for the
            # person who reviews the footage before it goes out, and for the subject.
            document["search"] = dict(details)
            document["found_by_search"] = found
        data = json.dumps(document, indent=2, sort_keys=True, default=str).encode()
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".json.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        tmp.replace(target)
        return ExportReference(
            location=location,
            record_count=count,
            checksum="sha256:" + hashlib.sha256(data).hexdigest(),
            categories=_categories_in([*by_table.values(), *found.values()], statements),
        )


def _rows(
    table: TableSpec, tables: Mapping[str, list[dict[str, Any]]], ported: bool
) -> list[dict[str, Any]]:
    """``table``'s rows of the subject for a copy; for a portability copy, without the
    columns the system worked out or others told it (``TableSpec.not_portable``)."""
    rows = tables.get(table.name, [])
    if not ported or not table.not_portable:
        return rows
    return [{k: v for k, v in row.items() if k not in table.not_portable} for row in rows]


def _categories_in(
    tables: Iterable[Mapping[str, Any]], statements: list[dict[str, Any]]
) -> list[Category]:
    """The categories of what a copy holds, in the vocabulary's order: of each table with
    rows (the subject's, and those their search found) and of each supplementary
    statement (Art. 16)."""
    held = {t["category"] for t in tables if t["rows"]} | {s["category"] for s in statements}
    return [c for c in Category if c.value in held]


def _expired_exports(db: sqlite3.Connection, now: datetime, kept: timedelta) -> int:
    """Delete the export files made more than ``kept`` before ``now``, and their rows; a
    copy of unknown age (made before 0.36) is dated ``now``, so it is kept the full
    period from then. Files deleted."""
    _exports_table(db)
    db.execute(
        "INSERT OR IGNORE INTO _export_times SELECT DISTINCT path, ? FROM _exports",
        (now.isoformat(),),
    )
    cutoff = (now - kept).isoformat()
    sql = "SELECT path FROM _export_times WHERE julianday(made_at) < julianday(?)"
    paths = [row[0] for row in db.execute(sql, (cutoff,))]
    deleted = 0
    for path in paths:
        file = Path(path)
        if file.exists():
            file.unlink()
            deleted += 1
    db.executemany("DELETE FROM _exports WHERE path = ?", [(p,) for p in paths])
    db.executemany("DELETE FROM _export_times WHERE path = ?", [(p,) for p in paths])
    return deleted


def _search_terms(details: Mapping[str, str]) -> tuple[search.Window, list[str]]:
    """What ``details`` find a row by: their time window, and with a place, a LIKE
    pattern for each word of it (``_place_patterns``, escaped), any of which in any
    place column will do. One rule for the export's search (``_search_where``) and for
    what deletion by age keeps while the request is open (``_preserved_windows``)."""
    place = details.get(SearchDetail.location)
    return search.window(details), _place_patterns(place) if place is not None else []


def _preserved_windows(db: sqlite3.Connection) -> None:
    """``temp._preserved_windows``: a row per open search's window and place pattern
    (a NULL pattern: no place given), for ``_kept_by_age`` to keep what they find. A
    table, not a condition per search: a few hundred searches open at once made one
    condition deeper than SQLite parses (review, session 37)."""
    db.execute(
        "CREATE TEMP TABLE IF NOT EXISTS _preserved_windows"
        " (since REAL NOT NULL, until REAL NOT NULL, pattern TEXT)"
    )
    db.execute("DELETE FROM temp._preserved_windows")
    rows: list[tuple[str, str, str | None]] = []
    for (details,) in db.execute("SELECT details FROM _preserved_searches"):
        window, patterns = _search_terms(json.loads(details))
        since, until = window.since.isoformat(), window.until.isoformat()
        options: list[str | None] = [*patterns] or [None]
        rows += [(since, until, p) for p in options]
    db.executemany(
        "INSERT INTO temp._preserved_windows VALUES (julianday(?), julianday(?), ?)", rows
    )


def _search_where(searched: SearchSpec, details: Mapping[str, str]) -> tuple[str, list[str]]:
    """The condition (and its values) on a row of a searched table that ``details``
    find it by (``_search_terms``)."""
    window, patterns = _search_terms(details)
    where = f"julianday({searched.at}) >= julianday(?) AND julianday({searched.at}) < julianday(?)"
    params = [window.since.isoformat(), window.until.isoformat()]
    if patterns:
        tests = [f"lower({c}) LIKE ? ESCAPE '\\'" for p in patterns for c in searched.places]
        where += " AND (" + " OR ".join(tests) + ")"
        params += [p for p in patterns for _ in searched.places]
    return where, params


_PLACE_WORD = re.compile(r"[^\W_]{3,}")
_NOT_PLACES: Final = frozenset({"the", "and", "near", "by", "our", "your", "shop", "store"})


def _place_patterns(place: str) -> list[str]:
    """LIKE patterns for a place as a subject says it: each word of it that names
    something ("loading bay at Braintree depot": loading, bay, braintree, depot), any of
    which finds a camera or site; the whole text when it has no such word. A search is
    already held to its day and hours, and the DPO checks what it found, so a wide net
    is the lesser harm: a narrow one answers "nothing" while the footage is there."""
    words = [w for w in _PLACE_WORD.findall(place.lower()) if w not in _NOT_PLACES]
    return [_like(w) for w in dict.fromkeys(words)] or [_like(place)]


def _like(text: str) -> str:
    """``text`` as a LIKE pattern that finds it anywhere, its own wildcards escaped."""
    escaped = text.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _begin(db: sqlite3.Connection) -> None:
    """Open the transaction now, for writing, and make the hold tables in it: what a
    hold or a deletion by age reads (the rows it resolves keys from) cannot change
    under it before it writes."""
    db.execute("BEGIN IMMEDIATE")
    _hold_tables(db)


def _hold_tables(db: sqlite3.Connection) -> None:
    db.execute(_HOLDS_DDL)
    db.execute(_HOLD_SUBJECTS_DDL)
    db.execute(_PRESERVED_DDL)


def _record_held(
    db: sqlite3.Connection,
    subject_id: str,
    keys: Sequence[str],
    categories: Sequence[str],
    hold_ids: str,
) -> None:
    db.executemany(
        "INSERT OR IGNORE INTO _legal_holds VALUES (?, ?, ?, ?)",
        [(subject_id, k, c, hold_ids) for k in keys for c in categories if c],
    )


def is_busy(exc: sqlite3.Error) -> bool:
    """Whether SQLite refused because another connection held the file past the lock
    timeout (SQLITE_BUSY, SQLITE_LOCKED and their extended codes): passing, unlike a
    missing table or a constraint, which fail the same way every time."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def store_path(data_dir: Path, system: System) -> Path:
    return data_dir / f"{system.value}.db"


def open_store(data_dir: Path, system: System) -> ReferenceStore:
    return ReferenceStore(SPECS[system], store_path(data_dir, system))


def seed_stores(
    data_dir: Path, customers: Sequence[FakeCustomer], *, reset: bool = False
) -> dict[System, bool]:
    """Create every system's store that is missing; True for the ones seeded now."""
    return {s: open_store(data_dir, s).create(customers, reset=reset) for s in System}


def _new_postcode(
    db: sqlite3.Connection, table: str, column: str, where: str, keys: Sequence[str], postcode: str
) -> int:
    """The postcode is the address's last part here ("12 High St, Town, AB1 2CD"): replaced
    in each of the subject's addresses. One without that shape is left as it is (rows
    updated counts only those changed), never replaced by the bare postcode."""
    rows = db.execute(f"SELECT rowid, {column} FROM {table} WHERE {where}", keys).fetchall()  # noqa: S608
    changed = 0
    for rowid, address in rows:
        head, sep, _ = str(address or "").rpartition(", ")
        if not sep:
            continue
        sql = f"UPDATE {table} SET {column} = ? WHERE rowid = ?"  # noqa: S608
        changed += db.execute(sql, (f"{head}, {postcode}", rowid)).rowcount
    return changed


def _record_statements(
    db: sqlite3.Connection, keys: Sequence[str], statements: Mapping[Category, str]
) -> int:
    """Record each statement against each of the subject's keys; the same statement
    again (a re-sent task) records nothing. Statements recorded."""
    db.execute(_STATEMENTS_DDL)
    now = datetime.now(UTC).isoformat()
    rows = [(k, c.value, text, now) for k in keys for c, text in statements.items()]
    before = db.total_changes
    db.executemany("INSERT OR IGNORE INTO _statements VALUES (?, ?, ?, ?)", rows)
    # A statement already there is still recorded: the task is done, not "not found".
    return max(db.total_changes - before, len(statements))


def _statements_of(db: sqlite3.Connection, keys: Sequence[str]) -> list[dict[str, Any]]:
    if not keys:
        return []
    db.execute(_STATEMENTS_DDL)
    where = f"key IN ({', '.join('?' * len(keys))})"
    sql = (
        f"SELECT DISTINCT category, statement, recorded_at FROM _statements WHERE {where}"  # noqa: S608
        " ORDER BY recorded_at, category"
    )
    return [dict(r) for r in db.execute(sql, keys)]


def _delete_statements(
    db: sqlite3.Connection, keys: Sequence[str], categories: set[Category]
) -> int:
    """Delete the subject's statements about the erased categories. Rows deleted."""
    if not categories:
        return 0
    db.execute(_STATEMENTS_DDL)
    where = f"key IN ({', '.join('?' * len(keys))})"
    marks = ", ".join("?" * len(categories))
    sql = f"DELETE FROM _statements WHERE {where} AND category IN ({marks})"  # noqa: S608
    return db.execute(sql, (*keys, *(c.value for c in categories))).rowcount
