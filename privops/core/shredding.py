"""What an erasure leaves behind in privops' own stores, decided once the erasure completes.

The systems erase their rows; privops erases its own copies: the subject's data keys
(every ciphertext of theirs in every topic becomes unreadable) and the table entries
that hold personal data. Both wait for the erasure to complete (every system answered)
and for the subject's suppression to be in place (the consent state's marker, from the
erasure's own directive): the key service refuses an erased subject only from then, and
the suppression list is hashed from the identity map the tables are about to drop.

Retention decides what stays: a category the erasure keeps (invoices for six years, a
legal hold, an open debt) keeps its retained-scope keys, the identifiers of the systems
that keep it, and the facts its follow-up erasure re-plans from; the follow-up, on the
day the retention ends, takes the rest. Pure: the agent reads the stores, calls these,
and writes what they return. docs/crypto-shredding.md, "What an erasure leaves behind".

The decision is recorded on the request (``planned``: the keys to destroy, the audit
step, a copy of what is kept sealed under the storage scope) and stored before any key
is destroyed, so that destroying them again after a crash needs nothing the destroyed
keys sealed (``begun``, ``opened_copy``, ``restored``), and audits the same step.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Final

from privops.core import sealing
from privops.core.clock import UK
from privops.core.erasure import Disclosure, SubjectFacts
from privops.core.errors import DomainError
from privops.core.fanout import SYSTEMS_OWN_GROUND
from privops.core.fieldcrypt import MAIN_SCOPE, DataKey, KeyLookup
from privops.core.holds import LegalHold
from privops.core.identity import (
    EMAIL,
    PHONE,
    IdentityMap,
    keeping,
    merge,
    normalise_email,
    normalise_phone,
)
from privops.core.request import HistoryItem, Leftovers, RequestRecord
from privops.core.sealing import REQUEST_FREE_TEXT
from privops.core.subject_keys import (
    RETAINED,
    SubjectKey,
    retained_scope,
    retained_until,
)
from privops.core.vocab import Category, RequestState, RequestType, System, TaskState

KEYS_SHREDDED: Final = "keys_shredded"
"""The audit action, and the request's history event once its leftovers are erased."""
DEFERRED: Final = "keys_shred_deferred"
"""History event: the erasure completed but its leftovers wait (suppression not applied
yet, or the key store unavailable); its time is the last attempt."""
SHRED_DUE: Final = "keys_shred_due"
"""History event: the erasure's leftovers are decided and recorded (``planned``); its
keys are destroyed once that record is stored, and the timer tries again if not."""
RETRY_AFTER: Final = timedelta(seconds=15)

_ERASED: Final = frozenset({RequestState.completed, RequestState.partially_completed})


# --- when ----------------------------------------------------------------------------------


def pending(rec: RequestRecord) -> bool:
    """A completed erasure whose keys and table entries are not erased yet."""
    return (
        rec.request_type is RequestType.erasure
        and rec.state in _ERASED
        and not any(h.event == KEYS_SHREDDED for h in rec.history)
    )


def retry_at(rec: RequestRecord) -> datetime | None:
    """When to try a deferred or decided erasure's leftovers again (None: neither)."""
    if not pending(rec) or not rec.history or rec.history[-1].event not in _WAITING:
        return None
    return rec.history[-1].at + RETRY_AFTER


def deferred(rec: RequestRecord, now: datetime) -> RequestRecord:
    """``rec`` noted as waiting since ``now``: one history entry, moved on every retry."""
    return _marked(rec, now, DEFERRED, replacing={DEFERRED})


def planned(rec: RequestRecord, leftovers: Leftovers, now: datetime) -> RequestRecord:
    """``rec`` with its leftovers decided at ``now`` and nothing destroyed yet: stored
    before any of ``leftovers.key_ids`` goes, it is what a replay destroys and audits
    (decided again, it would be from stores ``main`` no longer opens)."""
    marked = _marked(rec, now, SHRED_DUE, replacing=_WAITING)
    return marked.model_copy(update={"leftovers": leftovers})


def done(rec: RequestRecord, now: datetime) -> RequestRecord:
    """``rec`` with its leftovers erased: never attempted again."""
    mark = HistoryItem(at=now, event=KEYS_SHREDDED, state=rec.state)
    return rec.model_copy(update={"history": [*rec.history, mark], "leftovers": None})


_WAITING: Final = frozenset({DEFERRED, SHRED_DUE})


