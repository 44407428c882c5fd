"""The identity map, the suppression list and subject refs: pure helpers, no I/O.

`IdentityMap` keeps, per subject, the identifiers each system knows the subject by, so
a task for a system carries exactly what that system can look up (DESIGN.md section 5).
Raw identifiers stay inside this state (a Faust table). Whatever leaves it is a keyed
HMAC: suppression keys (so an erased subject's identifiers can be recognised on
re-import without being kept) and subject refs (the pseudonym in audit and logs).

Identifier names are lower-case words (``customer_id``, ``contact_id``); ``email`` and
``phone`` are shared across systems and normalised before hashing. Error messages never
contain an identifier's value.

A value a newer one replaced is kept too, the last ``MAX_PREVIOUS`` of each (review,
session 27): a system still holds rows under the subject's old phone or email (call
recordings, a marketing list), so an erasure's tasks must carry them, and a re-import
under an old address must match the suppression list. Before, the old value was
forgotten, and both missed it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Final

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from privops.core.errors import DomainError
from privops.core.keyed_hash import hmac_sha256
from privops.core.vocab import System

EMAIL: Final = "email"
PHONE: Final = "phone"
SUBJECT_REF_PREFIX: Final = "sr_"

_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_EMAIL_SHAPE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_PHONE_CHARS = re.compile(r"[\d\s()+\-.]+")
_MAX_VALUE = 320

_FROZEN = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


MAX_PREVIOUS: Final = 5
"""Earlier values kept per identifier: people change an email or phone a few times in
the years a system keeps their rows; a bound keeps an identifier some system rotates
(a cookie id) from growing the state and every task without end."""


class Superseded(BaseModel):
    """An earlier value of an identifier and the last time it was asserted: the time a
    system is known to have held rows under it, and what orders the earlier values
    (newest first), whatever order the events arrived in."""

    model_config = _FROZEN

    value: str
    occurred_at: AwareDatetime


def _none(items: tuple[object, ...]) -> bool:
    return not items


class Identifier(BaseModel):
    """One identifier value and when it was last asserted (latest occurred_at wins), with
    the values it replaced (``previous``, newest first, never the current value)."""

    model_config = _FROZEN

    value: str
    occurred_at: AwareDatetime
    # Left out when empty: stored as before this field, which a worker of before it
    # (``extra="forbid"``) still reads on a rollback.
    previous: tuple[Superseded, ...] = Field(default=(), exclude_if=_none)

    def older_than(self, value: str, occurred_at: datetime) -> bool:
        """True when (occurred_at, value) should replace this one; the value breaks ties."""
        return (self.occurred_at, self.value) < (occurred_at, value)

    def earlier(self) -> list[str]:
        """The values this one replaced, newest first."""
        return [item.value for item in self.previous]


class IdentityMap(BaseModel):
    """A subject id and the identifiers each system uses for that subject.

    `systems` holds values as the system sent them (trimmed), so its lookups match;
    `email` and `phone` are the latest normalised values seen from any system.
    """

    model_config = _FROZEN

    subject_id: str = Field(min_length=1)
    systems: dict[System, dict[str, Identifier]] = Field(default_factory=dict)
    email: Identifier | None = None
    phone: Identifier | None = None

    def identifiers(self) -> dict[System, dict[str, str]]:
        """Plain per-system identifiers, e.g. {orders: {"customer_id": "C-1"}}."""
        return {system: for_system(self, system) for system in self.systems}


# ----------------------------------------------------------------- normalisation


def normalise_email(value: str) -> str:
    """Trimmed and lower-cased; raises DomainError if it does not look like an address.

    A control or format character inside (a NUL, a zero-width space) makes it malformed:
    the address with it has another suppression key than without, so an erased subject
    re-imported that way went unrecognised (review, session 25).
    """
    email = value.strip().lower()
    if len(email) > _MAX_VALUE or not _EMAIL_SHAPE.fullmatch(email) or not email.isprintable():
        raise DomainError("malformed email identifier")
    return email


def normalise_phone(value: str) -> str:
    """E.164-ish: '+' and digits; UK national numbers (leading 0) become +44.

    Handles '+44 (0)20 ...', '0044 ...', '07700 900123' and a UK number whose leading 0
    a spreadsheet dropped (10 digits). Raises DomainError for anything else.
    """
    raw = value.strip()
    if not raw or not _PHONE_CHARS.fullmatch(raw) or "+" in raw[1:]:
        raise DomainError("malformed phone identifier")
    digits = re.sub(r"\D", "", raw)
    if raw.startswith("+"):
        pass
    elif digits.startswith("00"):
        digits = digits[2:]
    elif digits.startswith("0"):
        digits = "44" + digits[1:]
    elif len(digits) == 10:
        digits = "44" + digits
    if digits.startswith("440"):
        digits = "44" + digits[3:]
    if not 8 <= len(digits) <= 15:
        raise DomainError("malformed phone identifier")
    return "+" + digits


def validate_identifiers(
    identifiers: Mapping[str, str | None], *, accepted: Collection[str] | None = None
) -> dict[str, str]:
    """Clean an event's identifiers: drop empty values, check names, email and phone.

    `accepted` (the identifiers a system knows subjects by, from the data map) keeps only
    those names. Raises DomainError (dead-letter reason) when none is left, a name is not
    a lower-case word, an email/phone is malformed, or a value holds a control or format
    character once trimmed (``str.isprintable``: a NUL, a newline, a zero-width space),
    which a system's own lookups would not match and its suppression key would not
    either (review, session 25). Values come back trimmed.
    """
    clean: dict[str, str] = {}
    for name, value in identifiers.items():
        if value is None or not value.strip():
            continue
        if not _NAME.fullmatch(name):
            raise DomainError(f"invalid identifier name {name[:64]!r}")
        if accepted is not None and name not in accepted:
            continue
        if len(value) > _MAX_VALUE:
            raise DomainError(f"identifier {name} is too long")
        trimmed = value.strip()
        if not trimmed.isprintable():
            raise DomainError(f"malformed {name} identifier (a control or format character)")
        if name == EMAIL:
            normalise_email(trimmed)
        elif name == PHONE:
            normalise_phone(trimmed)
        clean[name] = trimmed
    if not clean:
        wanted = f" (expected one of: {', '.join(sorted(accepted))})" if accepted else ""
        raise DomainError(f"event carries no subject identifier{wanted}")
    return clean


# ------------------------------------------------------------------ identity map


def merge(
    identity: IdentityMap | None,
    subject_id: str,
    system: System,
    identifiers: Mapping[str, str | None],
    occurred_at: datetime,
) -> IdentityMap:
    """Record what `system` calls the subject, as of `occurred_at`. Pure.

    Per (system, name) and for the global email/phone the latest occurred_at wins; the
    value it replaces joins ``previous``, and a late event's older value not known yet
    takes its place there by time, so late or redelivered events never change the
    current value and a value already known changes nothing. Returns `identity` itself
    when nothing changed (agents skip the table write: the usual case, on the hot path).
    Raises DomainError for bad identifiers, a naive timestamp, or a map that belongs to
    another subject.
    """
    if occurred_at.tzinfo is None or occurred_at.utcoffset() is None:
        raise DomainError("occurred_at must be timezone-aware")
    at = occurred_at.astimezone(UTC)
    clean = validate_identifiers(identifiers)
    if identity is None:
        identity = IdentityMap(subject_id=subject_id)
    elif identity.subject_id != subject_id:
        raise DomainError("identity map belongs to another subject")

    own = identity.systems.get(system, {})
    changed: dict[str, Identifier] | None = None
    for name, value in clean.items():
        current = own.get(name)
        if current is not None and current.value == value and current.occurred_at >= at:
            continue  # the usual event: what is known already (checked here, it is cheap)
        slot = _asserted(current, value, at)
        if slot is not None:
            changed = changed if changed is not None else dict(own)
            changed[name] = slot
    updates: dict[str, object] = {}
    if changed is not None:
        updates["systems"] = {**identity.systems, system: changed}
    for name, normalise in ((EMAIL, normalise_email), (PHONE, normalise_phone)):
        if name in clean:
            slot = _asserted(getattr(identity, name), normalise(clean[name]), at)
            if slot is not None:
                updates[name] = slot
    return identity.model_copy(update=updates) if updates else identity


def new_values(before: IdentityMap, after: IdentityMap) -> bool:
    """Whether ``after`` knows the subject by a value ``before`` did not have as current
    (a new phone, a system's new id), not only a later time of one already known.
    Pure; cheap enough for the hot path, where it runs only when ``merge`` changed
    something."""
    for name in (EMAIL, PHONE):
        old, new = getattr(before, name), getattr(after, name)
        if new is not None and (old is None or old.value != new.value):
            return True
    for system, ids in after.systems.items():
        known = before.systems.get(system)
        if known is None:
            return True
        for name, current in ids.items():
            seen = known.get(name)
            if seen is None or seen.value != current.value:
                return True
    return False


def _asserted(current: Identifier | None, value: str, at: datetime) -> Identifier | None:
    """The identifier once `value` is asserted at `at`; None when nothing changes."""
    if current is None:
        return Identifier(value=value, occurred_at=at)
    if current.older_than(value, at):
        if value == current.value:
            return current.model_copy(update={"occurred_at": at})
        replaced = Superseded(value=current.value, occurred_at=current.occurred_at)
        others = [item for item in current.previous if item.value != value]
        return Identifier(value=value, occurred_at=at, previous=_newest([replaced, *others]))
    if value == current.value or any(item.value == value for item in current.previous):
        return None  # a redelivery, or a late event's value known already
    previous = _newest([*current.previous, Superseded(value=value, occurred_at=at)])
    if previous == current.previous:
        return None  # older than every value kept: no room for it
    return current.model_copy(update={"previous": previous})


def _newest(items: Iterable[Superseded]) -> tuple[Superseded, ...]:
    ordered = sorted(items, key=lambda item: (item.occurred_at, item.value), reverse=True)
    return tuple(ordered[:MAX_PREVIOUS])


def for_system(identity: IdentityMap, system: System) -> dict[str, str]:
    """What `system` can look the subject up by: its own ids and the email/phone it sent."""
    return {name: ident.value for name, ident in identity.systems.get(system, {}).items()}


def previous_for_system(
    identity: IdentityMap, system: System, carried: Collection[str] = ()
) -> dict[str, list[str]]:
    """The values `system` knew the subject by before (newest first), per identifier name:
    rows it recorded under an old phone or email may be the subject's (or a later holder's
    of a reassigned number: docs/connectors.md says how systems tell). An email or phone
    in `carried` (what its task carries) that the system never reported itself (privops
    inferred it) comes with the subject's earlier ones from any system."""
    own = identity.systems.get(system, {})
    previous = {name: ident.earlier() for name, ident in own.items() if ident.previous}
    for name in (EMAIL, PHONE):
        ident = getattr(identity, name)
        if name in carried and name not in own and ident is not None and ident.previous:
            previous[name] = ident.earlier()
    return previous


