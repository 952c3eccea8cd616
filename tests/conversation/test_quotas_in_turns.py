"""An execution refused by the workspace's concurrency quota fails the request with 429
(and its retry-after), instead of becoming an `unavailable` tool result the model would
work around."""

from __future__ import annotations

from typing import Any

import pytest

from execbox.conversation.loop import Conversation
from execbox.errors import TooManyExecutions
from tests.conversation.build import request
from tests.conversation.fakes import FakeContainers


async def test_an_execution_over_the_quota_fails_the_request_with_429(
    conversation: Conversation, containers: FakeContainers, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse(*args: Any, **kwargs: Any) -> Any:
        raise TooManyExecutions(8, 32)

    monkeypatch.setattr(containers, "execute", refuse)
    turn = await conversation.start(request("```python\nprint(1)\n```\n", "code_execution_20250825"), "default")
    with pytest.raises(TooManyExecutions) as refused:
        await turn.complete()
    assert (refused.value.status, refused.value.retry_after) == (429, 1)
