"""The options the request verbs share, declared once.

typer has no option groups, so the options every submission takes live in one dataclass,
`Submission`, and `submission_verb` gives a verb all of them as a single argument.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields
from typing import Annotated, Any, get_type_hints

import typer

from privops.cli.common import Json

SEALED_HELP = (
    " Sealed by the worker before it is sent (it stays on privacy.commands): needs a worker"
    " answering."
)

RequestId = Annotated[str, typer.Argument(help="The request id (REQ-...).")]
Subject = Annotated[str, typer.Option("--subject", help="The subject id (as the systems know it).")]
Actor = Annotated[
    str | None,
    typer.Option("--actor", help="Who issues the command (default: PRIVOPS_ACTOR setting)."),
]
On = Annotated[str | None, typer.Option("--on", help="Date, YYYY-MM-DD (default: today, UK).")]
Received = Annotated[
    str | None,
    typer.Option(
        "--received", help="Date the request was received, YYYY-MM-DD (default: today, UK)."
    ),
]
IdentityVerifiedOn = Annotated[
    str | None,
    typer.Option(
        "--identity-verified",
        help=(
            "Date the subject's identity was verified, YYYY-MM-DD (the clock starts then, "
            "or on --identity-received if given)."
        ),
    ),
]
IdentityReceivedOn = Annotated[
    str | None,
    typer.Option(
        "--identity-received",
        help=(
            "Date the information asked for to confirm identity arrived, YYYY-MM-DD: the "
            "clock starts then, not when the check was finished. To `verify` after a day "
            "was recorded with the request: only an earlier one (a correction), as a "
            "later one would move the running clock out."
        ),
    ),
]
Representative = Annotated[
    str | None,
    typer.Option(
        "--representative",
        help=(
            "The request is made for the subject by someone else (a solicitor, an "
            "attorney, a parent): who, and how to reach them, in one line. Notices go to "
            "them once their authority is recorded; with --capacity." + SEALED_HELP
        ),
    ),
]
CapacityOption = Annotated[
    str | None,
    typer.Option(
        "--capacity",
        help=(
            "How the representative may act: authorised (the subject's written "
            "authority), attorney (power of attorney), deputy (Court of Protection) or "
            "parent (parental responsibility for a child)."
        ),
    ),
]
AuthorityReceivedOn = Annotated[
    str | None,
    typer.Option(
        "--authority-received",
        help=(
            "Date the evidence of the representative's authority arrived (once it "
            "satisfies you), YYYY-MM-DD: the clock counts from it. Without it, a request "
            "that changes or discloses data waits for it (`privops request authority`) "
            "and the clock does not start; notices go to the subject until it is recorded."
        ),
    ),
]
VerifiedNow = Annotated[
    bool, typer.Option("--verified-now", help="Identity is verified: on the date received.")
]
Note = Annotated[
    str | None,
    typer.Option(
        "--reason",
        help="Free-text reason or note for the audit trail (for `lift`: required, and told "
        "to the subject with the notice)." + SEALED_HELP,
    ),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the request id.")]
Wait = Annotated[
    float,
    typer.Option(
        "--wait",
        metavar="SECONDS",
        envvar="PRIVOPS_COMMAND_WAIT",
        help=(
            "How long to wait for the worker's answer (exit 3 if none comes); "
            "PRIVOPS_COMMAND_WAIT sets the default."
        ),
    ),
]
NoWait = Annotated[
    bool,
    typer.Option("--no-wait", help="Only publish: do not wait for the worker's answer."),
]
WAIT_S = 10.0


@dataclass(frozen=True)
class Submission:
    """What every submission verb is given: who the request is about, when it arrived,
    whether identity is settled, how to report it and how long to wait for the answer."""

    subject: Subject
    received: Received = None
    identity_verified: IdentityVerifiedOn = None
    identity_received: IdentityReceivedOn = None
    verified_now: VerifiedNow = False
    representative: Representative = None
    capacity: CapacityOption = None
    authority_received: AuthorityReceivedOn = None
    reason: Note = None
    actor: Actor = None
    as_json: Json = False
    quiet: Quiet = False
    wait: Wait = WAIT_S
    no_wait: NoWait = False


@dataclass(frozen=True)
class Delivery:
    """What every follow-up verb is given besides its own options: who issues the
    command, how to report it and how long to wait for the answer."""

    actor: Actor = None
    as_json: Json = False
    wait: Wait = WAIT_S
    no_wait: NoWait = False


def _parameters(bundle: type[Any]) -> list[inspect.Parameter]:
    hints = get_type_hints(bundle, include_extras=True)
    return [
        inspect.Parameter(
            f.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=inspect.Parameter.empty if f.default is MISSING else f.default,
            annotation=hints[f.name],
        )
        for f in fields(bundle)
    ]


def _bundled(verb: Callable[..., None], bundle: type[Any], lead: int) -> Callable[..., None]:
    """A typer command from `verb(common: <bundle>, **own_options)`: the bundle's first
    `lead` options, then the verb's own, then the rest of the bundle's."""
    own = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for name, p in inspect.signature(verb, eval_str=True).parameters.items()
        if name != "common"
    ]
    shared = _parameters(bundle)
    names = [p.name for p in shared]

    def command(**options: Any) -> None:
        verb(bundle(**{name: options.pop(name) for name in names}), **options)

    command.__name__ = verb.__name__
    command.__doc__ = verb.__doc__
    command.__signature__ = inspect.Signature([*shared[:lead], *own, *shared[lead:]])  # type: ignore[attr-defined]
    return command


def submission_verb(verb: Callable[..., None]) -> Callable[..., None]:
    """A typer command from `verb(common: Submission, **own_options)`.

    The command shows --subject first, then the verb's own options, then the rest of
    `Submission`: the order the CLI has always had.
    """
    return _bundled(verb, Submission, lead=1)


def follow_up_verb(verb: Callable[..., None]) -> Callable[..., None]:
    """A typer command from `verb(common: Delivery, **own_options)`: the request id and
    the verb's own options first, then --actor, --json, --wait, --no-wait."""
    return _bundled(verb, Delivery, lead=0)
