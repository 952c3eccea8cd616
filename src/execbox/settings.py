"""All of execbox's configuration, in one place.

Every setting is read from an ``EXECBOX_<NAME>`` environment variable and can be
overridden by the CLI flag of the same name (``--memory-limit 2GiB``). The README's
configuration table is generated from the field descriptions below.
"""

from __future__ import annotations

import hashlib
import re
import socket
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, BeforeValidator, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
    "t": 1000**4, "tb": 1000**4,
    "ki": 1024, "kib": 1024, "mi": 1024**2, "mib": 1024**2, "gi": 1024**3, "gib": 1024**3,
    "ti": 1024**4, "tib": 1024**4,
}


def parse_size(value: object) -> int:
    """Parse ``1GiB``, ``512MB``, ``1048576`` into a number of bytes."""
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(value))
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(f"not a size: {value!r} (examples: 1GiB, 512MB, 1048576)")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def format_size(n: int) -> str:
    """Render a byte count the way the settings accept it (``1GiB``)."""
    for unit, factor in (
        ("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024),
        ("TB", 1000**4), ("GB", 1000**3), ("MB", 1000**2), ("kB", 1000),
    ):
        if n >= factor and n % factor == 0:
            return f"{n // factor}{unit}"
    return f"{n}B"


def _split_csv(value: object) -> list[str]:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return list(value or [])


# The Claude ids the code execution documents' examples use: served offline by default.
DOCUMENT_MODELS = (
    "claude-opus-4-20250514",
    "claude-sonnet-4-20250514",
    "claude-3-7-sonnet-20250219",
    "claude-3-5-haiku-latest",
    "claude-sonnet-4-5",
)

Size = Annotated[int, BeforeValidator(parse_size)]
CsvList = Annotated[list[str], NoDecode, BeforeValidator(_split_csv)]


class Settings(BaseSettings):
    """execbox settings. Field descriptions are the user-facing documentation."""

    model_config = SettingsConfigDict(env_prefix="EXECBOX_", extra="ignore")

    # --- server ---------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Address the HTTP server binds to.")
    port: int = Field(8000, ge=0, le=65535, description="Port the HTTP server listens on.")
    data_dir: Path = Field(
        Path("/var/lib/execbox"),
        description="Where containers' disks, uploaded and generated files, and the SQLite database live.",
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the metadata database; default: SQLite at DATA_DIR/execbox.db. "
        "Example: postgresql+psycopg://user:pw@host/execbox.",
    )
    database_busy_timeout: float = Field(
        30.0, gt=0, description="Seconds a SQLite write waits for another writer's lock before the request fails "
        "with 529 `database_busy`."
    )
    api_keys: CsvList = Field(
        default_factory=list,
        description="Comma-separated `workspace:key` pairs. Empty: any key is accepted as workspace "
        "`default` and the server only binds to loopback.",
    )
    node_id: str | None = Field(
        None,
        description="This server's name among servers sharing one database: each frees, reaps and reopens only "
        "its own containers and batch requests. Default: the host name and a hash of DATA_DIR.",
    )
    shutdown_grace: float = Field(
        30.0, ge=0, description="Seconds a stopping server lets running requests finish before cancelling them "
        "(a second SIGINT/SIGTERM cancels at once)."
    )
    max_connections: int = Field(
        4096, description="Open client connections in total (at most a quarter of the server's descriptor limit); "
        "one more is reset as soon as it is accepted."
    )
    max_connections_per_client: int = Field(
        256, description="Open connections from one client address; one more is reset as soon as it is accepted."
    )
    header_timeout: float = Field(
        10.0, description="Seconds a client has to send a request's headers, however slowly they come; then the "
        "connection is closed."
    )
    body_idle_timeout: float = Field(
        30.0, description="Seconds a request body may stop arriving before the connection is closed."
    )
    log_level: str = Field("info", description="Log level: debug, info, warning, error.")
    log_format: Literal["text", "json"] = Field(
        "text",
        description="Log lines as `text`, or `json`: one object per line with the request id, workspace, "
        "container id, model and durations.",
    )
    insecure: bool = Field(
        False,
        description="Start even when an isolation feature is missing on this host (doctor lists them). "
        "Never needed on a supported host.",
    )

    # --- sandbox limits (per container / per execution) -------------------------------------
    memory_limit: Size = Field(1024**3, description="Memory per container (cgroup), e.g. `1GiB`.")
    cpu_limit: float = Field(1.0, description="CPU cores per container (cgroup quota).")
    pids_limit: int = Field(256, description="Processes and threads per container.")
    disk_limit: Size = Field(5 * 1024**3, description="Disk per container (loop-mounted ext4), e.g. `5GiB`.")
    nofile_limit: int = Field(
        1024, description="Open files per process in the sandbox (lowered to CONTAINER_OPEN_FILES / PIDS_LIMIT)."
    )
    container_open_files: int = Field(
        32768, description="Open files of one container in total: each process may open CONTAINER_OPEN_FILES / "
        "PIDS_LIMIT. Lowered at start (never below 16 per process) so that HOST_MAX_EXECUTIONS + MAX_KERNELS "
        "containers hold at most half of the host's fs.file-max."
    )
    exec_timeout: float = Field(90.0, description="Wall-clock seconds per execution.")
    output_limit: Size = Field(
        1024**2, description="Bytes kept of each of stdout and stderr per execution; the rest is cut with a marker."
    )
    output_file_limit: Size = Field(
        100 * 1024**2, description="Largest file returned from `$OUTPUT_DIR`; larger gives `output_file_too_large`."
    )
    output_files_limit: int = Field(
        100, description="Files returned from `$OUTPUT_DIR` per execution (the first by name); a note on stderr "
        "counts the rest."
    )
    output_files_total_limit: Size = Field(
        500 * 1024**2, description="Bytes of output files stored per execution, each counted at its apparent "
        "size (a sparse file counts in full); files past it give `output_file_too_large`."
    )
    container_ttl: float = Field(3600.0, description="Seconds until an unused container expires.")
    container_expiry: Literal["idle", "created"] = Field(
        "idle", description="Measure the TTL from the last use (`idle`) or from creation (`created`)."
    )
    reaper_interval: float = Field(30.0, description="Seconds between sweeps that free expired containers.")
    max_containers: int = Field(
        1000, description="Live containers per workspace (each holds a disk of up to DISK_LIMIT); creating one "
        "more answers 429 `too_many_containers` until one is deleted or expires."
    )
    max_concurrent_executions: int = Field(
        8, ge=1, description="Executions one workspace may run at the same time; more wait in its queue."
    )
    execution_queue: int = Field(
        32, ge=0, description="Executions of one workspace that may wait for a free slot; beyond that, 429 "
        "`rate_limit_error` (`too_many_executions`) with `retry-after`."
    )
    host_max_executions: int = Field(
        0, ge=0, description="Executions running at once on this server, all workspaces together (0: twice the CPU "
        "cores); the rest wait."
    )
    file_threads: int = Field(
        4, description="Threads for container file operations (listings, reads, writes), apart from those "
        "serving other requests."
    )
    file_ops_per_workspace: int = Field(
        2, description="Container file operations one workspace runs at once; its others wait their turn."
    )
    runtime_dir: Path | None = Field(
        None,
        description="The sandbox's Python environment; default: /var/cache/execbox/runtime-<hash of the pinned "
        "requirements>, built by `execbox setup-runtime`.",
    )
    disk_pool: int = Field(
        4, description="Container disks made ahead of time, so that creating a container costs no mkfs and mount "
        "(refilled in the background; 0: make each on demand)."
    )
    tool_wait: float = Field(
        270.0, description="Seconds code waits for the result of a client tool it called (programmatic tool "
        "calling) before the call raises TimeoutError in the code."
    )
    fork_server: bool = Field(
        True, description="Run executions on the fork server (pre-imported interpreters, live Python kernels); "
        "off: every execution starts a fresh interpreter in a fresh bubblewrap sandbox (the reference path).",
    )
    fork_spares: int = Field(
        4, description="Pre-forked sandbox processes kept ready (at least the expected concurrency)."
    )
    fork_server_max_age: float = Field(
        3600.0, description="Seconds before the fork server is replaced by a fresh one (new address-space layout "
        "and seeds for the sandboxes forked from it)."
    )
    kernel_idle_timeout: float = Field(
        300.0, description="Seconds a live Python kernel may sit idle before it is checkpointed and stopped (its "
        "picklable variables come back with the next cell)."
    )
    max_kernels: int = Field(
        64, description="Live Python kernels on the host; beyond it, the least recently used is checkpointed "
        "and stopped."
    )
    cgroup_favor_dynmods: bool = Field(
        True, description="Switch the kernel's cgroup locking to `favordynmods` at start (host-wide, until "
        "reboot): moving a sandbox into its cgroup then takes ~0.5 ms instead of 5-9 ms."
    )

    # --- Messages API -----------------------------------------------------------------------
    max_tool_iterations: int = Field(
        10, description="Code executions in one request after which the turn stops with `pause_turn` (right "
        "after a result block, once the calls the model made together have run)."
    )
    tool_error_names: Literal["sdk", "legacy"] = Field(
        "sdk",
        description="Tool error codes: `sdk` (execution_time_exceeded, ...) or `legacy`, the older documents' "
        "names (code_execution_exceeded, container_expired).",
    )
    tool_result_images: bool = Field(
        True,
        description="Show the model the PNG and JPEG files an execution writes to `$OUTPUT_DIR`, as images in "
        "its tool result (Claude and OpenAI-compatible models; the response to the client is unchanged). "
        "Set to false for text-only models.",
    )
    max_upload_size: Size = Field(500 * 1000**2, description="Largest Files API upload (413 above).")
    message_threads: bool = Field(
        True,
        description="Serve message threads (the `thread` field of the SDKs' tool runners): conversations are "
        "kept in the database for THREAD_TTL. Off: such requests answer 400 `thread_unsupported_request`, "
        "and the SDKs resend the full conversation without a thread.",
    )
    thread_ttl: float = Field(
        300.0, description="Seconds a thread's latest response can be continued; each stored response restarts it."
    )
    workspace_storage_quota: Size = Field(
        10 * 1024**3, description="Bytes of Files API content a workspace may hold (uploads and generated files, "
        "apparent sizes): beyond it an upload answers 400 and output files are not stored. 0: no quota."
    )
    generated_file_ttl: float = Field(
        7 * 24 * 3600.0, description="Seconds a generated file is kept; then the reaper deletes its content "
        "(metadata stays listable 30 days). 0: until deleted."
    )
    batch_workers: int = Field(
        4, ge=0, description="Batch requests run at the same time in the background (0: batches are accepted "
        "but not run)."
    )
    batch_expiry: float = Field(
        86400.0, gt=0, description="Seconds a message batch may take (24 h, as Anthropic's); requests not started "
        "by then end `expired`."
    )

    price_container_hour: float = Field(
        0.05, ge=0, description="US dollars per container-hour, for the cost column of `execbox usage` and `/v1/usage`."
    )

    # --- model backends ---------------------------------------------------------------------
    anthropic_api_key: str | None = Field(
        None,
        validation_alias=AliasChoices("EXECBOX_ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY"),
        description="Key for Claude models (`claude-*`), forwarded to Anthropic's API. Also read from ANTHROPIC_API_KEY.",
    )
    anthropic_base_url: str = Field("https://api.anthropic.com", description="Upstream Anthropic API.")
    openai_base_url: str | None = Field(
        None, description="OpenAI-compatible endpoint (vLLM, Ollama, llama.cpp, OpenAI), e.g. http://127.0.0.1:11434/v1."
    )
    openai_api_key: str | None = Field(None, description="Key for the OpenAI-compatible endpoint.")
    openai_models: CsvList = Field(
        default_factory=list, description="Comma-separated model ids served through the OpenAI-compatible endpoint."
    )
    upstream_timeout: float = Field(600.0, description="Seconds to wait for an upstream model.")
    anthropic_models: CsvList = Field(
        default_factory=list,
        description="Comma-separated Claude model ids to serve through Anthropic besides the built-in list "
        "(current snapshots and their aliases).",
    )
    direct_models: CsvList = Field(
        default_factory=lambda: list(DOCUMENT_MODELS),
        description="Comma-separated model ids the offline `direct` model answers for besides `execbox-direct` "
        "when no Anthropic key is configured; default: the Claude ids of the documentation's examples.",
    )

    @property
    def node(self) -> str:
        if self.node_id:
            return self.node_id
        digest = hashlib.sha256(str(self.data_dir.resolve()).encode()).hexdigest()[:8]
        return f"{socket.gethostname()}-{digest}"

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'execbox.db'}"

    @field_validator("api_keys")
    @classmethod
    def _check_api_keys(cls, pairs: list[str]) -> list[str]:
        for n, pair in enumerate(pairs, 1):
            workspace, sep, key = pair.partition(":")
            if not sep or not workspace or not key:  # the message names the entry, never its secret
                raise ValueError(f"entry {n} of {len(pairs)} is not `workspace:key`")
        return pairs

    def workspace_keys(self) -> dict[str, str]:
        """Map each configured API key to its workspace."""
        keys: dict[str, str] = {}
        for n, pair in enumerate(self.api_keys, 1):
            workspace, sep, key = pair.partition(":")
            if not sep or not workspace or not key:
                raise ValueError(f"EXECBOX_API_KEYS entry {n} is not `workspace:key`")
            keys[key] = workspace
        return keys


