"""The runner's memory of final answers, so a re-sent task is answered, not re-executed.

privops re-sends under the same task id and Kafka may redeliver after a crash; the ledger
turns that at-least-once delivery into exactly-once effect. Only final answers are kept
(see ``Answer.final``): a retryable failure must run again when privops re-sends.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from privops.adapters.settings import Settings
from privops.core.errors import PrivopsError
from privops.core.records import (
    NotFound,
    Task,
    TaskCompleted,
    TaskFailed,
    TaskResult,
    TaskRetained,
)
from privops.core.vocab import System, TaskOutcome

_OUTCOME_OF: dict[type[TaskResult], TaskOutcome] = {
    TaskCompleted: TaskOutcome.completed,
    TaskFailed: TaskOutcome.failed,
    TaskRetained: TaskOutcome.retained,
    NotFound: TaskOutcome.not_found,
}
_RESULT_TYPES: dict[str, type[TaskResult]] = {t.__name__: t for t in _OUTCOME_OF}


class UnreadableAnswer(PrivopsError):
    """A kept row that is no answer this runner can read: a record type it does not know
    (a newer runner's, rolled back), JSON cut short, a model that no longer validates.
    ``kind`` says which by a type's name, never the row (it may hold an export's place)."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"the kept answer cannot be read ({kind})")
        self.kind = kind


def outcome_of(result: TaskResult) -> TaskOutcome:
    """The outcome a stored result stands for (the metric label of a duplicate)."""
    return _OUTCOME_OF[type(result)]


def ledger_path(settings: Settings, system: System) -> Path:
    """Where a system's ledger lives by default; instances of one system must share it."""
    return settings.home / "connectors" / f"{system}-ledger.db"


class Ledger:
    """Final answers by task id (SQLite). Quick local calls, made inline on the loop."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # Said, not left to how SQLite was built (some builds make WAL's default NORMAL):
        # FULL syncs each kept answer to disk before it is published and its offset
        # committed. Under NORMAL a power cut can lose the last ones, and a re-send is
        # then executed again: an erasure finds its rows gone (review, session 44).
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS answers ("
            " task_id TEXT PRIMARY KEY, request_id TEXT NOT NULL, action TEXT NOT NULL,"
            " outcome TEXT NOT NULL, record_type TEXT NOT NULL, record TEXT NOT NULL,"
            " first_attempt INTEGER NOT NULL, answered_at TEXT NOT NULL)"
        )

    def get(self, task_id: str) -> TaskResult | None:
        """The answer kept for ``task_id``, or None; ``UnreadableAnswer`` for a row that
        cannot be read as one (the runner then executes the task again)."""
        row = self._db.execute(
            "SELECT record_type, record FROM answers WHERE task_id = ?", (task_id,)
        ).fetchone()
        if row is None:
            return None
        model = _RESULT_TYPES.get(row[0])
        if model is None:
            raise UnreadableAnswer("unknown record type")
        # ValueError covers bad JSON and pydantic's ValidationError; TypeError a record
        # that is no text at all. Not chained: pydantic's message quotes the values.
        try:
            return model.model_validate(json.loads(row[1]))
        except (TypeError, ValueError) as exc:
            raise UnreadableAnswer(type(exc).__name__) from None

    def put(self, task: Task, outcome: str, result: TaskResult) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                task.task_id,
                task.request_id,
                str(task.action),
                outcome,
                type(result).__name__,
                result.model_dump_json(),
                task.attempt,
                result.answered_at.isoformat(),
            ),
        )

    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM answers").fetchone()[0])

    def close(self) -> None:
        self._db.close()
