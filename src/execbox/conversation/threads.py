"""Message threads: the server keeps a conversation so a client sends only what is new.

The SDKs' tool runners thread by default. The first request carries
``thread: {"type": "create"}`` and the full history; each later one
``thread: {"type": "continue", "previous_message_id": <the last response's id>}``, only the
messages after that response (none after a ``pause_turn``: the held turn resumes) and no
``system`` or ``tools`` (the thread keeps those of its creation; sending them again is
``thread_fingerprint_mismatch``). A response can be continued once (``thread_already_continued``;
``thread_continue_in_flight`` while a continue runs) and for ``thread_ttl`` seconds after it was
stored (then ``thread_not_found``). With threads switched off every ``thread`` is answered
``thread_unsupported_request``, on which the SDKs resend the full conversation without one.
The field is never ignored: a ``continue`` carries only part of the conversation.

Each check that can fail runs before any side effect (no container, no usage); a continue
that fails after claiming its response gives the claim back.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from execbox.conversation.history import with_response
from execbox.conversation.thread_store import StoredThread, ThreadStore
from execbox.db import utcnow
from execbox.errors import (
    InvalidRequest,
    ThreadAlreadyContinued,
    ThreadContinueInFlight,
    ThreadFingerprintMismatch,
    ThreadNotFound,
    ThreadUnsupportedRequest,
)
from execbox.protocol.messages import Message, MessageCreateParams, ThreadContinue

log = logging.getLogger("execbox.threads")

# The request fields a thread keeps from its creation.
CREATE_ONLY_FIELDS = ("system", "tools")


class ThreadTurn:
    """One request on a thread: the request as the model sees it (with the stored history,
    system and tools), and the storing of its response."""

    def __init__(
        self, store: ThreadStore, ttl_s: float, params: MessageCreateParams, workspace: str, continues: str | None
    ) -> None:
        self._store = store
        self._ttl = timedelta(seconds=ttl_s)
        self.params = params
        self.workspace = workspace
        self.continues = continues  # the response this turn continues (claimed), if any
        self._done = False

    async def store(self, message: Message, history: list[dict[str, Any]]) -> None:
        """Keep ``history`` plus ``message`` under the message's id. Best effort: a failure
        is logged, and the client's next continue gets ``thread_not_found`` and replays."""
        params = self.params
        system = params.system
        thread = StoredThread(
            id=message.id,
            workspace=self.workspace,
            system=system if system is None or isinstance(system, str) else [
                block.model_dump(mode="json", exclude_unset=True) for block in system
            ],
            tools=None if params.tools is None else [
                tool.model_dump(mode="json", exclude_unset=True) for tool in params.tools
            ],
            messages=with_response(history, [block.model_dump(mode="json") for block in message.content]),
            stop_reason=message.stop_reason,
            container_id=message.container.id if message.container else None,
        )
        now = utcnow()
        try:
            await asyncio.to_thread(self._store.store, thread, now, now + self._ttl, self.continues)
        except Exception:
            log.exception("could not store thread state for %s", message.id)
            return
        self._done = True

    async def finish(self) -> None:
        """The request is over: a continue whose response was not stored gives its claim back."""
        if self._done or self.continues is None:
            return
        self._done = True
        try:
            await asyncio.to_thread(self._store.release, self.continues)
        except Exception:
            log.exception("could not release thread state %s", self.continues)


class Threads:
    """Opens the ``ThreadTurn`` of each request that carries ``thread``."""

    def __init__(self, store: ThreadStore | None, *, enabled: bool, ttl_s: float) -> None:
        self._store = store if enabled else None
        self._ttl_s = ttl_s

    async def sweep_forever(self, interval_s: float) -> None:
        """Delete expired thread state every ``interval_s`` seconds (run as a task)."""
        while True:
            await asyncio.sleep(interval_s)
            if self._store is None:
                continue
            try:
                await asyncio.to_thread(self._store.purge, utcnow())
            except Exception:
                log.exception("thread sweep failed")

    async def begin(self, params: MessageCreateParams, workspace: str) -> ThreadTurn | None:
        """None for a request without ``thread``; else its turn, whose ``params`` the request
        runs with. Raises the thread errors of the module docstring."""
        if params.thread is None:
            return None
        if self._store is None:
            raise ThreadUnsupportedRequest("message threads are switched off on this server.")
        if not isinstance(params.thread, ThreadContinue):
            return ThreadTurn(self._store, self._ttl_s, params, workspace, continues=None)
        repeated = [field for field in CREATE_ONLY_FIELDS if field in params.model_fields_set]
        if repeated:
            raise ThreadFingerprintMismatch(repeated)
        previous = params.thread.previous_message_id
        claim = await asyncio.to_thread(self._store.claim, previous, workspace, utcnow())
        if claim == "not_found":
            raise ThreadNotFound(previous)
        if claim == "continued":
            raise ThreadAlreadyContinued(previous)
        if claim == "in_flight":
            raise ThreadContinueInFlight(previous)
        assert isinstance(claim, StoredThread)
        turn = ThreadTurn(self._store, self._ttl_s, params, workspace, continues=previous)
        try:
            turn.params = await asyncio.to_thread(_continued, params, claim)
        except BaseException:
            await turn.finish()
            raise
        return turn


def _continued(params: MessageCreateParams, stored: StoredThread) -> MessageCreateParams:
    """``params`` with the stored conversation before its messages, and the thread's system,
    tools and (unless the request names one) container."""
    if not params.messages and stored.stop_reason != "pause_turn":
        raise InvalidRequest(
            "messages: an empty list only resumes a `pause_turn` response; "
            f"`{stored.id}` stopped with `{stored.stop_reason}`."
        )
    body = params.model_dump(mode="json", exclude_unset=True)
    body["messages"] = [*stored.messages, *body.get("messages", [])]
    for field, value in (("system", stored.system), ("tools", stored.tools)):
        if value is not None:
            body[field] = value
    if params.container is None and stored.container_id:
        body["container"] = stored.container_id
    try:
        return MessageCreateParams.model_validate(body)
    except ValidationError as exc:  # the stored part was valid, so the new part is not
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InvalidRequest(f"{where}: {first['msg']}") from None
