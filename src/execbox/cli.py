"""The ``execbox`` command: ``serve``, ``doctor``, ``setup-runtime``, ``settings``, and the
client commands ``containers ls|rm`` and ``run`` (which talk to a running server).

Every setting is a flag of ``serve`` (``--memory-limit 2GiB``) and an ``EXECBOX_*``
environment variable; flags win.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import re
import signal
import socket
from typing import Any, NoReturn

import click

from execbox import datadir, logs
from execbox.settings import (
    SECRET_SETTINGS,
    ConfigError,
    Settings,
    expected_form,
    format_size,
    load_settings,
    parse_size,
)

log = logging.getLogger("execbox")

_HIDDEN_FROM_FLAGS = {"anthropic_api_key", "openai_api_key"}  # secrets: environment only


def _default_text(name: str) -> str:
    field = Settings.model_fields[name]
    default = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
    if default is None or default == []:
        return "(none)"
    if isinstance(default, list):
        default = ",".join(default)
    elif any(getattr(m, "func", None) is parse_size for m in field.metadata) and isinstance(default, int):
        default = format_size(default)
    return f"`{default}`"


def _setting_options(func: Any) -> Any:
    """Add one ``--flag`` per Settings field (all as strings; pydantic parses them). Each
    flag's help ends with the form its value takes and its default."""
    for name, field in reversed(list(Settings.model_fields.items())):
        if name in _HIDDEN_FROM_FLAGS:
            continue
        flag = "--" + name.replace("_", "-")
        default = _default_text(name).strip("`")
        if field.annotation is bool and field.default is True:  # on by default: the flag turns it off
            off = "--no-" + name.replace("_", "-")
            help_text = f"{field.description} [flag; default: on]"
            func = click.option(f"{flag}/{off}", name, default=None, help=help_text)(func)
        elif field.annotation is bool:
            help_text = f"{field.description} [flag; default: off]"
            func = click.option(flag, name, is_flag=True, default=None, help=help_text)(func)
        else:
            help_text = f"{field.description} [{expected_form(name)}; default: {default}]"
            metavar = name.upper()
            func = click.option(flag, name, default=None, metavar=metavar, help=help_text)(func)
    return func


def _fail(message: str, code: int = 2) -> NoReturn:
    """One line on stderr, then exit: the way every start-up problem is reported."""
    click.echo(f"execbox: {message}", err=True)
    raise SystemExit(code)


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        for line in str(exc).splitlines():
            click.echo(f"execbox: {line}", err=True)
        raise SystemExit(2) from None


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before any start-up work."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on connections of such a socket,
    # and without it a kept-alive connection waits ~40 ms for delayed ACKs on every request.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        reason = "it is in use by another process" if exc.errno == errno.EADDRINUSE else exc.strerror
        _fail(f"cannot listen on {host}:{port}: {reason}; stop that process or choose another --port")
    return sock


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.group()
@click.version_option(package_name="execbox")
def main() -> None:
    """execbox: a self-hosted, Anthropic-compatible code execution server."""


