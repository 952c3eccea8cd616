"""The ``execbox`` command: ``serve``, ``doctor``, ``setup-runtime``, ``settings``.

Every setting is a flag of ``serve`` (``--memory-limit 2GiB``) and an ``EXECBOX_*``
environment variable; flags win.
"""

from __future__ import annotations

import ipaddress
import logging
import sys
from typing import Any

import click

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


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


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
    _setup_logging(settings.log_level)
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
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False)


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


if __name__ == "__main__":
    main()
