"""The data map: the company's processing described as data (DESIGN.md section 3).

One YAML file says which system holds which categories, how long each category is
kept and why, who receives it, and for which purposes. Erasure plans, task fan-out,
DSAR manifests and the Art. 30 record are all derived from it, so a wrong file is
rejected at start-up with the field path and the YAML line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date
from enum import StrEnum
from typing import Annotated, Any, Final

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from privops.core.errors import ConfigError
from privops.core.exports import root_problem, roots_overlap
from privops.core.vocab import Category, Channel, LawfulBasis, Purpose, System

# Identifier kinds the identity map and the systems' task payloads understand.
IDENTIFIER_KINDS: frozenset[str] = frozenset(
    {
        "customer_id",
        "account_number",
        "email",
        "phone",
        "postal_address",
        "contact_id",
        "device_id",
        "cookie_id",
        "camera_ref",
    }
)

# UK plus the EEA: no transfer safeguard is needed for recipients here.
UK_EEA_COUNTRIES: frozenset[str] = frozenset(
    {
        *("GB", "IS", "LI", "NO"),
        *("AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE"),
        *("IT", "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE"),
    }
)

_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_COUNTRY_RE = re.compile(r"^[A-Z]{2}$")
_MONTH_DAY_RE = re.compile(r"^\d{2}-\d{2}$")
FIELD_NAME_RE: Final = re.compile(r"^[a-z]+(?:_[a-z]+)*$")
"""A rectifiable field's name: lower-case words joined by ``_`` (``overdue_balance``)."""

STATEMENT_PREFIX: Final = "statement:"
"""A rectification's key for a supplementary statement (Art. 16, completion) about a
category: ``statement:<category>`` -> the statement's text."""

DEFAULT_CONTACT_FIELDS: Final = ("name", "email", "phone", "address", "postcode")
"""The contact fields a DPO may rectify when the data map lists none for ``contact``."""

NonEmptyStr = Annotated[str, Field(min_length=1)]

DEFAULT_REQUEST_RECORD_DAYS: Final = 2192
"""Six years (and the leap days in them): claims about how a request was handled can be
brought for six years (Limitation Act 1980 s.5)."""
MIN_REQUEST_RECORD_DAYS: Final = 90
"""The DPO answers a complaint about a request from its record, and the ICO expects a
complaint within three months of the last contact about it."""
MIN_EXPORT_DAYS: Final = 120
"""The shortest an access copy is kept from its making: a response may go out three
months after the request (a month, and two more when extended) and the subject needs
four weeks to fetch it."""
DEFAULT_REQUEST_RECORD_GROUND: Final = (
    "legal_obligation / legal_claims: accountability for how each rights request was "
    "handled (Art. 5(2)); claims can be brought for 6 years (Limitation Act 1980 s.5)"
)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _ReferenceError(ValueError):
    """A cross-reference problem; carries the field path so the loader can find the line."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(f"{_dotted(loc)}: {message}")
        self.loc = loc
        self.message = message


# --- organisation -----------------------------------------------------------------------


class Contact(_Model):
    name: str | None = None
    email: NonEmptyStr
    phone: NonEmptyStr


class Organisation(_Model):
    controller: NonEmptyStr
    company_number: str | None = None
    address: NonEmptyStr
    ico_registration: NonEmptyStr
    dpo: Contact
    security_measures: str = ""
    # "MM-DD", the last day of the company's financial year (accounting reference date).
    # Financial records are kept a number of years from the end of the year they fall in.
    financial_year_end: str | None = None

    @field_validator("financial_year_end")
    @classmethod
    def _month_day(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _MONTH_DAY_RE.match(value):
            raise ValueError('financial_year_end must be "MM-DD", e.g. "03-31"')
        month, day = int(value[:2]), int(value[3:])
        if (month, day) == (2, 29):
            raise ValueError('financial_year_end 02-29 does not exist every year; use "02-28"')
        try:
            date(2001, month, day)
        except ValueError:
            raise ValueError(f"financial_year_end {value} is not a day of the year") from None
        return value

    def financial_year_end_of(self, day: date) -> date:
        """The last day of the financial year that contains `day`.

        Raises ConfigError when the data map names no financial year end.
        """
        if self.financial_year_end is None:
            raise ConfigError("organisation.financial_year_end: not set in the data map")
        month, end_day = int(self.financial_year_end[:2]), int(self.financial_year_end[3:])
        end = date(day.year, month, end_day)
        return end if end >= day else date(day.year + 1, month, end_day)


# --- systems ----------------------------------------------------------------------------


class Grant(StrEnum):
    """A permission to contact the subject that a system may record (from 0.45).

    A system's events may narrow contact whatever the data map says (a withdrawal, an
    objection, an opt-out box ticked, a TPS listing, marketing cookies refused); one that
    widens it is taken only from a system the data map lets record it
    (``SystemSpec.may_grant``). Before, every system could: cctv's
    ``TpsStatusChecked(listed=false)`` made a listed number callable, and any system's
    ``ConsentGiven`` opened a channel (review, session 44).
    """

    consent = "consent"
    """Explicit consent (``ConsentGiven``), and opting back in after an objection."""
    soft_opt_in = "soft_opt_in"
    """A sale's or quote's soft opt-in (``OrderPlaced``, ``QuoteRequested``)."""
    tps_screening = "tps_screening"
    """A TPS/CTPS screening that finds the number unlisted (``TpsStatusChecked``)."""
    tps_waiver = "tps_waiver"
    """The subscriber's notice that they do not object to calls (``TpsWaiverRecorded``)."""
    marketing_cookies = "marketing_cookies"
    """Marketing cookies accepted (``CookieConsentRecorded``)."""


