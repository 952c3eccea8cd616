"""The servers the SDK end-to-end calls run against, and their settings.

- ``e2e_url``: executions time out after ``EXEC_TIMEOUT_S``, turns pause after
  ``MAX_TOOL_ITERATIONS`` executions, output files over ``OUTPUT_FILE_LIMIT`` are refused.
- ``expiring_url``: containers expire ``CONTAINER_TTL_S`` after their last use.
- ``keyed_url``: API keys ``key-a`` (workspace ``a``) and ``key-b`` (workspace ``b``).
- ``short_batches_url``: one batch worker, batches expire ``BATCH_EXPIRY_S`` after creation.

Each fixture's environment variable (``E2E_URL``, ``E2E_EXPIRING_URL``, ``E2E_KEYED_URL``,
``E2E_SHORT_BATCHES_URL``)
names a running server to use instead of starting one.
"""

from __future__ import annotations

EXEC_TIMEOUT_S = 3
MAX_TOOL_ITERATIONS = 5
OUTPUT_FILE_LIMIT = 64 * 1024
CONTAINER_TTL_S = 2
BATCH_EXPIRY_S = 3

SERVER_ARGS = {
    "E2E_URL": [
        "--exec-timeout",
        str(EXEC_TIMEOUT_S),
        "--max-tool-iterations",
        str(MAX_TOOL_ITERATIONS),
        "--output-file-limit",
        str(OUTPUT_FILE_LIMIT),
    ],
    "E2E_EXPIRING_URL": ["--container-ttl", str(CONTAINER_TTL_S), "--reaper-interval", "1"],
    "E2E_KEYED_URL": [],
    "E2E_SHORT_BATCHES_URL": ["--batch-workers", "1", "--batch-expiry", str(BATCH_EXPIRY_S)],
}
SERVER_ENV = {"E2E_KEYED_URL": {"EXECBOX_API_KEYS": "a:key-a,b:key-b"}}
