"""The ``database_url`` fixture: store-level tests run once per supported database.

SQLite always; the PostgreSQL database at ``EXECBOX_TEST_DATABASE_URL`` too when that
variable is set (e.g. ``postgresql+psycopg://execbox:execbox@127.0.0.1/execbox``). Every test
there gets a fresh schema, selected through the URL's ``search_path`` and dropped afterwards.
Import the fixture into a test package's conftest.py to use it there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest
import sqlalchemy as sa

SERVER_URL = os.environ.get("EXECBOX_TEST_DATABASE_URL", "")
SERVER_NAME = sa.make_url(SERVER_URL).get_backend_name() if SERVER_URL else "postgresql"


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param(
            "server",
            id=SERVER_NAME,
            marks=pytest.mark.skipif(not SERVER_URL, reason="EXECBOX_TEST_DATABASE_URL is not set"),
        ),
    ]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database for ``execbox.db.connect``."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'meta.db'}"
        return
    schema = f"test_{uuid4().hex}"
    admin = sa.create_engine(SERVER_URL, poolclass=sa.NullPool)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    url = sa.make_url(SERVER_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