@main.command()
@_setting_options
def serve(**overrides: Any) -> None:
    """Run the HTTP server in the foreground."""
    import uvicorn

    from execbox.api.app import create_app
    from execbox.api.server import http_options
    from execbox.sandbox.doctor import blocking_problems

    settings = _settings(**overrides)
    logs.setup(settings.log_level, settings.log_format)
    if not settings.api_keys and not _is_loopback(settings.host):
        log.warning("no EXECBOX_API_KEYS configured: binding to 127.0.0.1 instead of %s", settings.host)
        settings = settings.model_copy(update={"host": "127.0.0.1"})
    if not settings.api_keys:
        log.warning("no EXECBOX_API_KEYS configured: any key is accepted as workspace 'default' (loopback only)")
    try:
        lock_fd = datadir.lock(settings.data_dir)  # noqa: F841  (held until the process exits)
    except datadir.DataDirError as exc:
        _fail(str(exc))
    sock = _bind(settings.host, settings.port)
    try:
        for fixed in datadir.check_permissions(settings.data_dir):
            log.warning("%s", fixed)
    except datadir.DataDirError as exc:
        _fail(str(exc))
    problems = blocking_problems(settings.runtime_dir)
    if problems and not settings.insecure:
        for problem in problems:
            log.error("isolation check failed: %s", problem)
        _fail("refusing to run untrusted code without these protections; see `execbox doctor`, "
              "or pass --insecure to run anyway")
    for problem in problems:
        log.warning("INSECURE: running without: %s", problem)
    try:
        app = create_app(settings)
    except Exception as exc:  # e.g. the database cannot be reached: say so, without its URL
        log.debug("start-up failed", exc_info=True)
        _fail(f"cannot start: {type(exc).__name__}: {_first_line(exc)}")
    for line in app.state.services.backends.describe():
        log.info("models: %s", line)
    try:
        took = asyncio.run(app.state.services.self_test())
        log.info("start-up self-test: code runs in a sandbox (%.2f s)", took)
    except Exception as exc:
        log.debug("start-up self-test failed", exc_info=True)
        _fail(f"cannot run code: {_first_line(exc)}; see `execbox doctor`")
    config = uvicorn.Config(
        # log_config=None: uvicorn's own lines go through execbox's handler (and format) too.
        app, log_level="warning", access_log=False, log_config=None,
        timeout_graceful_shutdown=int(settings.shutdown_grace) + 30,  # a backstop: the app cancels first
        **http_options(settings),  # timeouts and connection caps against clients that hold connections
    )
    _Server(config, app.state.shutdown).run(sockets=[sock])


def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return re.sub(r"[a-z+]+://[^\s]*", "<database url>", text)[:300]


class _Server:
    """uvicorn's server with execbox's signal handling (see ``api/lifecycle.py``): the first
    signal starts a graceful shutdown, a second one cancels what still runs. Either way the
    lifespan shutdown runs, so containers are closed and state is kept."""

    def __new__(cls, config: Any, plan: Any) -> Any:
        import uvicorn

        from execbox.api.server import AcceptErrorLog

        class Server(uvicorn.Server):
            _loop: asyncio.AbstractEventLoop | None = None

            async def serve(self, sockets: Any = None) -> None:
                self._loop = asyncio.get_running_loop()
                self._loop.set_exception_handler(AcceptErrorLog())
                await super().serve(sockets=sockets)

            def handle_exit(self, sig: int, frame: Any) -> None:
                name = signal.Signals(sig).name
                if self._loop is None:
                    raise SystemExit(1)
                if not self.should_exit:
                    self.should_exit = True
                    self._loop.call_soon_threadsafe(plan.begin, name)
                else:
                    self._loop.call_soon_threadsafe(plan.hurry, name)

        return Server(config)


@main.command()
@click.option("--runtime-dir", default=None, help="The sandbox runtime environment to check.")
def doctor(runtime_dir: str | None) -> None:
    """Report which isolation features work on this host. Exit 1 if any required one is missing."""
    from execbox.sandbox.doctor import run_checks

    settings = _settings(runtime_dir=runtime_dir)
    ok = True
    for check in run_checks(settings.runtime_dir, fork_server=settings.fork_server):
        click.echo(f"{check.verdict:<5} {check.name:<28} {check.detail}")
        ok = ok and (check.verdict != "FAIL")
    raise SystemExit(0 if ok else 1)


@main.command("setup-runtime")
@click.option("--runtime-dir", default=None, help="Where to build it (default: the cache path).")
@click.option("--force", is_flag=True, help="Rebuild even if a complete environment exists.")
def setup_runtime(runtime_dir: str | None, force: bool) -> None:
    """Build (or reuse) the sandbox's Python environment with the preinstalled libraries."""
    from execbox.sandbox.runtime import build_runtime

    settings = _settings(runtime_dir=runtime_dir)
    path = build_runtime(settings.runtime_dir, force=force, echo=click.echo)
    click.echo(f"runtime ready: {path}")


