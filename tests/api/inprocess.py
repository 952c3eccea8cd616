"""The HTTP app in-process over the built-in model, a real FileStore and directory-based
containers (``tests/conversation/fakes.py``): for testing the HTTP layer without sandboxes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from execbox import db
from execbox.api.app import create_app
from execbox.backends.base import ModelBackend
from execbox.backends.direct import DirectBackend
from execbox.backends.registry import Backends
from execbox.batches.runner import BatchRunner
from execbox.batches.store import BatchStore
from execbox.conversation.loop import Conversation
from execbox.conversation.thread_store import ThreadStore
from execbox.files.store import FileStore
from execbox.services import Services
from execbox.settings import Settings
from tests.conversation.fakes import FakeContainers


@asynccontextmanager
async def app_client(
    tmp_path: Path, backend: ModelBackend | None = None, **settings: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, Services]]:
    """An HTTP client of an in-process app with ``settings`` (and ``backend`` as the only
    model, if given), and the app's services."""
    config = Settings(data_dir=tmp_path, **settings)
    database = db.connect(f"sqlite:///{tmp_path / 'meta.db'}")
    db.create_tables(database)
    files = FileStore(database, tmp_path / "files", max_size=1_000_000)
    containers = FakeContainers(tmp_path / "containers", files, timeout_s=5)
    backends = Backends([backend or DirectBackend()])
    conversation = Conversation(
        backends=backends, containers=containers, files=files, settings=config, threads=ThreadStore(database)  # type: ignore[arg-type]
    )
    batches = BatchStore(database)
    runner = BatchRunner(batches, conversation, node="test", workers=0)
    services = Services(config, database, files, containers, backends, conversation, batches, runner)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=create_app(config, services))
    headers = {"anthropic-version": "2023-06-01"}
    async with httpx.AsyncClient(transport=transport, base_url="http://execbox.test", headers=headers) as client:
        yield client, services
    database.dispose()
