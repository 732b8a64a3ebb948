"""CIM layers of a city: grid, pipes, assets, valves, POIs."""

from __future__ import annotations

from pathlib import Path

import click

from cityops.cli_support import CONTEXT, echo_err, load_settings
from cityops.errors import CityOpsError
from lifeline.codes import is_city_code


@click.group(context_settings=CONTEXT)
def cim() -> None:
    """CIM layers (grid, pipes, assets, valves, POIs) of a city for the cockpit."""


@cim.command("load")
@click.option("--city", required=True, help="GB/T 2260 city code.")
@click.option(
    "--layer",
    "layers",
    multiple=True,
    required=True,
    metavar="NAME=FILE",
    help="A layer and its file, e.g. grid=grid.gpkg (grid, pipes, assets, valves, pois, "
    "districts; repeatable).",
)
def cim_load(city: str, layers: tuple[str, ...]) -> None:
    """Validate layer files and store them; a city's layer is replaced as a whole."""
    from cityops.cim import load_layers
    from geo.errors import GeoError

    if not is_city_code(city):
        raise CityOpsError(f"--city {city!r} is not a 6-digit GB/T 2260 city code")
    files = {}
    for item in layers:
        name, sep, path = item.partition("=")
        if not sep or not path:
            raise CityOpsError(f"--layer {item!r}: write NAME=FILE, e.g. grid=grid.gpkg")
        if not Path(path).is_file():
            raise CityOpsError(f"--layer {item!r}: no file {path}")
        files[name] = Path(path)
    try:
        counts = load_layers(load_settings(), city, files, echo_err)
    except (GeoError, ValueError) as exc:
        raise CityOpsError(str(exc)) from exc
    for name, n in counts.items():
        click.echo(f"{name:<10} {n} features")