def keeping(identity: IdentityMap, systems: Collection[System]) -> IdentityMap | None:
    """The identity map with only `systems` (None if it knows none of them): what an
    erasure that leaves data in them keeps. The global email and phone stay only if one
    of them knows the subject by it, and of their earlier values only those one of them
    knew: an erased system's old address is not kept for the ones that remain."""
    left = {s: ids for s, ids in identity.systems.items() if s in systems}
    if not left:
        return None
    updates: dict[str, object] = {"systems": left}
    for name, normalise in ((EMAIL, normalise_email), (PHONE, normalise_phone)):
        ident: Identifier | None = getattr(identity, name)
        held = [ids[name] for ids in left.values() if name in ids]
        if ident is None or not held:
            updates[name] = None
            continue
        known = {_normalised(normalise, v) for i in held for v in (i.value, *i.earlier())}
        previous = tuple(item for item in ident.previous if item.value in known)
        updates[name] = ident.model_copy(update={"previous": previous})
    return identity.model_copy(update=updates)


def _normalised(normalise: Callable[[str], str], value: str) -> str | None:
    try:
        return normalise(value)
    except DomainError:
        return None


# --------------------------------------------------------- suppression, subject refs


def _hmac(secret: bytes, message: str) -> str:
    return hmac_sha256(secret, message.encode()).hex()


