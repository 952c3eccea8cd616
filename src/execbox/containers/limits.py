"""Concurrent executions: a quota per workspace, with a bounded queue, and one cap for the host.

A workspace may run ``per_workspace`` executions at once; up to ``queue`` more wait their
turn, and any beyond that are refused at once with 429 ``rate_limit_error`` (with
``retry-after``). Every execution also takes one of the host's ``host`` slots, so bursts from
many workspaces queue instead of overloading the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from execbox.errors import TooManyExecutions


class ExecutionGate:
    def __init__(self, per_workspace: int, queue: int, host: int) -> None:
        self.per_workspace = max(1, per_workspace)
        self.queue = max(0, queue)
        self.host = asyncio.Semaphore(max(1, host))
        self._workspaces: dict[str, asyncio.Semaphore] = {}
        self._holding: dict[str, int] = {}  # running or waiting, by workspace

    @contextlib.asynccontextmanager
    async def slot(self, workspace: str) -> AsyncIterator[None]:
        """Hold an execution slot of ``workspace`` and of the host; TooManyExecutions if the
        workspace's queue is full."""
        holding = self._holding.get(workspace, 0)
        if holding >= self.per_workspace + self.queue:
            raise TooManyExecutions(self.per_workspace, self.queue)
        self._holding[workspace] = holding + 1
        semaphore = self._workspaces.setdefault(workspace, asyncio.Semaphore(self.per_workspace))
        try:
            async with semaphore, self.host:
                yield
        finally:
            self._holding[workspace] -= 1
            if not self._holding[workspace]:
                del self._holding[workspace]
                self._workspaces.pop(workspace, None)
