"""The unit grid: cells cut from community polygons."""

from __future__ import annotations

from pathlib import Path

import click

from cityops.cli_support import CONTEXT, env_option
from cityops.errors import CityOpsError


@click.group(context_settings=CONTEXT)
def grid() -> None:
    """The unit grid (单元网格)."""


@grid.command("generate")
@click.option(
    "--communities",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="Community polygons with a 12-digit `code` (GeoJSON, GPKG, SHP).",
)
@env_option(
    "CITYOPS_GRID_CELL_M",
    "--cell",
    "cell_m",
    type=float,
    default=200.0,
    help="Cell size in metres (100-500).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Output layer (.geojson, .gpkg or .shp).",
)
def grid_generate(communities: Path, cell_m: float, out: Path) -> None:
    """Cut communities into unit-grid cells with 15-digit codes."""
    from geo.errors import GeoError
    from geo.grid import generate_grid
    from geo.layers import DISTRICTS, LayerSpec, read_layer, write_layer

    spec = LayerSpec("communities", "code", DISTRICTS.geometry_types, id_pattern=r"^[0-9]{12}$")
    try:
        cells = generate_grid(read_layer(communities, spec), cell_m)
        write_layer(cells, out)
    except GeoError as exc:
        raise CityOpsError(str(exc)) from exc
    click.echo(f"wrote {len(cells)} cells to {out}")