@lru_cache(maxsize=65_536)
def suppression_key(secret: bytes, kind: str, value: str) -> str:
    """Keyed hash (HMAC-SHA256, hex) of one normalised identifier for the suppression list.

    `kind` is "email", "phone", or "<system>.<name>" for a system-local id. Raises
    DomainError for an empty or malformed value, ConfigError for an empty secret.
    """
    kind = kind.strip().lower()
    if kind == EMAIL:
        normalised = normalise_email(value)
    elif kind == PHONE:
        normalised = normalise_phone(value)
    else:
        normalised = value.strip()
    if not kind or not normalised:
        raise DomainError("empty identifier for suppression key")
    return _hmac(secret, f"privops-suppression:{kind}:{normalised}")


def _kinds(system: System | None, identifiers: Mapping[str, str]) -> Iterable[tuple[str, str]]:
    for name, value in identifiers.items():
        if name in (EMAIL, PHONE):
            yield name, value
        elif system is not None:
            yield f"{system}.{name}", value


def suppression_keys(secret: bytes, identity: IdentityMap) -> set[str]:
    """Every suppression key for a subject being erased: email, phone and system ids,
    current, and of the earlier ones those that stay the subject's (review, session 27:
    an earlier value can name someone else by now, and the list would drop his every
    later event: his grants, identifiers and retention facts):

    - earlier phones: none. Carriers reassign a number after a few months' quarantine,
      routinely: the subject's old number is likely a stranger's by now. A re-import of
      the subject mostly carries an email or an id too, which the list holds.
    - earlier emails: kept. Most providers never reissue an address, the others only
      after long disuse, and the current email may be recycled just the same once the
      subject leaves it, a risk the list runs already. Leaving them out brings back the
      finding they were listed for: an erased person re-imported under an old address,
      and marketed to again. A stranger one does catch has his events flagged, not
      applied (a withdrawal still is): rare, and a harm towards not contacting him.
    - earlier system-local ids (customer_id, contact_id ...): kept; a system never
      gives one to another person.

    A phone a system still holds as current but the subject has since replaced
    elsewhere (they told orders their new number, not the CRM) is an earlier phone too:
    only the latest number (``identity.phone``) is listed (second review, session 27).

    An email learnt before control characters made one malformed (review, session 25)
    is left out, not raised: raising would dead-letter the erasure's suppression of
    everything else, and an event carrying it is refused at ingest now anyway.
    """
    pairs: list[tuple[str, str]] = []
    latest_phone = identity.phone.value if identity.phone else None
    for system, own in identity.systems.items():
        for name, ident in own.items():
            if name == PHONE and _normalised(normalise_phone, ident.value) != latest_phone:
                continue  # an earlier phone too: a system not told of the newer number
            for value in (ident.value, *_suppressed_earlier(name, ident)):
                pairs.extend(_kinds(system, {name: value}))
    for name, shared in ((EMAIL, identity.email), (PHONE, identity.phone)):
        if shared:
            earlier = _suppressed_earlier(name, shared)
            pairs.extend((name, value) for value in (shared.value, *earlier))
    keys = set()
    for kind, value in pairs:
        try:
            keys.add(suppression_key(secret, kind, value))
        except DomainError:
            continue
    return keys


