"""Consent and marketing preferences: pure rules, no Kafka, no I/O (DESIGN.md section 5).

Agents decode upstream events and commands into `ConsentFact`s (privops.core.facts),
fold them into the subject's `SubjectConsent` with `apply()` (fold), publish the new
state and the returned `ConsentChange`s (audit + `privops_consent_changes_total`), and
answer "may we contact this subject on channel C for purpose P at time T?" with
`decide()` (decision). The state model and its ordering rules are in `model`.
"""

from __future__ import annotations

from privops.core.consent.decision import (
    TPS_SCREENING_MAX_AGE,
    Decision,
    Evidence,
    Rule,
    decide,
    decide_erased,
)
from privops.core.consent.fold import apply, apply_all
from privops.core.consent.model import (
    CONSENT_PURPOSES,
    ELECTRONIC_CHANNELS,
    OBJECTION_PURPOSES,
    RECENT_EVENT_IDS,
    ConsentChange,
    ConsentEntry,
    ConsentFact,
    FactKind,
    Marker,
    SoftOptIn,
    SubjectConsent,
    entry_key,
)

__all__ = [
    "CONSENT_PURPOSES",
    "ELECTRONIC_CHANNELS",
    "OBJECTION_PURPOSES",
    "RECENT_EVENT_IDS",
    "TPS_SCREENING_MAX_AGE",
    "ConsentChange",
    "ConsentEntry",
    "ConsentFact",
    "Decision",
    "Evidence",
    "FactKind",
    "Marker",
    "Rule",
    "SoftOptIn",
    "SubjectConsent",
    "apply",
    "apply_all",
    "decide",
    "decide_erased",
    "entry_key",
]
