"""The tool loop over a real FileStore, the built-in direct model and a directory-based
stand-in for the containers (see ``fakes.py``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from execbox import db
from execbox.backends.base import ModelBackend
from execbox.backends.direct import DirectBackend
from execbox.backends.registry import Backends
from execbox.conversation.loop import Conversation
from execbox.conversation.thread_store import ThreadStore
from execbox.files.store import FileStore
from execbox.settings import Settings
from tests.conversation.fakes import FakeContainers


@pytest.fixture
def database(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = db.connect(f"sqlite:///{tmp_path / 'meta.db'}")
    db.create_tables(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def files(tmp_path: Path, database: sa.Engine) -> FileStore:
    return FileStore(database, tmp_path / "files", max_size=1_000_000)


@pytest.fixture
def thread_store(database: sa.Engine) -> ThreadStore:
    return ThreadStore(database)


@pytest.fixture
def containers(tmp_path: Path, files: FileStore) -> FakeContainers:
    return FakeContainers(tmp_path / "containers", files, timeout_s=2)


MakeConversation = Callable[..., Conversation]


@pytest.fixture
def make_conversation(
    tmp_path: Path, files: FileStore, containers: FakeContainers, thread_store: ThreadStore
) -> MakeConversation:
    """``make_conversation(backend=None, **settings)``: a Conversation with those settings."""

    def make(backend: ModelBackend | None = None, **settings: Any) -> Conversation:
        return Conversation(
            backends=Backends([backend or DirectBackend()]),
            containers=containers,  # type: ignore[arg-type]
            files=files,
            settings=Settings(data_dir=tmp_path, **settings),
            threads=thread_store,
        )

    return make


@pytest.fixture
def conversation(make_conversation: MakeConversation) -> Conversation:
    return make_conversation()