DEFAULT_GRANTS: Final[dict[Category, tuple[Grant, ...]]] = {
    Category.marketing_preferences: (Grant.consent, Grant.tps_screening, Grant.tps_waiver),
    Category.purchases: (Grant.consent, Grant.soft_opt_in),
    Category.web: (Grant.consent, Grant.marketing_cookies),
}
"""What a system whose data map entry has no ``grants`` may record, by the categories it
holds: the system of record for marketing choices records them all; the one recording
sales, consent (a checkout's tick boxes) and its sales' soft opt-ins; the websites,
consent (a sign-up form) and cookie choices. A system holding none of these (call
recordings, footage) records none, and only a holder of marketing preferences records
TPS screenings and waivers. The worker logs what each system may record at start."""


class RetryPolicy(_Model):
    max_attempts: int = Field(default=3, ge=1, le=20)
    backoff_seconds: float = Field(gt=0)
    backoff_multiplier: float = Field(default=2.0, ge=1.0)

    def delay_after(self, attempt: int) -> float:
        """Seconds to wait, after attempt number `attempt` (1-based) timed out, before resending."""
        if attempt < 1:
            raise ValueError("attempt is 1-based")
        return self.backoff_seconds * self.backoff_multiplier ** (attempt - 1)


class SystemSpec(_Model):
    description: NonEmptyStr
    categories: tuple[Category, ...] = Field(min_length=1)
    identifiers: tuple[str, ...] = Field(min_length=1)
    # Filled from the system name by DataMap when absent ("privacy.tasks.<system>").
    task_topic: Annotated[str, Field(pattern=_TOPIC_RE.pattern)]
    sla_seconds: float = Field(gt=0)
    retry: RetryPolicy
    # Where the system's exports live ("https://host/path/" or "file:///path/"). An export
    # answer is passed to the subject only if its location lies below this root
    # (privops.core.exports); a system without one cannot answer an access request.
    export_root: str | None = None
    # Its exports may show other people (CCTV footage of other visitors, a recording of
    # another caller): an access response that carries one waits for the DPO, who redacts
    # or withholds it and approves the response (UK GDPR Art. 15(4); DPA 2018 Sch. 2
    # para. 16; `privops request redact|approve`).
    review_before_disclosure: bool = False
    # It finds people by what they say of themselves, not only by an identifier (CCTV
    # footage by day, hours and place): an access request's search details go with its
    # export task, and it is asked even when no system reported the subject
    # (privops.core.search).
    searched_by_details: bool = False
    # Which permissions to contact the subject its events may record (``Grant``); absent:
    # those its categories imply (``DEFAULT_GRANTS``); ``[]``: none.
    grants: tuple[Grant, ...] | None = None

    @property
    def may_grant(self) -> frozenset[Grant]:
        """The permissions this system's events may record (``grants``, or its
        categories' ``DEFAULT_GRANTS``)."""
        if self.grants is not None:
            return frozenset(self.grants)
        return frozenset(g for c in self.categories for g in DEFAULT_GRANTS.get(c, ()))

    @field_validator("export_root")
    @classmethod
    def _export_root(cls, value: str | None) -> str | None:
        problem = None if value is None else root_problem(value)
        if problem is not None:
            raise ValueError(f"export_root {problem}")
        return value

    @model_validator(mode="after")
    def _check(self) -> SystemSpec:
        if len(set(self.categories)) != len(self.categories):
            raise ValueError("categories: duplicate category")
        if self.grants is not None and len(set(self.grants)) != len(self.grants):
            raise ValueError("grants: duplicate grant")
        unknown = [i for i in self.identifiers if i not in IDENTIFIER_KINDS]
        if unknown:
            raise ValueError(f"identifiers: unknown {unknown}; known: {sorted(IDENTIFIER_KINDS)}")
        if self.searched_by_details and self.export_root is None:
            raise ValueError(
                "searched_by_details: a system searched for an access request needs an "
                "export_root for its copies"
            )
        if self.searched_by_details and not self.review_before_disclosure:
            # A search finds whoever was there: the DPO checks it is the subject, and
            # what shows others, before anything goes out (review, session 36).
            raise ValueError(
                "searched_by_details: what a search finds shows other people, and may not "
                "be the subject: set review_before_disclosure: true"
            )
        return self


