"""Fixtures for the end-to-end tests: the servers of ``servers.py``.

``sdk_calls/`` runs under two SDK versions: the main environment's (2.x) and the 1.1 release
(``test_sdk_versions.py`` runs it in ``.venv/sdk-1.1``, which has no execbox installed and
gets the URLs of this session's servers through the environment).
"""

from __future__ import annotations

import os

import pytest

from tests.e2e.servers import SERVER_ARGS, SERVER_ENV


def _url(request: pytest.FixtureRequest, name: str) -> str:
    if os.environ.get(name):
        return os.environ[name]
    start_server = request.getfixturevalue("start_server")
    return start_server(env=SERVER_ENV.get(name), args=SERVER_ARGS[name]).url


@pytest.fixture(scope="session")
def e2e_url(request: pytest.FixtureRequest) -> str:
    return _url(request, "E2E_URL")


@pytest.fixture(scope="session")
def expiring_url(request: pytest.FixtureRequest) -> str:
    return _url(request, "E2E_EXPIRING_URL")


@pytest.fixture(scope="session")
def keyed_url(request: pytest.FixtureRequest) -> str:
    return _url(request, "E2E_KEYED_URL")


@pytest.fixture(scope="session")
def short_batches_url(request: pytest.FixtureRequest) -> str:
    return _url(request, "E2E_SHORT_BATCHES_URL")
