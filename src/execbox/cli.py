"""The ``execbox`` command: ``serve``, ``doctor``, ``setup-runtime``, ``settings``, and the
client commands ``containers ls|rm`` and ``run`` (which talk to a running server).

Every setting is a flag of ``serve`` (``--memory-limit 2GiB``) and an ``EXECBOX_*``
environment variable; flags win.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

import click

from execbox import logs
from execbox.settings import Settings, format_size, load_settings, parse_size

log = logging.getLogger("execbox")

_HIDDEN_FROM_FLAGS = {"anthropic_api_key", "openai_api_key"}  # secrets: environment only


def _setting_options(func: Any) -> Any:
    """Add one ``--flag`` per Settings field (all as strings; pydantic parses them)."""
    for name, field in reversed(list(Settings.model_fields.items())):
        if name in _HIDDEN_FROM_FLAGS:
            continue
        flag = "--" + name.replace("_", "-")
        if field.annotation is bool and field.default is True:  # on by default: the flag turns it off
            off = "--no-" + name.replace("_", "-")
            func = click.option(f"{flag}/{off}", name, default=None, help=field.description)(func)
        elif field.annotation is bool:
            func = click.option(flag, name, is_flag=True, default=None, help=field.description)(func)
        else:
            func = click.option(flag, name, default=None, help=field.description)(func)
    return func


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
    from execbox.sandbox.doctor import blocking_problems

    settings = load_settings(**overrides)
    logs.setup(settings.log_level, settings.log_format)
    if not settings.api_keys and not _is_loopback(settings.host):
        log.warning("no EXECBOX_API_KEYS configured: binding to 127.0.0.1 instead of %s", settings.host)
        settings = settings.model_copy(update={"host": "127.0.0.1"})
    if not settings.api_keys:
        log.warning("no EXECBOX_API_KEYS configured: any key is accepted as workspace 'default' (loopback only)")
    problems = blocking_problems(settings.runtime_dir)
    if problems and not settings.insecure:
        for problem in problems:
            log.error("isolation check failed: %s", problem)
        log.error("refusing to run untrusted code without these protections; see `execbox doctor`, "
                  "or pass --insecure to run anyway")
        raise SystemExit(2)
    for problem in problems:
        log.warning("INSECURE: running without: %s", problem)
    app = create_app(settings)
    log.info("execbox listening on http://%s:%d (data in %s)", settings.host, settings.port, settings.data_dir)
    for line in app.state.services.backends.describe():
        log.info("models: %s", line)
    # log_config=None: uvicorn's own lines go through execbox's handler (and format) too.
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False, log_config=None)


@main.command()
@click.option("--runtime-dir", default=None, help="The sandbox runtime environment to check.")
def doctor(runtime_dir: str | None) -> None:
    """Report which isolation features work on this host. Exit 1 if any required one is missing."""
    from execbox.sandbox.doctor import run_checks

    settings = load_settings(runtime_dir=runtime_dir)
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

    settings = load_settings(runtime_dir=runtime_dir)
    path = build_runtime(settings.runtime_dir, force=force, echo=click.echo)
    click.echo(f"runtime ready: {path}")


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


@main.command("settings")
@click.option("--markdown", is_flag=True, help="Print the README's configuration table.")
def show_settings(markdown: bool) -> None:
    """Show every setting with its environment variable, flag and current value."""
    settings = load_settings()
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
            value = "***" if "key" in name and getattr(settings, name) else getattr(settings, name)
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
