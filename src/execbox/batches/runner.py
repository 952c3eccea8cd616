"""The batch worker pool: runs each pending batch request like a direct Messages call.

``workers`` tasks each claim one request at a time (``BatchStore.claim``), run it through
the conversation layer (code execution, containers and files as in ``POST /v1/messages``)
and record its result. A sweeper expires batches past their 24 hours and forgets ended
batches after their retention. At start-up, requests this node was running when it died
are recorded as errored: they may have run code, so they are never run a second time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from execbox.batches.store import BatchStore, Claimed
from execbox.conversation.loop import Conversation, Turn
from execbox.db import utcnow
from execbox.errors import ExecboxError
from execbox.ids import new_id
from execbox.protocol.messages import MessageCreateParams

log = logging.getLogger("execbox.batches")

RESULTS_RETENTION = timedelta(days=29)
# Error types the SDKs accept inside an ``errored`` result; others map to the nearest one.
_RESULT_ERROR_TYPES = {
    "invalid_request_error", "authentication_error", "billing_error", "permission_error", "not_found_error",
    "rate_limit_error", "timeout_error", "api_error", "overloaded_error",
}
INTERRUPTED_MESSAGE = (
    "The server stopped while this request was running. It may have run code, so it was not run again."
)


def errored(error_type: str, message: str) -> dict[str, Any]:
    if error_type not in _RESULT_ERROR_TYPES:
        error_type = "invalid_request_error" if error_type in ("request_too_large", "conflict_error") else "api_error"
    return {
        "type": "errored",
        "error": {"type": "error", "error": {"type": error_type, "message": message}, "request_id": new_id("req")},
    }


class BatchRunner:
    """Background execution of batch requests (see the module docstring)."""

    def __init__(
        self,
        store: BatchStore,
        conversation: Conversation,
        *,
        node: str,
        workers: int,
        poll_interval_s: float = 1.0,
        on_result: Callable[[Claimed, dict[str, Any]], None] | None = None,
    ) -> None:
        self.store = store
        self.conversation = conversation
        self.node = node
        self.workers = max(0, workers)
        self.poll_interval_s = poll_interval_s
        self.on_result = on_result
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._running: dict[asyncio.Task[Any], tuple[Claimed, Turn | None]] = {}
        self._stopping = False

    @property
    def running(self) -> int:
        return len(self._running)

    async def start(self) -> None:
        recovered = await asyncio.to_thread(self.store.recover, self.node, errored("api_error", INTERRUPTED_MESSAGE))
        if recovered:
            log.warning("%d batch request(s) were interrupted by the last stop; recorded as errored, not rerun",
                        recovered)
        self._tasks = [asyncio.create_task(self._work(), name=f"execbox-batch-worker-{i}")
                       for i in range(self.workers)]
        self._tasks.append(asyncio.create_task(self._sweep(), name="execbox-batch-sweeper"))

    def wake(self) -> None:
        """New requests are waiting: let idle workers look now rather than at the next poll."""
        self._wake.set()

    def stop_claiming(self) -> None:
        self._stopping = True
        self._wake.set()

    def cancel_running(self) -> None:
        for task in list(self._running):
            task.cancel()

    async def stop(self, grace_s: float = 0.0) -> None:
        """Stop claiming; let running requests finish for up to ``grace_s``, then cancel them.
        A cancelled request that had not called the model yet goes back to ``pending``."""
        self._stopping = True
        self._wake.set()
        if self._running and grace_s > 0:
            log.info("waiting up to %.0fs for %d running batch request(s)", grace_s, len(self._running))
            await asyncio.wait(list(self._running), timeout=grace_s)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _work(self) -> None:
        while not self._stopping:
            try:
                claimed = await asyncio.to_thread(self.store.claim, self.node, utcnow())
            except Exception:
                log.exception("claiming a batch request failed")
                claimed = None
            if claimed is None:
                self._wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)
                continue
            await self._run(claimed)

    async def _run(self, claimed: Claimed) -> None:
        holder: dict[str, Turn] = {}
        task = asyncio.ensure_future(self._result(claimed, holder))
        self._running[task] = (claimed, None)
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            turn = holder.get("turn")
            if turn is None or (turn.model_calls == 0 and turn.executions == 0):
                await asyncio.to_thread(self.store.release, claimed, self.node)
            else:
                await asyncio.to_thread(
                    self.store.finish, claimed, self.node,
                    errored("api_error", "The server shut down while this request was running."),
                )
            raise
        finally:
            self._running.pop(task, None)
        try:
            if await asyncio.to_thread(self.store.finish, claimed, self.node, result) and self.on_result:
                await asyncio.to_thread(self.on_result, claimed, result)
        except Exception:
            # The claim stays ``running``: the next start-up records it as interrupted.
            log.exception("recording the result of %s request %d failed", claimed.batch_id, claimed.idx)

    async def _result(self, claimed: Claimed, holder: dict[str, Turn]) -> dict[str, Any]:
        try:
            params = await asyncio.to_thread(MessageCreateParams.model_validate_json, claimed.params)
            turn = await self.conversation.start(params, claimed.workspace)
            holder["turn"] = turn
            message = await turn.complete()
        except ExecboxError as exc:
            return errored(exc.type, exc.message)
        except ValidationError as exc:
            return errored("invalid_request_error", str(exc.errors(include_url=False)[:3]))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("batch %s request %s failed", claimed.batch_id, claimed.custom_id)
            return errored("api_error", "Internal server error.")
        body = message.model_dump(mode="json")
        body["usage"]["service_tier"] = "batch"
        return {"type": "succeeded", "message": body}

    async def _sweep(self) -> None:
        while True:
            try:
                ended = await asyncio.to_thread(self.store.expire_due, utcnow())
                if ended:
                    log.info("%d message batch(es) reached their expiry and ended", ended)
                await asyncio.to_thread(self.store.purge_ended, utcnow() - RESULTS_RETENTION)
            except Exception:
                log.exception("batch sweep failed")
            await asyncio.sleep(max(self.poll_interval_s, 1.0))