# --- categories and retention -----------------------------------------------------------


class CategorySpec(_Model):
    description: NonEmptyStr
    # The fields of this category a DPO may rectify (`privops request rectify --set`);
    # absent: none, except contact's DEFAULT_CONTACT_FIELDS. A field is one category's.
    fields: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _check_fields(self) -> CategorySpec:
        seen: set[str] = set()
        for i, name in enumerate(self.fields or ()):
            if not FIELD_NAME_RE.match(name):
                raise _ReferenceError(
                    ("fields", i),
                    f"field {name!r} is not a field name: lower-case words joined by _",
                )
            if name in seen:
                raise _ReferenceError(("fields", i), f"field {name} listed twice")
            seen.add(name)
        return self


class RetentionCondition(StrEnum):
    """A retention condition that is not a plain period."""

    while_account_or_debt_open = "while_account_or_debt_open"
    until_erasure_or_objection = "until_erasure_or_objection"


class InvestigationHold(_Model):
    """Kept while an investigation is open, then this many days after it concludes."""

    investigation_hold_plus_days: int = Field(ge=0)


class RetentionAnchor(StrEnum):
    """What the retention period counts from."""

    collected = "collected"
    latest_financial_record = "latest_financial_record"
    # The end of the company's financial year (organisation.financial_year_end) that
    # contains the latest financial record: HMRC and the Companies Act count from it.
    end_of_financial_year = "end_of_financial_year"
    account_or_debt_closed = "account_or_debt_closed"
    last_activity = "last_activity"


