"""Decoding input nobody vouches for: limits, the one error boundary, untrusted schemas.

Threat (DESIGN.md sections 4 and 8): anyone who can reach the schema registry can
register a schema under one of our record names, and anyone who can produce to a topic
chooses the bytes. Both reached fastavro, a C extension that trusts what it is given: a
writer schema nested 20,000 deep overflowed the C stack, an ``array<null>`` with a block
count of 2^40 looped for hours, and odd inputs raised exception types that escaped the
agents. What we chose, and why:

- **Only committed schemas are ever handed to fastavro.** A writer schema from outside is
  parsed here with hard limits (size, JSON nesting, must be a JSON object) before
  fastavro computes its Parsing Canonical Form, and is then only used to look up the
  committed version with the same fingerprint (``privops.adapters.avro.Contract``); the
  committed version, not the outside text, is what fastavro reads with. The fingerprint
  is SHA-256, not the spec's CRC-64-AVRO, because CRC-64 collisions are easy to make.
  So the hostile-schema class (deep recursion, odd types, a different record) is
  refused before fastavro sees it.
- **Hostile bytes with a trusted schema cost work linear in a capped length, with a
  capped number of items**: see ``privops.adapters.bounds``.
- **Every failure becomes ``DecodeError``** (the reason the dead-letter path records).
  JSON and registry answers are caught narrowly; fastavro (undocumented error set) and
  model validation go through ``guarded``, the single broad catch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from fastavro.schema import to_parsing_canonical_form
from pydantic import ValidationError

from privops.core.errors import DecodeError

Schema = dict[str, Any]
P = ParamSpec("P")
T = TypeVar("T")

#: Kafka's default ``message.max.bytes`` is 1 MiB; nothing larger is a message of ours.
MAX_PAYLOAD_BYTES = 1024 * 1024
#: The largest committed schema is under 2 KB and 10 levels deep (checked at start-up).
MAX_SCHEMA_CHARS = 64 * 1024
MAX_SCHEMA_DEPTH = 32
#: A registry answer carries the schema JSON-escaped, plus a few fields.
MAX_REGISTRY_ANSWER_BYTES = 4 * MAX_SCHEMA_CHARS
_DETAIL_CHARS = 500


def guarded(reason: str, what: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Call ``fn``; whatever it raises becomes ``DecodeError(reason)`` (the one broad catch).

    Validation errors are described by field and message only: the input values may be
    personal data and the detail ends up on the dead-letter topic.
    """
    try:
        return fn(*args, **kwargs)
    except DecodeError:
        raise
    except ValidationError as exc:
        raise DecodeError(reason, f"{what}: {problems(exc)}"[:_DETAIL_CHARS]) from exc
    # Broad on purpose: fastavro is a C extension with no documented error set, and any
    # exception escaping a decode stops the agent with nothing dead-lettered.
    except Exception as exc:
        raise DecodeError(reason, f"{what}: {type(exc).__name__}: {exc}"[:_DETAIL_CHARS]) from exc


def problems(exc: ValidationError) -> str:
    """A validation error by field and message only, never the input's values (they may
    be personal data, and the text goes to the dead-letter topic): pydantic's own text
    quotes each value."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
        for e in exc.errors(include_url=False, include_input=False)
    )


def untrusted_schema(writer: Schema | str) -> Schema:
    """A writer schema from outside, parsed within limits; ``unknown_schema`` otherwise."""
    if isinstance(writer, str):
        if len(writer) > MAX_SCHEMA_CHARS:
            raise DecodeError("unknown_schema", f"schema of {len(writer)} characters is too large")
        try:
            writer = json.loads(writer)
        except (ValueError, RecursionError) as exc:
            raise DecodeError(
                "unknown_schema", f"schema is not JSON: {exc}"[:_DETAIL_CHARS]
            ) from exc
    if not isinstance(writer, dict):
        raise DecodeError("unknown_schema", f"a {type(writer).__name__} schema is not a record")
    if too_deep(writer, MAX_SCHEMA_DEPTH):
        raise DecodeError("unknown_schema", f"schema nested deeper than {MAX_SCHEMA_DEPTH}")
    return writer


def too_deep(value: Any, limit: int) -> bool:
    """JSON nesting beyond ``limit``, found without recursion (the input may be very deep)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = list(node.values())
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def fingerprint(schema: Schema) -> str:
    """SHA-256 of the Parsing Canonical Form: equal exactly when the wire format is equal."""
    canonical = guarded("unknown_schema", "writer schema", to_parsing_canonical_form, schema)
    return hashlib.sha256(canonical.encode()).hexdigest()


def schema_label(schema: Schema) -> str:
    """The record name a schema claims, shortened: it is chosen by whoever registered it."""
    name, namespace = schema.get("name"), schema.get("namespace")
    label = f"{namespace}.{name}" if namespace and "." not in str(name) else str(name)
    return repr(label[:100])
