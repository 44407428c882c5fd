"""The worker's sealer: privops' own copies of personal data under the subject's key.

``streams.state`` seals the personal values of the sealing tables (identities,
subject-facts, requests: privops.core.sealing) and of outputs that carry them (tasks,
notifications: ``streams.io.output``) when it flushes, under each subject's storage
key from the key store (``KeyStore.storage_key``: ``main``, or after an erasure the
retained scope that lasts longest, or none). It opens them when a table value is read
back, with the rings this worker holds; a ring is loaded before the agents read
(``ready``), so a key missing then is a key destroyed. docs/crypto-shredding.md,
"privops' own copies".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Final

from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    KafkaError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)

from privops.core.errors import RuntimeUnavailable
from privops.core.fieldcrypt import DataKey
from streams.keystore import KeyStore, NotOwned, key_store
from streams.state import Unsealable

log = logging.getLogger(__name__)

RETRY_SECONDS: Final = 0.5
RETRY_MAX_SECONDS: Final = 30.0
# What the broker refuses for good (an ACL taken away): waiting never helps, and the
# flush would wait holding the agents' lock. Raised, so the flush fails, and with it
# the worker (streams.state). aiokafka's ``retriable`` cannot tell: it says False for a
# delivery that timed out while a broker was gone, which is worth waiting out.
REFUSED: Final = (
    TopicAuthorizationFailedError,
    ClusterAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)


class WorkerSealer:
    """Storage keys from the key store; ``erased_at(partition, subject)`` reads the
    subject's consent state (an erased subject never gets a new ``main`` key)."""

    def __init__(
        self,
        erased_at: Callable[[int, str], bool],
        store: Callable[[], KeyStore] = key_store,
        moving: Callable[[], bool] = lambda: False,
    ) -> None:
        self._erased_at = erased_at
        self._store = store
        self._moving = moving  # a rebalance is under way (``State.in_rebalance``)

    async def ready(self) -> None:
        """Wait until the owned partitions' rings are read (before any table is read)."""
        store = self._store()
        if not store.ready:
            await store.until_loaded()

    async def storage_keys(self, wanted: Mapping[str, int]) -> dict[str, DataKey | None]:
        """Each subject's storage key; waits (with backoff) while the key store cannot
        answer (the broker, a ring still loading), and gives up (``Unsealable``) once
        the partitions are moving, or at the first such error during a rebalance (its
        own flush): the flush is dropped and its inputs replayed by their owner. Never
        waits on the assignment itself: the caller holds the state lock the
        revocation's handler needs (``KeyStore.ring`` fails at once after a
        revocation). A refusal for good (``REFUSED``) is raised: the flush fails, and
        with it the worker."""
        delay = RETRY_SECONDS
        while True:
            try:
                return await self._keys(wanted)
            except NotOwned as exc:
                raise Unsealable(str(exc)) from exc
            except REFUSED:
                raise
            except (RuntimeUnavailable, KafkaError) as exc:
                if self._moving():
                    # The rebalance's own flush, which nothing acknowledges: waiting out
                    # a broker problem here would hold the rebalance past the group's
                    # patience; dropped, its inputs are replayed by their owner.
                    raise Unsealable(f"{type(exc).__name__} during a rebalance") from exc
                log.warning("subject keys unavailable (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)

    async def _keys(self, wanted: Mapping[str, int]) -> dict[str, DataKey | None]:
        erased = {subject: self._erased_at(p, subject) for subject, p in wanted.items()}
        return await self._store().storage_keys(erased)

    def lookup(self, key_id: str) -> DataKey | None:
        return self._store().key(key_id)