def _marked(
    rec: RequestRecord, now: datetime, event: str, replacing: Collection[str]
) -> RequestRecord:
    """``rec`` with ``event`` at ``now`` last in its history, in place of the entries of
    ``replacing`` it ended with (one entry per wait, moved on every retry)."""
    history = list(rec.history)
    while history and history[-1].event in replacing:
        history.pop()
    mark = HistoryItem(at=now, event=event, state=rec.state)
    return rec.model_copy(update={"history": [*history, mark]})


def begun(leftovers: Leftovers, live: Collection[str]) -> bool:
    """Whether destroying ``leftovers``' keys may have begun (``live``: the subject's key
    ids still stored): then they are destroyed as recorded, never decided again (what
    ``main`` sealed may no longer open, and the audit step must be the one recorded).
    One that names no key counts as begun: deciding it again protects nothing."""
    return not leftovers.key_ids or not set(leftovers.key_ids) <= set(live)


# --- what retention still keeps --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reached:
    """What the erasure's task to a system carried: the identifiers it reached the system
    by (``previous``: the earlier values, newest first) and when the request was made."""

    system: System
    identifiers: tuple[tuple[str, str], ...]
    previous: tuple[tuple[str, tuple[str, ...]], ...]
    at: datetime


@dataclass(frozen=True, slots=True)
class Kept:
    """What the subject's data is still kept as, after this erasure: the categories
    (their retained-scope keys stay) and the systems keeping something (their
    identifiers stay, so a follow-up or a new erasure can reach them; ``reached``: what
    the erasure's tasks reached them by, for one the identity map does not name)."""

    categories: frozenset[Category]
    systems: frozenset[System]
    reached: tuple[Reached, ...] = ()

    @property
    def nothing(self) -> bool:
        return not self.categories and not self.systems


def still_kept(
    rec: RequestRecord,
    holds: Iterable[LegalHold],
    holdings: Mapping[System, set[Category]],
    now: datetime,
) -> Kept:
    """Retention still running at ``now``: the plan's keep lists and the systems' retained
    answers (open-ended, or ending later), every legal hold active now (even one placed
    after the plan), and the systems whose erase task failed (they still hold it all)."""
    items = [*rec.kept, *(k for t in rec.tasks.values() for k in t.keep)]
    running = [k for k in items if k.until is None or k.until > now]
    categories = {k.category for k in running}
    systems = {k.system for k in running}
    for hold in holds:
        if hold.active_at(now):
            categories.update(hold.categories)
            systems.update(s for s, held in holdings.items() if held & set(hold.categories))
    systems.update(t.system for t in rec.tasks.values() if t.state is TaskState.failed)
    reached = tuple(
        Reached(
            system=t.system,
            identifiers=tuple(sorted(t.identifiers.items())),
            previous=tuple(sorted((k, tuple(v)) for k, v in t.previous_identifiers.items())),
            at=rec.created_at,
        )
        for _, t in sorted(rec.tasks.items())
        if t.system in systems and t.identifiers and t.state is not TaskState.not_found
    )
    return Kept(frozenset(categories), frozenset(systems), reached)


# --- keys ----------------------------------------------------------------------------------


def key_scope(category: Category, until: datetime) -> str:
    """The scope of data a retention keeps until ``until`` (the first instant it may go).

    Named by the last whole UK day before that instant (an end at noon names the day
    before). The name says when the key should go; what keeps it is its category being
    kept (``keys_to_destroy``): the follow-up erasure, due at ``until``, finds the
    retention over and shreds it.
    """
    return retained_scope(category.value, until.astimezone(UK).date() - timedelta(days=1))


def system_may_ask(scope: str, held: Collection[Category], today: date) -> bool:
    """Whether a system holding ``held`` (the data map's categories) may be answered a
    key of ``scope`` by the key service: ``main``, or a retained scope of a category it
    holds, ending from ``today`` to ``SYSTEM_SCOPE_YEARS`` on. A retained key outlives an
    erasure while its category is kept: another system's category, or privops' own
    (``unerased``), is not a system's to ask for, nor a date past any retention (one
    that outlasts privops' own scopes would have privops seal its kept copies under a
    key a system chose: ``streams.keystore``'s storage key is the longest-dated)."""
    if scope == MAIN_SCOPE:
        return True
    if (parts := retained_parts(scope)) is None:
        return False
    category, until = parts
    horizon = today.replace(year=today.year + SYSTEM_SCOPE_YEARS, day=min(today.day, 28))
    return category in {c.value for c in held} and today <= until <= horizon


# The furthest end a system may name for a retained scope: past every dated retention of
# the data map (six years from a financial year's end is at most seven from today).
SYSTEM_SCOPE_YEARS: Final = 8