class RetentionRule(_Model):
    period_days: int | None = Field(default=None, ge=1)
    # Calendar years: "6 years from 31 March 2021" ends on 31 March 2027, whatever the
    # leap days, which a count of days cannot say.
    period_years: int | None = Field(default=None, ge=1)
    period_from: RetentionAnchor = RetentionAnchor.collected
    ground: NonEmptyStr
    criteria: NonEmptyStr
    condition: RetentionCondition | InvestigationHold | None = None
    # Art. 17(3)(b): the period is a legal obligation an erasure request does not override.
    overrides_erasure: bool = False
    # Art. 17(3)(e): kept, with no end date, while a credit account or a debt is open.
    kept_while_account_or_debt_open: bool = False

    @model_validator(mode="after")
    def _check(self) -> RetentionRule:
        if self.period_days is not None and self.period_years is not None:
            raise ValueError("give period_days or period_years, not both")
        if self.overrides_erasure and not self.has_period:
            raise ValueError("overrides_erasure needs period_days or period_years")
        return self

    @property
    def has_period(self) -> bool:
        return self.period_days is not None or self.period_years is not None

    def describe(self) -> str:
        """The rule in one line, for the Art. 30 record and DSAR manifests."""
        parts: list[str] = []
        if self.period_from is RetentionAnchor.end_of_financial_year:
            anchor = "the end of the financial year of the latest financial record"
        else:
            anchor = self.period_from.value.replace("_", " ")
        if self.period_days is not None:
            parts.append(f"{self.period_days} days from {anchor}")
        elif self.period_years is not None:
            parts.append(f"{self.period_years} years from {anchor}")
        if isinstance(self.condition, InvestigationHold):
            parts.append(
                "while an investigation is open, then "
                f"{self.condition.investigation_hold_plus_days} days after it concludes"
            )
        elif self.condition is not None:
            parts.append(self.condition.value.replace("_", " "))
        if self.kept_while_account_or_debt_open and (
            self.condition is not RetentionCondition.while_account_or_debt_open
        ):
            parts.append("and while an account or debt is open")
        return "; ".join(parts) or "no fixed period"


class AccessExports(_Model):
    """How long a system keeps the copy it made for an access request (its export, a
    plaintext copy of the subject's data, and a search's copy showing other people), from
    when it made it; then the system deletes it (``privops.connectors.retention
    .export_limit``). The subject is told how long they have to fetch it. Absent: kept
    until the subject's erasure takes it, as before 0.36."""

    period_days: int | None = Field(default=None, ge=MIN_EXPORT_DAYS)

    def describe(self) -> str:
        if self.period_days is None:
            return "until the subject's erasure"
        return f"{self.period_days} days after each is made, then deleted by its system"


class RequestRecords(_Model):
    """How long privops keeps its own record of a rights request once it is finished
    (``workflow.expires_on``): the requests table's entry (dates, states, the tasks and
    the systems' answers, the DPO's reasons, an access request's manifest) and the
    request index's. The pseudonymous audit trail (privacy.audit) keeps who did what
    and when for its own 10 years, whatever this says."""

    period_days: int = Field(default=DEFAULT_REQUEST_RECORD_DAYS, ge=MIN_REQUEST_RECORD_DAYS)
    ground: NonEmptyStr = DEFAULT_REQUEST_RECORD_GROUND

    def describe(self) -> str:
        return f"{self.period_days} days after the request is finished, then deleted"


# --- recipients -------------------------------------------------------------------------


class RecipientKind(StrEnum):
    payment_processor = "payment_processor"
    credit_reference_agency = "credit_reference_agency"
    debt_collection_agency = "debt_collection_agency"
    supplier = "supplier"
    group_company = "group_company"
    fraud_prevention_agency = "fraud_prevention_agency"
    service_provider = "service_provider"
    public_authority = "public_authority"