@main.command("usage")
@click.option("--workspace", default=None, help="Only this workspace. [text; default: all]")
@click.option("--since", default=None, help="Events from this time on (RFC 3339 or YYYY-MM-DD). [default: all]")
@click.option("--until", default=None, help="Events before this time (RFC 3339 or YYYY-MM-DD). [default: now]")
@click.option("--group-by", type=click.Choice(["workspace", "day", "model"]), default="workspace",
              help="One row per workspace, per workspace and day, or per workspace and model. [default: workspace]")
@click.option("--data-dir", default=None, help="The server's data directory (for its SQLite database).")
@click.option("--database-url", default=None, help="The server's database, if not SQLite in the data directory.")
@click.option("--price-container-hour", default=None, help="US dollars per container-hour. [default: 0.05]")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def usage(workspace: str | None, since: str | None, until: str | None, group_by: str, data_dir: str | None,
          database_url: str | None, price_container_hour: str | None, as_json: bool) -> None:
    """Print what each workspace used (executions, container-hours, tokens, batch requests) and its cost."""
    import json
    from dataclasses import asdict
    from datetime import datetime, timezone

    from execbox import db
    from execbox.usage.store import UsageStore

    settings = _settings(data_dir=data_dir, database_url=database_url, price_container_hour=price_container_hour)

    def when(value: str | None, flag: str) -> datetime | None:
        if value is None:
            return None
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            _fail(f"invalid {flag}: expected a date (2026-11-30) or an RFC 3339 time (2026-11-30T12:00:00Z)")
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)

    if settings.database_url is None and not (settings.data_dir / "execbox.db").exists():
        _fail(f"no database at {settings.data_dir / 'execbox.db'}; pass the server's --data-dir or --database-url")
    engine = db.connect(settings.database)
    db.create_tables(engine)
    rows = UsageStore(engine).report(
        workspace=workspace, starting_at=when(since, "--since"), ending_at=when(until, "--until"),
        group_by=group_by, price_container_hour=settings.price_container_hour,  # type: ignore[arg-type]
    )
    engine.dispose()
    if as_json:
        click.echo(json.dumps([{k: v for k, v in asdict(r).items() if not k.startswith("_")} for r in rows], indent=2))
        return
    group = {"day": "day", "model": "model"}.get(group_by)
    header = ["workspace", *([group] if group else []), "executions", "exec s", "containers", "container-h",
              "input tok", "output tok", "batch req", "cost $"]
    table = [header]
    for r in rows:
        table.append([r.workspace, *([str(getattr(r, group) or "-")] if group else []), str(r.executions),
                      f"{r.execution_seconds:.1f}", str(r.containers), f"{r.container_hours:.3f}",
                      str(r.input_tokens), str(r.output_tokens), str(r.batch_requests), f"{r.cost_usd:.4f}"])
    total_cost = sum(r.cost_usd for r in rows)
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        cells = enumerate(zip(row, widths, strict=True))
        click.echo("  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in cells))
    click.echo(f"total cost: ${total_cost:.4f} at ${settings.price_container_hour} per container-hour")


@main.command("settings")
@click.option("--markdown", is_flag=True, help="Print the README's configuration table.")
def show_settings(markdown: bool) -> None:
    """Show every setting with its environment variable, flag and current value."""
    settings = _settings()
    if markdown:
        click.echo("| environment variable | flag | default | meaning |\n|---|---|---|---|")
    for name, field in Settings.model_fields.items():
        env = f"EXECBOX_{name.upper()}"
        flag = "" if name in _HIDDEN_FROM_FLAGS else "--" + name.replace("_", "-")
        if flag and field.annotation is bool and field.default is True:
            flag = "--no-" + name.replace("_", "-")
        if markdown:
            flag_cell = f"`{flag}`" if flag else "(environment only)"
            click.echo(f"| `{env}` | {flag_cell} | {_default_text(name)} | {field.description} |")
        else:
            secret = name in SECRET_SETTINGS or "key" in name
            value = "***" if secret and getattr(settings, name) else getattr(settings, name)
            click.echo(f"{env:<30} {value}")


def _client_options(func: Any) -> Any:
    """``--url`` and ``--api-key`` of the client commands (also EXECBOX_URL, EXECBOX_API_KEY)."""
    func = click.option("--api-key", envvar="EXECBOX_API_KEY", default=None, help="API key (EXECBOX_API_KEY).")(func)
    return click.option(
        "--url", envvar="EXECBOX_URL", default="http://127.0.0.1:8000", show_default=True,
        help="The execbox server (EXECBOX_URL).",
    )(func)


def _client_errors(func: Any) -> Any:
    """Client failures as one line on stderr and exit status 1, not a traceback."""
    import functools

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import httpx

        from execbox.client import APIError

        try:
            return func(*args, **kwargs)
        except APIError as exc:
            click.echo(f"execbox: {exc.message} ({exc.status_code} {exc.type})", err=True)
            raise SystemExit(1) from None
        except httpx.TransportError as exc:
            click.echo(f"execbox: cannot reach the server: {exc}", err=True)
            raise SystemExit(1) from None

    return wrapper


@main.group()
def containers() -> None:
    """List and delete the containers of a running server."""


@containers.command("ls")
@_client_options
@_client_errors
def containers_ls(url: str, api_key: str | None) -> None:
    """The workspace's live containers, newest first."""
    from execbox.client import Sandbox

    click.echo(f"{'ID':<40} {'CREATED':<20} {'EXPIRES':<20} {'DISK':>10}")
    for item in Sandbox.list(url, api_key=api_key):
        disk = "-" if item.disk_used_bytes is None else format_size_short(item.disk_used_bytes)
        click.echo(
            f"{item.id:<40} {item.created_at:%Y-%m-%d %H:%M:%S}  {item.expires_at:%Y-%m-%d %H:%M:%S}  {disk:>10}"
        )


@containers.command("rm")
@click.argument("container_ids", nargs=-1, required=True)
@_client_options
@_client_errors
def containers_rm(container_ids: tuple[str, ...], url: str, api_key: str | None) -> None:
    """Delete containers (an execution under way in one is stopped)."""
    from execbox.client import Sandbox

    for container_id in container_ids:
        sandbox = Sandbox.connect(container_id, url, api_key=api_key)
        try:
            sandbox.delete()
        finally:
            sandbox.close()
        click.echo(container_id)


@main.command("run")
@click.argument("script", type=click.File("r"))
@click.option("--container", "container_id", default=None, help="Run in this container (default: a new one).")
@click.option("--keep", is_flag=True, help="Keep the new container afterwards (its id goes to stderr).")
@click.option("--bash", "as_bash", is_flag=True, help="Run the script with bash (default: Python; *.sh: bash).")
@click.option("--timeout", type=float, default=None, help="Seconds (capped by the server's limit).")
@_client_options
@_client_errors
def run_script(
    script: Any, container_id: str | None, keep: bool, as_bash: bool, timeout: float | None,
    url: str, api_key: str | None,
) -> None:
    """Run SCRIPT (a file, or - for standard input) in a container, printing its output as it
    comes. Exits with the script's return code."""
    from execbox.client import Sandbox

    source = script.read()
    bash = as_bash or script.name.endswith(".sh")
    if container_id:
        sandbox = Sandbox.connect(container_id, url, api_key=api_key)
    else:
        sandbox = Sandbox.create(url, api_key=api_key)
        if keep:
            sandbox.keep()
            click.echo(f"container: {sandbox.id}", err=True)
    with sandbox:
        def out(text: str) -> None:
            click.echo(text, nl=False)

        def err(text: str) -> None:
            click.echo(text, nl=False, err=True)

        if bash:
            result = sandbox.run_bash(source, timeout=timeout, on_stdout=out, on_stderr=err)
        else:
            result = sandbox.run(source, timeout=timeout, on_stdout=out, on_stderr=err)
    for file in result.files:
        click.echo(f"output file: {file.filename} ({file.size_bytes} bytes) {file.file_id or file.error_code}", err=True)
    if result.error_code:
        click.echo(f"execbox: {result.error_code}", err=True)
    raise SystemExit(result.return_code if result.return_code >= 0 else 1)


def format_size_short(n: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= factor:
            return f"{n / factor:.1f}{unit}"
    return f"{n}B"


if __name__ == "__main__":
    main()
