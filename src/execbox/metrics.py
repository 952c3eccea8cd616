"""Prometheus metrics, served at ``/metrics``.

Every layer records into the collectors defined here (this module imports nothing of
execbox, so any layer may use it). Each server process has a registry of its own
(``Metrics``), so test servers in one process do not share counts.

Names and labels:

- ``execbox_http_requests_total{method, route, status}`` and
  ``execbox_http_request_duration_seconds{method, route}``: ``route`` is the route's
  template (``/v1/containers/{container_id}/exec``), ``unmatched`` for unknown paths.
- ``execbox_executions_total{tool, path, outcome}`` and
  ``execbox_execution_duration_seconds{tool, path}``: ``tool`` is ``python``, ``bash`` or
  ``editor``; ``path`` the execution path (``fork``: the fork server, ``bwrap``: a fresh
  sandbox and interpreter);
  ``outcome`` one of ``ok``, ``error`` (non-zero return code or a refused edit), ``timeout``,
  ``oom``, ``failed`` (the sandbox could not run it; path ``unknown``), ``paused`` (a cell
  that stopped to wait for client tool results; its continuation counts again).
- ``execbox_executions_in_progress`` and ``execbox_executions_waiting`` (queued behind
  another execution in the same container).
- ``execbox_containers_live``: active containers, all workspaces, and ``execbox_kernels_live``:
  running live Python kernels (both read at scrape time).
- ``execbox_model_requests_total{backend, model, outcome}`` and
  ``execbox_model_request_duration_seconds{backend, model}``: calls to model backends
  (``outcome``: ``ok`` or the error type, e.g. ``rate_limit_error``).
- ``execbox_messages_total{model, stop_reason}``: Messages responses.

``model`` is a model id that ``/v1/models`` lists, else ``other``: callers pick the id, and
one series per made-up id would let them grow the server's memory without bound.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Seconds; executions and model calls run from milliseconds to minutes.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
EXEC_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    """The collectors of one server."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.http_requests = Counter(
            "execbox_http_requests", "HTTP requests answered.", ["method", "route", "status"], registry=registry
        )
        self.http_duration = Histogram(
            "execbox_http_request_duration_seconds", "Time to answer an HTTP request (streams: to their end).",
            ["method", "route"], buckets=HTTP_BUCKETS, registry=registry,
        )
        self.executions = Counter(
            "execbox_executions", "Code executions and editor commands run in containers.",
            ["tool", "path", "outcome"], registry=registry,
        )
        self.execution_duration = Histogram(
            "execbox_execution_duration_seconds", "Wall-clock time of an execution in its sandbox.",
            ["tool", "path"], buckets=EXEC_BUCKETS, registry=registry,
        )
        self.executions_in_progress = Gauge(
            "execbox_executions_in_progress", "Executions running now.", registry=registry
        )
        self.executions_waiting = Gauge(
            "execbox_executions_waiting", "Executions queued behind another one in the same container.",
            registry=registry,
        )
        self.containers_live = Gauge(
            "execbox_containers_live", "Active containers, all workspaces.", registry=registry
        )
        self.kernels_live = Gauge("execbox_kernels_live", "Live Python kernels running.", registry=registry)
        self.model_requests = Counter(
            "execbox_model_requests", "Calls to model backends.", ["backend", "model", "outcome"], registry=registry
        )
        self.model_duration = Histogram(
            "execbox_model_request_duration_seconds", "Time of a model call, to the end of its stream.",
            ["backend", "model"], buckets=HTTP_BUCKETS, registry=registry,
        )
        self.messages = Counter(
            "execbox_messages", "Messages API responses by stop reason.", ["model", "stop_reason"], registry=registry
        )

    def count_live(self, containers: Callable[[], int], kernels: Callable[[], int]) -> None:
        """Read ``execbox_containers_live`` and ``execbox_kernels_live`` from these at each scrape."""
        self.containers_live.set_function(containers)
        self.kernels_live.set_function(kernels)

    def exposition(self) -> bytes:
        """The text format; may call the scrape-time functions (database reads): run it off the event loop."""
        return generate_latest(self.registry)


# A registry for code run outside a server (unit tests of one layer); servers pass their own.
NULL = Metrics()