class Recipient(_Model):
    name: NonEmptyStr
    kind: RecipientKind
    description: NonEmptyStr
    categories: tuple[Category, ...] = Field(min_length=1)
    # Names of the purposes (keys of `purposes`) for which the data is disclosed.
    purposes: tuple[NonEmptyStr, ...] = Field(min_length=1)
    country: Annotated[str, Field(pattern=_COUNTRY_RE.pattern)]
    transfer_safeguard: str | None = None
    # Whether erasure/restriction/rectification must be passed on (Art. 19).
    notify_on_rights_requests: bool = True

    @property
    def outside_uk_eea(self) -> bool:
        return self.country not in UK_EEA_COUNTRIES

    @model_validator(mode="after")
    def _check(self) -> Recipient:
        if self.outside_uk_eea and not self.transfer_safeguard:
            raise ValueError(
                f"transfer_safeguard is required for a recipient in {self.country} "
                "(outside the UK/EEA)"
            )
        return self


# --- purposes ---------------------------------------------------------------------------


class AutomatedDecisionMaking(_Model):
    solely_automated: bool
    profiling: bool
    description: NonEmptyStr
    logic: NonEmptyStr
    consequences: NonEmptyStr


PORTABLE_BASES: Final = frozenset({LawfulBasis.consent, LawfulBasis.contract})
"""The lawful bases under which the right to data portability applies (Art. 20(1)(a))."""


class PurposeSpec(_Model):
    description: NonEmptyStr
    lawful_basis: LawfulBasis
    legitimate_interest: str | None = None
    consent_purpose: Purpose | None = None
    categories: tuple[Category, ...] = Field(min_length=1)
    data_subjects: tuple[NonEmptyStr, ...] = Field(min_length=1)
    channels: tuple[Channel, ...] = ()
    systems: tuple[System, ...] = ()
    source: str | None = None
    automated_decision: AutomatedDecisionMaking | None = None
    # What makes the purpose one of the subject's, from 0.38: an access response lists it
    # (with its source, its automated decisions and the recipients it discloses to) only
    # for a subject whose data in its systems holds one of these (credit accounts: those
    # with credit data). Empty: any of its categories does. Every customer's contact
    # details are in the orders system, so without it every customer was told they had
    # been credit-scored.
    applies_when_held: tuple[Category, ...] = ()
    # What a portability request (Art. 20, from 0.39) asks this purpose's systems for:
    # the categories of it the subject gave us. Unset: every category of a purpose based
    # on consent or a contract that names no ``source`` (what others told us is not the
    # subject's to port), none of any other. Only on consent or a contract.
    portable: tuple[Category, ...] | None = None

    def portable_categories(self) -> frozenset[Category]:
        """The categories of this purpose a portability request covers (``portable``)."""
        if self.portable is not None:
            return frozenset(self.portable)
        if self.lawful_basis in PORTABLE_BASES and self.source is None:
            return frozenset(self.categories)
        return frozenset()

    @model_validator(mode="after")
    def _check(self) -> PurposeSpec:
        if stray := [c.value for c in self.portable or () if c not in self.categories]:
            raise ValueError(f"portable: {', '.join(stray)} is not among the purpose's categories")
        if self.portable and self.lawful_basis not in PORTABLE_BASES:
            raise ValueError(
                "portable: the right to data portability applies to processing based on "
                "consent or a contract only (UK GDPR Art. 20(1)(a)), not "
                f"{self.lawful_basis.value}"
            )
        if stray := [c.value for c in self.applies_when_held if c not in self.categories]:
            raise ValueError(
                f"applies_when_held: {', '.join(stray)} is not among the purpose's categories"
            )
        if self.lawful_basis is LawfulBasis.none:
            raise ValueError("lawful_basis: every purpose needs a lawful basis")
        if self.lawful_basis is LawfulBasis.legitimate_interest and not self.legitimate_interest:
            raise ValueError("legitimate_interest: name the interest pursued (Art. 13(1)(d))")
        return self


# --- the map ----------------------------------------------------------------------------


