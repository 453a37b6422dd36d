"""Group commit for accepted prompts: concurrent submissions share one fsync.

Every accepted prompt must be on disk before the server answers, and an fsync costs the same
for one row as for fifty. Submissions that arrive while a commit is in flight wait for the next
one, which writes them all in one transaction.
"""

from __future__ import annotations

import asyncio

from latentgraph.server.store import QueueItem, Store


class Acceptor:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._waiting: list[tuple[QueueItem, asyncio.Future]] = []
        self._committing = False

    async def add(self, item: QueueItem) -> None:
        """Returns once ``item`` is durable; raises ``DuplicatePromptId`` if its id is taken."""
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if not self._committing:
            self._committing = True
            asyncio.get_running_loop().create_task(self._commit_loop())
        await future

    async def _commit_loop(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    errors = await asyncio.to_thread(self.store.enqueue_many, [item for item, _ in batch])
                except Exception as exc:  # the disk failed: every waiting request hears it
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), error in zip(batch, errors):
                    if future.done():
                        continue
                    if error is None:
                        future.set_result(None)
                    else:
                        future.set_exception(error)
        finally:
            self._committing = False