def _suppressed_earlier(name: str, ident: Identifier) -> list[str]:
    """The earlier values of `ident` the suppression list takes: all but a phone's."""
    return [] if name == PHONE else ident.earlier()


def identifier_keys(
    secret: bytes, identifiers: Mapping[str, str | None], system: System | None = None
) -> set[str]:
    """The suppression keys of the identifiers present (malformed values skipped).

    System-local ids only count when `system` is given.
    """
    present = {name: value for name, value in identifiers.items() if value and value.strip()}
    keys = set()
    for kind, value in _kinds(system, present):
        try:
            keys.add(suppression_key(secret, kind, value))
        except DomainError:
            continue
    return keys


def suppression_match(
    suppressed_keys: Collection[str],
    secrets: Sequence[bytes],
    identifiers: Mapping[str, str | None],
    system: System | None = None,
) -> str | None:
    """The suppression key the identifiers match, under the current pseudonym key
    (``secrets[0]``) or any it replaced (the rest), else None.

    Keys made before a rotation keep matching until the list is re-keyed: a caller that
    finds a match under an old key enters the current keys of the same identifiers.
    """
    for secret in secrets:
        for key in identifier_keys(secret, identifiers, system):
            if key in suppressed_keys:
                return key
    return None


def is_reimport(
    suppressed_keys: Collection[str],
    secret: bytes,
    identifiers: Mapping[str, str | None],
    system: System | None = None,
) -> bool:
    """True when any identifier matches the suppression list (flag it, do not re-activate)."""
    return suppression_match(suppressed_keys, (secret,), identifiers, system) is not None


def subject_ref(secret: bytes, subject_id: str) -> str:
    """Pseudonymous subject reference for audit and logs: "sr_" + 24 hex chars of an HMAC."""
    return SUBJECT_REF_PREFIX + _hmac(secret, f"privops-subject-ref:{subject_id}")[:24]