class DataMap(_Model):
    organisation: Organisation
    categories: dict[Category, CategorySpec]
    systems: dict[System, SystemSpec]
    retention: dict[Category, RetentionRule]
    recipients: tuple[Recipient, ...] = ()
    purposes: dict[NonEmptyStr, PurposeSpec]
    request_records: RequestRecords = RequestRecords()
    access_exports: AccessExports = AccessExports()

    @model_validator(mode="after")
    def _searched_copies_expire(self) -> DataMap:
        """A copy a search made for someone no system knows is filed under no one, so no
        erasure finds it; only its period ends it (review, session 36)."""
        searched = self.searched_by_details()
        if searched and self.access_exports.period_days is None:
            raise ValueError(
                f"access_exports.period_days: {', '.join(s.value for s in searched)} "
                "searched_by_details "
                "makes copies no erasure finds; say how many days they are kept"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _default_task_topics(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        systems = data.get("systems")
        if not isinstance(systems, Mapping):
            return data
        filled: dict[Any, Any] = {}
        for name, spec in systems.items():
            if isinstance(spec, Mapping) and "task_topic" not in spec:
                spec = {**spec, "task_topic": f"privacy.tasks.{name}"}
            filled[name] = spec
        return {**data, "systems": filled}

    @model_validator(mode="after")
    def _check_references(self) -> DataMap:
        problems = list(_reference_problems(self))
        if problems:
            raise problems[0]
        return self

    # --- queries ---

    def systems_holding(self, category: Category) -> list[System]:
        return [s for s in System if s in self.systems and category in self.systems[s].categories]

    def searched_by_details(self) -> list[System]:
        """The systems an access request's search details go to (``searched_by_details``:
        CCTV footage by day, hours and place; privops.core.search)."""
        return [s for s, spec in self.systems.items() if spec.searched_by_details]

    def categories_of(self, system: System) -> list[Category]:
        spec = self.systems.get(system)
        if spec is None:
            return []
        return [c for c in Category if c in spec.categories]

    def recipients_of(self, categories: Iterable[Category]) -> list[Recipient]:
        """Recipients that received at least one of `categories`, in file order."""
        wanted = set(categories)
        return [r for r in self.recipients if wanted.intersection(r.categories)]

    def recipients_for_purpose(self, purpose: str) -> list[Recipient]:
        return [r for r in self.recipients if purpose in r.purposes]

    def retention_for(self, category: Category) -> RetentionRule:
        try:
            return self.retention[category]
        except KeyError:
            raise ConfigError(f"retention.{category}: no retention rule") from None

    def holdings(self) -> dict[System, set[Category]]:
        """Every system with every category it may hold: the default when nothing is known."""
        return {s: set(spec.categories) for s, spec in self.systems.items()}

    def portable(self) -> dict[System, set[Category]]:
        """What a portability request (UK GDPR Art. 20(1)) covers, system by system: the
        categories each processes for a purpose based on consent or a contract whose
        data the subject gave us (``PurposeSpec.portable_categories``: by default a
        purpose without a ``source``; what other parties told us, such as credit
        reference agencies' files, is not the subject's to port). A purpose naming no
        system is any system's holding one of its categories. A system with none is not
        asked."""
        portable: dict[System, set[Category]] = {}
        for name, spec in self.purposes.items():
            if not (covered := spec.portable_categories()):
                continue
            for system, held in self.systems.items():
                if self._serves(name, system):
                    portable.setdefault(system, set()).update(covered & set(held.categories))
        return {s: cats for s, cats in portable.items() if cats}

    def objection_purposes(self) -> dict[str, PurposeSpec]:
        """The purposes an Art. 21(1) objection can stop: those based on legitimate
        interests, but direct marketing's (an Art. 21(2) objection of its own, absolute)."""
        return {
            name: spec
            for name, spec in self.purposes.items()
            if spec.lawful_basis is LawfulBasis.legitimate_interest
            and spec.consent_purpose is not Purpose.marketing
        }

    def purposes_at(self, system: System, names: Iterable[str]) -> list[str]:
        """Those of the purposes ``names`` that ``system`` processes for (a purpose naming
        no system is any system's that holds one of its categories)."""
        return sorted(name for name in names if self._serves(name, system))

    def _serves(self, name: str, system: System) -> bool:
        spec = self.purposes.get(name)
        if spec is None:
            return False
        if spec.systems:
            return system in spec.systems
        found = self.systems.get(system)
        return found is not None and bool(set(spec.categories) & set(found.categories))

    def purposes_for(self, categories: Iterable[Category]) -> dict[str, PurposeSpec]:
        wanted = set(categories)
        return {k: p for k, p in self.purposes.items() if wanted.intersection(p.categories)}

    def fields_of(self, category: Category) -> tuple[str, ...]:
        """The fields of ``category`` a DPO may rectify (contact's default when unlisted)."""
        spec = self.categories.get(category)
        if spec is None:
            return ()
        if spec.fields is None:
            return DEFAULT_CONTACT_FIELDS if category is Category.contact else ()
        return spec.fields

    def rectifiable_fields(self) -> dict[str, Category]:
        """Every field a rectification may carry, with its category, in file order."""
        return {name: cat for cat in self.categories for name in self.fields_of(cat)}

    def rectified_category(self, key: str) -> Category | None:
        """The category a rectification's key concerns: a field's, or the category of a
        supplementary statement (``statement:<category>``); None if it names neither."""
        if key.startswith(STATEMENT_PREFIX):
            name = key.removeprefix(STATEMENT_PREFIX)
            return next((c for c in self.categories if c.value == name), None)
        return self.rectifiable_fields().get(key)


def _reference_problems(dm: DataMap) -> Iterable[_ReferenceError]:
    yield from _field_problems(dm)
    yield from _system_problems(dm)
    yield from _retention_problems(dm)
    yield from _recipient_problems(dm)
    yield from _purpose_problems(dm)


def _field_problems(dm: DataMap) -> Iterable[_ReferenceError]:
    """A field is one category's: a rectification of it goes to the systems holding
    that category, and is told to the recipients that received that category."""
    owner: dict[str, Category] = {}
    for cat in dm.categories:
        for i, name in enumerate(dm.fields_of(cat)):
            if name in owner:
                default = (
                    " (its default fields; list contact's fields to change them)"
                    if owner[name] is Category.contact
                    and dm.categories[Category.contact].fields is None
                    else ""
                )
                yield _ReferenceError(
                    ("categories", cat.value, "fields", i),
                    f"field {name} is already {owner[name].value}'s{default}: "
                    "a field belongs to one category",
                )
            else:
                owner[name] = cat


def _system_problems(dm: DataMap) -> Iterable[_ReferenceError]:
    declared = set(dm.categories)
    topics: dict[str, System] = {}
    for system, spec in dm.systems.items():
        for i, cat in enumerate(spec.categories):
            if cat not in declared:
                yield _ReferenceError(
                    ("systems", system.value, "categories", i), f"category {cat} not declared"
                )
            if cat not in dm.retention:
                yield _ReferenceError(
                    ("systems", system.value, "categories", i),
                    f"category {cat} has no retention rule",
                )
        yield from _export_root_problems(dm, system, spec)
        if spec.task_topic in topics:
            yield _ReferenceError(
                ("systems", system.value, "task_topic"),
                f"topic {spec.task_topic} already used by {topics[spec.task_topic]}",
            )
        topics[spec.task_topic] = system


def _export_root_problems(
    dm: DataMap, system: System, spec: SystemSpec
) -> Iterable[_ReferenceError]:
    if spec.export_root is None:
        return
    for other, other_spec in dm.systems.items():
        if other == system:
            break  # each pair once, reported on the later system
        if other_spec.export_root is not None and roots_overlap(
            spec.export_root, other_spec.export_root
        ):
            yield _ReferenceError(
                ("systems", system.value, "export_root"),
                f"overlaps {other}'s export root: each system needs a directory of its own",
            )


def _retention_problems(dm: DataMap) -> Iterable[_ReferenceError]:
    for cat, rule in dm.retention.items():
        if cat not in dm.categories:
            yield _ReferenceError(("retention", cat.value), f"category {cat} not declared")
        if (
            rule.period_from is RetentionAnchor.end_of_financial_year
            and dm.organisation.financial_year_end is None
        ):
            yield _ReferenceError(
                ("retention", cat.value, "period_from"),
                "end_of_financial_year needs organisation.financial_year_end",
            )


def _recipient_problems(dm: DataMap) -> Iterable[_ReferenceError]:
    for n, rec in enumerate(dm.recipients):
        for i, cat in enumerate(rec.categories):
            if cat not in dm.categories:
                yield _ReferenceError(
                    ("recipients", n, "categories", i), f"category {cat} not declared"
                )
        for i, purpose_name in enumerate(rec.purposes):
            if purpose_name not in dm.purposes:
                yield _ReferenceError(
                    ("recipients", n, "purposes", i), f"purpose {purpose_name} not in purposes"
                )


def _purpose_problems(dm: DataMap) -> Iterable[_ReferenceError]:
    for name, purpose in dm.purposes.items():
        for i, cat in enumerate(purpose.categories):
            if cat not in dm.categories:
                yield _ReferenceError(
                    ("purposes", name, "categories", i), f"category {cat} not declared"
                )
        for i, system in enumerate(purpose.systems):
            if system not in dm.systems:
                yield _ReferenceError(
                    ("purposes", name, "systems", i), f"system {system} not in systems"
                )


# --- parsing ----------------------------------------------------------------------------


def parse_datamap(text: str, *, source: str = "<data map>") -> DataMap:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}:{where}: invalid YAML: {problem}") from exc
    if root is None or not isinstance(data, dict):
        raise ConfigError(f"{source}: line 1: the data map must be a YAML mapping")
    _reject_duplicate_keys(root, source)
    try:
        return DataMap.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, root, source)) from exc


