"""Legal holds: placing and releasing them, one rule for every agent that reads them.

A hold blocks erasure of its categories (Art. 17(3)(e)) from when it is placed until it
is released, and each system holding a held category is told, so that its own deletion
by age keeps them too (``fanout.hold_states``). Commands can be redelivered, so placing
a hold id twice and releasing a hold that is not active both leave the holds as they are
and say so (`changed` False): the request workflow rejects the release of an unknown
hold, and writes the holds only when they changed.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Final, NamedTuple

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from privops.core import records as r
from privops.core.vocab import Category

PLACED_AHEAD: Final = timedelta(minutes=5)
"""How far ahead of the worker's clock a command is accepted (``facts.MAX_CLOCK_SKEW``,
kept equal by a test): a hold placed by a DPO whose clock runs ahead is in force when
the worker takes it. Before, it was ignored until the worker's clock reached its date,
while its record had already reached the systems, so an erasure re-sent meanwhile went
out still listing the held category, issued after that record (review, session 33)."""


class LegalHold(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    hold_id: str = Field(min_length=1)
    subject_id: str = Field(min_length=1)
    categories: tuple[Category, ...] = Field(min_length=1)
    reason: str = Field(min_length=1)
    placed_at: AwareDatetime
    released_at: AwareDatetime | None = None

    def active_at(self, now: datetime) -> bool:
        """In force at ``now``: placed (a placement dated up to PLACED_AHEAD after ``now``
        included) and not released by then."""
        placed = self.placed_at - PLACED_AHEAD <= now
        return placed and (self.released_at is None or self.released_at > now)

    @property
    def active(self) -> bool:
        """Not released (yet); `active_at` also checks when it was placed."""
        return self.released_at is None


class HoldUpdate(NamedTuple):
    holds: tuple[LegalHold, ...]
    changed: bool


def update_holds(
    holds: Iterable[LegalHold], cmd: r.LegalHoldPlaced | r.LegalHoldReleased
) -> HoldUpdate:
    """The subject's holds after `cmd`; `changed` is False for a repeat or an unknown release.

    Pure. A placement's time is the command's `issued_at`, and so is a release's.
    """
    current = tuple(holds)
    if isinstance(cmd, r.LegalHoldPlaced):
        if any(h.hold_id == cmd.hold_id for h in current):
            return HoldUpdate(current, changed=False)
        placed = LegalHold(
            hold_id=cmd.hold_id,
            subject_id=cmd.subject_id,
            categories=tuple(cmd.categories),
            reason=cmd.reason,
            placed_at=cmd.issued_at,
        )
        return HoldUpdate((*current, placed), changed=True)
    if not any(h.hold_id == cmd.hold_id and h.active for h in current):
        return HoldUpdate(current, changed=False)
    released = tuple(
        h.model_copy(update={"released_at": cmd.issued_at})
        if h.hold_id == cmd.hold_id and h.active
        else h
        for h in current
    )
    return HoldUpdate(released, changed=True)
