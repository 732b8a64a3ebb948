"""What every ``cityops`` subcommand shares: the context settings, the settings loader,
error output, the vendor-folder option, and the parsers of durations and speeds."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from cityops.errors import CityOpsError, ConfigError
from cityops.settings import Settings, get_settings
from simulators.errors import SimulationError

CONTEXT = {"help_option_names": ["-h", "--help"], "show_default": True}


def load_settings() -> Settings:
    try:
        return get_settings()
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            problems.append(f"  CITYOPS_{field.upper()}: {err['msg']}")
        raise ConfigError(
            "the configuration is incomplete or invalid:\n"
            + "\n".join(problems)
            + "\nSet these variables, or run `cityops secrets init` to write a .env "
            "file with fresh secrets for a local stack."
        ) from exc


def echo_err(message: str) -> None:
    click.echo(message, err=True)


vendors_option = click.option(
    "--vendors",
    "vendor_dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="CITYOPS_VENDOR_DIR",
    show_envvar=True,
    help="Extra folder of vendor mapping files (*.toml).",
)


FC = TypeVar("FC", bound=Callable[..., Any] | click.Command)


def env_option(envvar: str, *decls: str, **kw: Any) -> Callable[[FC], FC]:
    """A ``click.option`` also read from the environment variable ``envvar``, shown in
    the help."""
    return click.option(*decls, envvar=envvar, show_envvar=True, **kw)


class CityOpsGroup(click.Group):
    """Turn project errors into a message and exit code 2 instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (CityOpsError, SimulationError) as exc:
            echo_err(f"error: {exc}")
            sys.exit(2)


def duration_of(text: str) -> Any:
    from datetime import timedelta

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        return timedelta(seconds=float(text[:-1]) * units[text[-1]])
    except (KeyError, ValueError, IndexError):
        raise click.BadParameter(f"{text!r}: write a number and s, m, h or d, e.g. 90m") from None


def speed_of(text: str) -> float:
    try:
        value = float(text.lower().removesuffix("x"))
    except ValueError:
        raise click.BadParameter(f"{text!r}: write a factor such as 10x or 0.5") from None
    if value <= 0:
        raise click.BadParameter("the speed must be above 0")
    return value