def retained_parts(scope: str) -> tuple[str, date] | None:
    """The category and end of a retained scope spelled as privops spells it, one
    spelling per day (``retained_until`` also reads 20320331); None for any other. A
    compact date respelled made a scope past the length limit, and ``retained_scope``'s
    check raised out of the key service (a 500; security review, session 34)."""
    category, until = scope_category(scope), retained_until(scope)
    if category is None or until is None or scope != f"{RETAINED}:{category}:{until.isoformat()}":
        return None
    return category, until


def scope_category(scope: str) -> str | None:
    """The category a retained scope names; None for any other scope."""
    if retained_until(scope) is None:
        return None
    return scope.removeprefix(f"{RETAINED}:").rpartition(":")[0]


@dataclass(frozen=True, slots=True)
class KeyDecision:
    """The key ids to shred, and the scopes shredded and kept (for the audit: never a key
    id, which names the subject)."""

    key_ids: tuple[str, ...]
    shredded_scopes: tuple[str, ...]
    kept_scopes: tuple[str, ...]


def keys_to_destroy(
    records: Iterable[SubjectKey], kept: Kept, now: datetime, storage: str | None = None
) -> KeyDecision:
    """Every key but a retained scope of a category retention still keeps for this
    subject (``kept``: the plan's keep lists, the systems' retained answers still
    running, active holds; a hold or an open debt keeps it past its date), and the
    ``storage`` scope privops' kept copies are sealed under now (``storage_scope``).

    ``main`` always goes: it holds what no retention keeps past an erasure. So does a
    retained scope whose category nothing keeps, whatever its date: one named
    ``retained:contact:9999-12-31`` (a system asking for it before the key service
    checked scopes, the DPO, a PLAINTEXT runtime) kept what was written under it through
    every erasure (an independent review, session 22). ``now`` is when the erasure
    runs."""
    del now  # the kept items are already those still running at ``now``
    stored = list(records)
    kept_names = {c.value for c in kept.categories}
    keep = {r.scope for r in stored if scope_category(r.scope) in kept_names}
    if storage is not None:
        keep.add(storage)
    ids = sorted(r.key_id for r in stored if r.scope not in keep)
    doomed = set(ids)
    return KeyDecision(
        key_ids=tuple(ids),
        shredded_scopes=tuple(sorted({r.scope for r in stored if r.key_id in doomed})),
        kept_scopes=tuple(sorted({r.scope for r in stored if r.key_id not in doomed})),
    )


UNERASED: Final = "unerased"
# The day an open-ended retention's scope names (no system may name it: SYSTEM_SCOPE_YEARS).
OPEN_ENDED: Final = date(9999, 12, 31)
"""The category part of the storage scope kept for systems whose erase task failed."""


def storage_scope(
    rec: RequestRecord, kept: Kept, holds: Iterable[LegalHold], now: datetime
) -> str | None:
    """The scope privops seals what it keeps of the subject under after this erasure (the
    identifiers of the systems still keeping data, the facts the follow-up re-plans
    from): the kept category that lasts longest, an open-ended one (a legal hold, an
    open debt) before any dated one; ``unerased:<today>`` when only a failed erase task
    keeps anything (the next erasure shreds it). None when nothing is kept."""
    if kept.nothing:
        return None
    items = [*rec.kept, *(k for t in rec.tasks.values() for k in t.keep)]
    running = [
        k for k in items if k.category in kept.categories and (k.until is None or k.until > now)
    ]
    open_ended = [k.category for k in running if k.until is None]
    open_ended += [c for h in holds if h.active_at(now) for c in h.categories]
    if open_ended:
        # Named to outlast every dated scope: the flush seals under the longest-dated
        # retained key (``streams.keystore``), and a dated one goes at its follow-up
        # while the hold or debt may still run.
        return retained_scope(min(open_ended, key=lambda c: c.value).value, OPEN_ENDED)
    dated = [k for k in running if k.until is not None]
    if dated:
        longest = max(dated, key=lambda k: (k.until, k.category.value))
        assert longest.until is not None
        return key_scope(longest.category, longest.until)
    return retained_scope(UNERASED, now.astimezone(UK).date())


# --- table entries -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Remains:
    """What each of the subject's table entries becomes: None deletes it."""

    identity: IdentityMap | None
    facts: SubjectFacts | None
    holds: tuple[LegalHold, ...] | None


