"""Amounts of money as a DPO writes them in a rectification ("£1,250.50"): pure.

The worker checks a corrected amount before it tells anyone of it (a recipient's Art. 19
notice goes out when the work starts), and the reference systems store it in pence with
the same reading, so the two never disagree about what is an amount.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Final

MAX_POUNDS: Final = Decimal("1000000000")
"""Above any balance or limit this business has: a typo of many digits, not an amount."""


def parse_pounds(value: str, *, signed: bool = False) -> int:
    """``value`` ("1250.50", "£1,250.50", "-20" where ``signed``) in pence; ValueError if
    it is not an amount in pounds and pence, is negative where not ``signed``, or is out
    of range. The message never quotes the value."""
    text = value.strip().removeprefix("£").replace(",", "")
    if text.startswith("-£"):
        text = "-" + text[2:]
    try:
        pounds = Decimal(text)
        exact = pounds.is_finite() and pounds == pounds.quantize(Decimal("0.01"))
    except (InvalidOperation, ArithmeticError):
        exact = False
    if not exact:
        raise ValueError("not an amount in pounds and pence")
    if pounds < 0 and not signed:
        raise ValueError("a negative amount")
    if abs(pounds) > MAX_POUNDS:
        raise ValueError("an amount out of range")
    return int(pounds * 100)