# Settings whose values are secrets: a configuration error never shows what was given.
SECRET_SETTINGS = frozenset({"api_keys", "anthropic_api_key", "openai_api_key", "database_url"})


class ConfigError(Exception):
    """A setting has a value of the wrong form; the message is one line, safe to print."""


def expected_form(name: str) -> str:
    """How a setting's value must look, for error messages and ``--help``."""
    field = Settings.model_fields[name]
    annotation = field.annotation
    if any(getattr(m, "func", None) is parse_size for m in field.metadata):
        return "a size such as 1GiB, 512MB or 1048576"
    if name == "api_keys":
        return "comma-separated workspace:key pairs, e.g. team-a:key1,team-b:key2"
    if getattr(annotation, "__origin__", None) is Literal:
        return "one of " + ", ".join(str(a) for a in annotation.__args__)  # type: ignore[union-attr]
    forms = {int: "an integer", float: "a number", bool: "true or false", Path: "a path", str: "text"}
    for kind, form in forms.items():
        if annotation is kind or kind in getattr(annotation, "__args__", ()):
            return form
    return "a value"


def describe_errors(error: ValidationError) -> str:
    """One line per bad setting: its variable and flag, the expected form, never the value."""
    lines = []
    for item in error.errors(include_url=False, include_input=False):
        name = str(item["loc"][0]) if item.get("loc") else ""
        if name.upper() in ("EXECBOX_ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY"):
            name = "anthropic_api_key"
        if name not in Settings.model_fields:
            lines.append(f"invalid setting: {item.get('msg', 'invalid value')}")
            continue
        reason = item.get("msg", "")
        detail = ""
        if item.get("type") == "value_error" and "size" not in expected_form(name):  # ours: no values in them
            detail = f" ({reason.removeprefix('Value error, ')})"
        elif item.get("type") in ("greater_than_equal", "greater_than", "less_than_equal", "literal_error"):
            detail = f" ({reason.lower()})" if name not in SECRET_SETTINGS else ""
        lines.append(
            f"invalid setting EXECBOX_{name.upper()} (--{name.replace('_', '-')}): expected {expected_form(name)}{detail}"
        )
    return "\n".join(lines)


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit (CLI) overrides on top; None means 'not given'.
    Raises ConfigError (one line per bad setting, no secrets) for a malformed value."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc)) from None