def what_remains(
    kept: Kept,
    identity: IdentityMap | None,
    facts: SubjectFacts | None,
    holds: Iterable[LegalHold],
    now: datetime,
) -> Remains:
    """The identity map keeps only the systems still keeping data (their raw identifiers
    are how a follow-up reaches them), and an email or phone only if one of those
    systems knows the subject by it; the retention facts stay while anything is kept
    (the follow-up re-plans from them), with only the disclosures of kept categories
    (Art. 19 notices of the follow-up); legal holds keep the active ones.

    A system keeping data that never reported the subject (asked by what privops
    inferred: ``fanout.holdings``) is kept by what its task carried (``_with_reached``):
    before, it dropped out of the map, and neither the follow-up nor a later erasure
    asked it again (review, session 27)."""
    active = tuple(h for h in holds if h.released_at is None or h.released_at > now)
    return Remains(
        identity=_trimmed_identity(_with_reached(identity, kept.reached), kept.systems),
        facts=None if kept.nothing or facts is None else _trimmed_facts(facts, kept.categories),
        holds=active or None,
    )


def sealed_copy(remains: Remains, subject_id: str, key: DataKey | None) -> dict[str, Any]:
    """``remains`` as their tables store them, sealed under ``key`` (the storage scope's,
    which the erasure keeps): recorded before ``main`` is destroyed, so that a replay of
    the shred can write them again (``restored``). Without a key (nothing is kept) only
    what holds no personal value is copied."""
    copy: dict[str, Any] = {}
    identity, facts = remains.identity, remains.facts
    holds = [h.model_dump(mode="json") for h in remains.holds or ()]
    values = (
        (sealing.IDENTITIES, identity.model_dump(mode="json") if identity else None),
        (sealing.FACTS, facts.model_dump(mode="json") if facts else None),
        (sealing.HOLDS, {sealing.HOLDS_LIST: holds} if holds else None),
    )
    for seal, value in values:
        if value is None:
            continue
        kept = sealing.seal(value, seal, subject_id, key) if key is not None else seal.strip(value)
        if kept is not None:
            copy[seal.name] = kept
    return copy


def opened_copy(copy: Mapping[str, Any], subject_id: str, keys: KeyLookup) -> Remains:
    """What ``sealed_copy`` recorded, opened with ``keys``."""

    def opened(seal: sealing.TableSealing) -> Any:
        raw = copy.get(seal.name)
        return None if raw is None else sealing.open_(raw, seal, subject_id, keys)

    identity, facts = opened(sealing.IDENTITIES), opened(sealing.FACTS)
    holds = opened(sealing.HOLDS)
    return Remains(
        identity=IdentityMap.model_validate(identity) if identity is not None else None,
        facts=SubjectFacts.model_validate(facts) if facts is not None else None,
        holds=tuple(LegalHold.model_validate(h) for h in holds) if holds else None,
    )


def restored(current: Remains, copy: Remains) -> Remains:
    """The subject's entries as read now (``current``), with what a destroyed key took
    from them put back from ``copy`` (``opened_copy``): an identity map goes whole with
    its key, facts lose their recipients' references, holds their reasons. What changed
    since the copy was made, and opens, is kept as it is now."""
    return Remains(
        identity=current.identity or copy.identity,
        facts=_facts_restored(current.facts, copy.facts),
        holds=_holds_restored(current.holds, copy.holds),
    )


def _facts_restored(current: SubjectFacts | None, copy: SubjectFacts | None) -> SubjectFacts | None:
    if current is None or copy is None:
        return current or copy
    refs = {(d.recipient, d.first_at): d.recipient_ref for d in copy.disclosures if d.recipient_ref}

    def ref(d: Disclosure) -> Disclosure:
        lost = d.recipient_ref is None and (d.recipient, d.first_at) in refs
        return (
            d.model_copy(update={"recipient_ref": refs[(d.recipient, d.first_at)]}) if lost else d
        )

    return current.model_copy(update={"disclosures": tuple(ref(d) for d in current.disclosures)})


def _holds_restored(
    current: tuple[LegalHold, ...] | None, copy: tuple[LegalHold, ...] | None
) -> tuple[LegalHold, ...] | None:
    if current is None or copy is None:
        return current or copy
    reasons = {h.hold_id: h.reason for h in copy}
    return tuple(
        h.model_copy(update={"reason": reasons[h.hold_id]})
        if h.reason == sealing.HOLD_REASON_GONE and h.hold_id in reasons
        else h
        for h in current
    )


def _trimmed_identity(
    identity: IdentityMap | None, systems: frozenset[System]
) -> IdentityMap | None:
    # identity.keeping: the global email's and phone's earlier values too, only those a
    # kept system knew (an erased system's old address is not kept for them).
    return None if identity is None else keeping(identity, systems)