def _reject_duplicate_keys(node: yaml.Node, source: str, loc: tuple[str | int, ...] = ()) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                raise ConfigError(
                    f"{source}: {_dotted((*loc, key))} (line {key_node.start_mark.line + 1}): "
                    "duplicate key"
                )
            seen.add(key)
            _reject_duplicate_keys(value_node, source, (*loc, key))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _reject_duplicate_keys(item, source, (*loc, i))


def _describe(exc: ValidationError, root: yaml.Node, source: str) -> str:
    lines: list[str] = []
    for err in exc.errors():
        loc: tuple[str | int, ...] = tuple(err["loc"])
        message = err["msg"]
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, _ReferenceError):
            loc = (*loc, *cause.loc)
            message = cause.message
        path, line = _locate(root, loc)
        lines.append(f"{_dotted(path) or '<root>'} (line {line}): {message}")
    count = len(lines)
    head = f"{source}: invalid data map ({count} problem{'s' if count != 1 else ''})"
    return "\n".join([head, *(f"  {line}" for line in lines)])


def _locate(root: yaml.Node, loc: tuple[str | int, ...]) -> tuple[tuple[str | int, ...], int]:
    """Walk the composed YAML along a pydantic loc; return the path found and its line (1-based).

    Parts that are not in the document (union member tags, a missing field) are skipped or
    end the walk, so the line is the deepest node that exists.
    """
    node = root
    path: list[str | int] = []
    line = root.start_mark.line + 1
    for part in loc:
        if part == "[key]" and path:
            continue  # the key node's line is already the current line
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if str(key_node.value) == str(part):
                    child = value_node
                    line = key_node.start_mark.line + 1
                    break
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(node.value)
        ):
            child = node.value[part]
            line = child.start_mark.line + 1
        if child is None:
            if isinstance(part, str) and not _is_pydantic_tag(part):
                path.append(part)
                break
            continue
        node = child
        path.append(part)
    return tuple(path), line


def _is_pydantic_tag(part: str) -> bool:
    return "[" in part or part[:1].isupper() or part in {"str", "int", "float", "bool", "none"}


def _dotted(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
