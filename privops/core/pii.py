"""Recognising raw contact details in text, so audit, logs and notices never carry them."""

from __future__ import annotations

import re

# Any letters, not only ASCII: privops takes an address with an internationalised domain
# or local part (``identity.normalise_email``), so it must find one too (review, session
# 35: "ann@exämple.com" passed, "jürgen@example.com" kept "jü", "ann_smith@..." "ann_").
_EMAIL = re.compile(r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}")
# For finding one: a match starts only where a run of local-part characters starts.
# Tried at every character of a long run (``"a" * n + "@"``), the search above is
# quadratic (one hostile field of 64 KiB held the event loop for seconds); this one is
# linear and finds an address wherever the other does. Not for ``redact``: after a
# replaced address, the lookbehind sees its last character and misses one glued on
# ("ann@example.com+bob@example.org").
_ANY_EMAIL = re.compile(r"(?<![\w.%+-])" + _EMAIL.pattern)
# Phone numbers, as ``identity.normalise_phone`` takes them (before, only the UK's +44
# and 0 forms were found: "0044 7700 900123" and "+1 415 555 0100" reached the audit;
# review, session 35). Not glued to word characters or decimals, so ids, hashes and
# offsets pass; and the ids privops makes (UUIDs, "REQ-" and 12 hex digits) must never
# match (an audit id that did would stop the worker, a request id that did was refused
# for good), so the forms without a + or a leading 0 and 1-9 are separated by spaces
# only and start a word of their own (after a space, a bracket or nothing: never glued
# to an id by its dash):
# - a UK number with a leading 0, then 9 or 10 digits (spaces, dashes, dots, a
#   bracketed area code between them);
# - +44, then the same (with "(0)" allowed), or + and any other country's number, 8
#   to 15 digits in all: no id or hash holds a +;
# - 0044 or 44 and a UK number, or 00 and another country's, spaces between digits.
_PHONE = re.compile(
    r"(?<![\w+.])(?:"
    r"\(?0[1-9](?:[\s.)-]{0,2}\d){8,9}"
    r"|\+44[\s-]?(?:\(0\)[\s-]?)?[1-9](?:[\s.)-]{0,2}\d){8,9}"
    r"|\+[\s-]?[1-9](?:[\s().-]{0,2}\d){7,14}"
    r"|(?<![^\s(\[])(?:(?:00)?44 ?[1-9](?: ?\d){8,9}|00 ?[1-9](?: ?\d){7,13})"
    r")(?!\w|\.\d)"
)


# What audit records and the ids privops admits have been held to from the start (UK
# numbers, ASCII addresses): narrower than the patterns above on purpose (``recorded``).
_RECORDED_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
)
_RECORDED_PHONE = re.compile(
    r"(?<![\w+.])(?:\+44[\s-]?(?:\(0\)[\s-]?)?|\(?0)[1-9](?:[\s)-]{0,2}\d){8,9}(?!\w|\.\d)"
)


def recorded_as_contact(text: str) -> bool:
    """Whether ``text`` holds contact details by the rule audit records and admitted ids
    have always been held to: what the audit's model refuses on reading as on writing,
    and what an id may not look like. Narrower than ``looks_like_pii`` on purpose: an
    audit record written under it must stay readable for its ten years (``audit
    verify`` decodes every one), and a request admitted under it must keep taking its
    commands and answers (diff review, session 35: widened, it made old records
    unreadable and stored requests unreachable). Text privops writes is redacted with
    the wider ``redact`` first, so it always passes."""
    return bool(("@" in text and _RECORDED_EMAIL.search(text)) or _RECORDED_PHONE.search(text))


def looks_like_pii(text: str) -> bool:
    """True if `text` holds something shaped like an email address or a phone number.

    The email pattern runs only on text with an "@" (none matches without one): ~0.1 µs
    for the test against ~1 µs for the search on an audit chain key."""
    return bool(("@" in text and _ANY_EMAIL.search(text)) or _PHONE.search(text))


REDACT_CHARS = 4096
"""The most of a long text to redact before cutting it shorter (``redact`` is quadratic
on hostile text; what lies this far past a cut at a few hundred characters cannot reach
the kept part unless redactions shortened the text by thousands of characters)."""


def redact(text: str) -> str:
    """`text` with email addresses and phone numbers replaced by a marker.

    Quadratic in the length of a run of address characters: give it bounded text (the
    callers cut to a few KiB first; redacting first, then cutting, so that the cut
    leaves no part of an address or number behind)."""
    if "@" in text:
        text = _EMAIL.sub("[email]", text)
    return _PHONE.sub("[phone]", text)