def _with_reached(identity: IdentityMap | None, reached: Iterable[Reached]) -> IdentityMap | None:
    """``identity`` with each system it does not name known by what the erasure's task
    reached it by, earlier values too (``identity.merge``). Each value is dated when the
    map last asserted it (the subject's email, another system's customer number), the
    request's time if it no longer does: no known value's time moves."""
    if identity is None:
        return None
    named = set(identity.systems)
    for item in reached:
        if item.system in named:
            continue
        previous = dict(item.previous)
        for name, value in item.identifiers:
            at = _asserted_at(identity, name, value) or item.at
            identity = _merged(identity, item.system, name, value, at)
            for i, old in enumerate(previous.get(name, ()), start=1):
                # Older than the value that replaced it, whatever the map says now.
                then = min(_asserted_at(identity, name, old) or at, at - i * _TICK)
                identity = _merged(identity, item.system, name, old, then)
    return identity


_TICK: Final = timedelta(microseconds=1)


def _merged(
    identity: IdentityMap, system: System, name: str, value: str, at: datetime
) -> IdentityMap:
    try:
        return merge(identity, identity.subject_id, system, {name: value}, at)
    except DomainError:  # one the map took before it checked so (review, session 25)
        return identity


def _asserted_at(identity: IdentityMap, name: str, value: str) -> datetime | None:
    """When ``identity`` last asserted ``value`` as a ``name``: the subject's email or
    phone, or any system's identifier of that name, current or earlier."""
    shared = getattr(identity, name) if name in (EMAIL, PHONE) else None
    wanted = _comparable(name, value)
    times = []
    for slot in (shared, *(ids.get(name) for ids in identity.systems.values())):
        if slot is None:
            continue
        for seen in (slot, *slot.previous):
            if _comparable(name, seen.value) == wanted:
                times.append(seen.occurred_at)
    return max(times, default=None)


def _comparable(name: str, value: str) -> str:
    """An email or phone normalised (as the map's shared one is), anything else trimmed."""
    normalise = {EMAIL: normalise_email, PHONE: normalise_phone}.get(name)
    try:
        return normalise(value) if normalise is not None else value.strip()
    except DomainError:
        return value.strip()


def _trimmed_facts(facts: SubjectFacts, categories: frozenset[Category]) -> SubjectFacts:
    told = tuple(d for d in facts.disclosures if categories & set(d.categories))
    return facts.model_copy(update={"disclosures": told})


def scrubbed(rec: RequestRecord) -> RequestRecord | None:
    """A closed request without the personal values it carried (None if it has none): the
    rectified values, the identifiers and changes its tasks were sent with, the systems'
    export locations and the access manifest (the subject got it; the audit says so),
    and the free text that may name the person: the DPO's reasons and the systems'
    answers (review, session 26). What was kept and why stays: its grounds are privops'
    own, except one a request recorded before they were (a system's answer copied in),
    which becomes ``SYSTEMS_OWN_GROUND``. An open request keeps them: a re-sent task
    needs its identifiers."""
    if rec.open:
        return None
    tasks = {
        task_id: task.model_copy(
            update={
                "identifiers": {},
                "previous_identifiers": {},
                "changes": {},
                "export": None,
                "outcome_reason": None,
            }
        )
        for task_id, task in rec.tasks.items()
    }
    privops_grounds = {k.ground for t in rec.tasks.values() for k in t.keep}
    privops_grounds.add(SYSTEMS_OWN_GROUND)
    kept = [
        k if k.ground in privops_grounds else k.model_copy(update={"ground": SYSTEMS_OWN_GROUND})
        for k in rec.kept
    ]
    clean = rec.model_copy(
        update={
            "rectification": {},
            "search": {},
            "send_to": None,
            "representative": None,
            # "deputy" tells of a Court of Protection order (the subject's mental
            # capacity), "parent" that they are a child: not kept once they are erased
            # (review, session 41); the day the authority arrived stays.
            "capacity": None,
            "tasks": tasks,
            "manifest": None,
            "kept": kept,
            **dict.fromkeys(REQUEST_FREE_TEXT),
        }
    )
    return None if clean == rec else clean


def summary(decision: KeyDecision, remains: Remains, cleared: int) -> str:
    """The audit step's reason: scopes and what each table kept (never a key id, which
    names the subject, nor any value)."""
    identity = remains.identity
    systems = ", ".join(sorted(s.value for s in identity.systems)) if identity else ""
    return "; ".join(
        [
            f"shredded {', '.join(decision.shredded_scopes) or 'none'}",
            f"kept {', '.join(decision.kept_scopes) or 'none'}",
            f"identities {'kept for ' + systems if systems else 'dropped'}",
            f"subject-facts {'dropped' if remains.facts is None else 'kept'}",
            f"legal-holds: {len(remains.holds or ())} active kept",
            f"{cleared} closed request(s) cleared",
        ]
    )
