"""Heavy host-side file work (listings, reads and writes of box files) on its own threads,
a few at a time per workspace.

Such work is sized by what sandboxed code left on its disk, so one workspace could
otherwise occupy every worker thread, and with them the database calls of everyone
else's requests (which run in the default thread pool). Here it runs in a pool of its
own, and a workspace waits for its own earlier operations beyond ``per_workspace`` at
once: others' requests, and others' heavy operations while threads remain, go ahead.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class HeavyWork:
    def __init__(self, threads: int, per_workspace: int) -> None:
        self.per_workspace = max(1, per_workspace)
        self._pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="execbox-files")
        self._slots: dict[str, tuple[asyncio.Semaphore, int]] = {}  # workspace -> (slots, users)

    async def run(self, workspace: str, func: Callable[..., T], *args: Any) -> T:
        """``func(*args)`` in the pool, once the workspace has a free slot."""
        slots, users = self._slots.get(workspace) or (asyncio.Semaphore(self.per_workspace), 0)
        self._slots[workspace] = (slots, users + 1)
        try:
            async with slots:
                return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(func, *args))
        finally:
            slots, users = self._slots[workspace]
            if users == 1:
                del self._slots[workspace]
            else:
                self._slots[workspace] = (slots, users - 1)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
