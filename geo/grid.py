"""The unit grid (单元网格, GB/T 30428): generation and fast point → cell lookup.

Cell codes have 15 digits: county 6 + street 3 + community 3 + cell 3. Generated cells
are squares of a set size in the metric GK zone, cut along community boundaries, and
numbered within each community west → east, north → south.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pandas as pd
import shapely
from shapely import STRtree

from geo.crs import metric_crs_for, require_geographic
from geo.errors import GeoError, LayerError
from geo.layers import GRID, validate
from lifeline.codes import digits

MIN_CELL_M, MAX_CELL_M = 100.0, 500.0
MAX_CELLS_PER_COMMUNITY = 999
_SLIVER_M2 = 1.0


def generate_grid(communities: gpd.GeoDataFrame, cell_size_m: float) -> gpd.GeoDataFrame:
    """Cut communities into unit-grid cells of ``cell_size_m`` metres.

    ``communities`` needs a 12-digit ``code`` (county 6 + street 3 + community 3) and
    may carry ``name`` and ``street_name``. Returns cells in WGS84 with ``code``,
    ``county``, ``street``, ``community`` and the names passed through.
    """
    if not MIN_CELL_M <= cell_size_m <= MAX_CELL_M:
        raise GeoError(f"cell size must be {MIN_CELL_M:.0f}-{MAX_CELL_M:.0f} m, not {cell_size_m}")
    require_geographic(communities, "communities")
    if "code" not in communities.columns:
        raise LayerError("communities", ["missing column: code (12 digits)"])
    codes = communities["code"].astype(str)
    bad = [c for c in codes if not digits(c, 12)]
    if bad:
        raise LayerError("communities", [f"code {c!r} is not 12 digits" for c in bad])
    if codes.duplicated().any():
        raise LayerError(
            "communities", [f"duplicate code {c!r}" for c in codes[codes.duplicated()]]
        )
    metric = metric_crs_for(communities)
    comm = communities.to_crs(metric).reset_index(drop=True)
    minx, miny, maxx, maxy = comm.total_bounds
    # Anchor on whole multiples of the cell size so grids of one city line up.
    x0 = np.floor(minx / cell_size_m) * cell_size_m
    y1 = np.ceil(maxy / cell_size_m) * cell_size_m
    nx = int(np.ceil((maxx - x0) / cell_size_m))
    ny = int(np.ceil((y1 - miny) / cell_size_m))
    col_grid, row_grid = np.meshgrid(np.arange(nx), np.arange(ny))
    cols, rows = col_grid.ravel(), row_grid.ravel()
    squares = shapely.box(
        x0 + cols * cell_size_m,
        y1 - (rows + 1) * cell_size_m,
        x0 + (cols + 1) * cell_size_m,
        y1 - rows * cell_size_m,
    )
    tree = STRtree(squares)
    comm_idx, sq_idx = tree.query(comm.geometry.to_numpy(), predicate="intersects")
    pieces = shapely.intersection(squares[sq_idx], comm.geometry.to_numpy()[comm_idx])
    pieces = shapely.make_valid(pieces)
    pieces = np.array([_polygonal(p) for p in pieces], dtype=object)
    keep = np.array([p is not None and p.area > _SLIVER_M2 for p in pieces], dtype=bool)
    frame = pd.DataFrame(
        {"comm": comm_idx[keep], "row": rows[sq_idx[keep]], "col": cols[sq_idx[keep]]}
    )
    frame = frame.sort_values(["comm", "row", "col"], kind="stable")
    frame["n"] = frame.groupby("comm").cumcount() + 1
    too_many = frame.groupby("comm")["n"].max()
    too_many = too_many[too_many > MAX_CELLS_PER_COMMUNITY]
    if len(too_many):
        names = ", ".join(codes.iloc[i] for i in too_many.index)
        raise GeoError(
            f"communities {names} would get more than {MAX_CELLS_PER_COMMUNITY} cells; "
            "use a larger cell size"
        )
    comm_codes = codes.to_numpy()[frame["comm"].to_numpy()]
    cell_codes = [f"{c}{n:03d}" for c, n in zip(comm_codes, frame["n"], strict=True)]
    out = gpd.GeoDataFrame(
        {
            "code": cell_codes,
            "county": [c[:6] for c in comm_codes],
            "street": [c[6:9] for c in comm_codes],
            "community": [c[9:12] for c in comm_codes],
            "row": frame["row"].to_numpy(),
            "col": frame["col"].to_numpy(),
        },
        geometry=list(pieces[keep][frame.index.to_numpy()]),
        crs=metric,
    )
    for extra in ("name", "street_name"):
        if extra in comm.columns:
            out[f"community_{extra}" if extra == "name" else extra] = comm[extra].to_numpy()[
                frame["comm"].to_numpy()
            ]
    return validate(out.to_crs("EPSG:4326"), GRID, source="generated")


def _polygonal(geom: shapely.Geometry) -> shapely.Geometry | None:
    """Keep the polygonal part of an intersection (drop touching lines and points)."""
    if geom is None or geom.is_empty:
        return None
    if isinstance(geom, shapely.Polygon | shapely.MultiPolygon):
        return geom
    if isinstance(geom, shapely.GeometryCollection):
        polys = [g for g in geom.geoms if isinstance(g, shapely.Polygon | shapely.MultiPolygon)]
        if not polys:
            return None
        merged = shapely.union_all(polys)
        return merged if isinstance(merged, shapely.Polygon | shapely.MultiPolygon) else None
    return None


@dataclass
class GridIndex:
    """Point → cell lookup over any unit grid, vectorised.

    A lon/lat raster finer than the cells maps most points to their cell by array
    indexing alone; points in raster boxes that straddle a cell edge are decided by an
    exact point-in-polygon test against the few candidate cells of that box.
    """

    codes: npt.NDArray[np.str_]
    geoms: npt.NDArray[np.object_]
    x0: float
    y0: float
    step: float
    nx: int
    ny: int
    direct: npt.NDArray[np.int32]
    cand_offsets: npt.NDArray[np.int64]
    cand_counts: npt.NDArray[np.int32]
    candidates: npt.NDArray[np.int32]

    @classmethod
    def build(cls, grid: gpd.GeoDataFrame, subdivisions: int = 6) -> GridIndex:
        require_geographic(grid, "grid")
        geoms = grid.geometry.to_numpy()
        shapely.prepare(geoms)
        x0, y0, x1, y1 = (float(v) for v in grid.total_bounds)
        bounds = shapely.bounds(geoms)
        typical = float(
            np.median(np.minimum(bounds[:, 2] - bounds[:, 0], bounds[:, 3] - bounds[:, 1]))
        )
        step = max(typical / subdivisions, 1e-7)
        nx = max(int(np.ceil((x1 - x0) / step)), 1)
        ny = max(int(np.ceil((y1 - y0) / step)), 1)
        while nx * ny > 8_000_000:
            step *= 1.5
            nx, ny = int(np.ceil((x1 - x0) / step)), int(np.ceil((y1 - y0) / step))
        i_grid, j_grid = np.meshgrid(np.arange(nx), np.arange(ny))
        ii, jj = i_grid.ravel(), j_grid.ravel()
        boxes = shapely.box(
            x0 + ii * step, y0 + jj * step, x0 + (ii + 1) * step, y0 + (jj + 1) * step
        )
        tree = STRtree(geoms)
        within_box, within_cell = tree.query(boxes, predicate="within")
        direct = np.full(nx * ny, -1, dtype=np.int32)
        direct[within_box] = within_cell
        box_idx, cell_idx = tree.query(boxes, predicate="intersects")
        ambiguous = direct[box_idx] == -1
        box_idx, cell_idx = box_idx[ambiguous], cell_idx[ambiguous]
        order = np.argsort(box_idx, kind="stable")
        box_idx, cell_idx = box_idx[order], cell_idx[order]
        counts = np.bincount(box_idx, minlength=nx * ny).astype(np.int32)
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        return cls(
            codes=grid["code"].astype(str).to_numpy(),
            geoms=geoms,
            x0=x0,
            y0=y0,
            step=step,
            nx=nx,
            ny=ny,
            direct=direct,
            cand_offsets=offsets,
            cand_counts=counts,
            candidates=cell_idx.astype(np.int32),
        )

    def lookup(self, lon: npt.ArrayLike, lat: npt.ArrayLike) -> npt.NDArray[np.int32]:
        """Index of the cell holding each WGS84 point, or -1 outside the grid."""
        x = np.asarray(lon, dtype=np.float64)
        y = np.asarray(lat, dtype=np.float64)
        i = np.floor((x - self.x0) / self.step)
        j = np.floor((y - self.y0) / self.step)
        inside = (i >= 0) & (i < self.nx) & (j >= 0) & (j < self.ny)
        r = np.where(inside, j * self.nx + i, 0).astype(np.int64)
        out = np.where(inside, self.direct[r], -1).astype(np.int32)
        todo = np.flatnonzero((out == -1) & inside & (self.cand_counts[r] > 0))
        k = 0
        while todo.size:
            rr = r[todo]
            has = self.cand_counts[rr] > k
            todo, rr = todo[has], rr[has]
            if not todo.size:
                break
            cand = self.candidates[self.cand_offsets[rr] + k]
            hit = shapely.intersects_xy(self.geoms[cand], x[todo], y[todo])
            out[todo[hit]] = cand[hit]
            todo = todo[~hit]
            k += 1
        return out

    def cell_codes(self, lon: npt.ArrayLike, lat: npt.ArrayLike) -> npt.NDArray[np.str_]:
        """15-digit code of the cell holding each point; '' outside the grid."""
        idx = self.lookup(lon, lat)
        padded = np.append(self.codes, "")
        return padded[np.where(idx >= 0, idx, len(self.codes))]


def split_code(code: str) -> tuple[str, str, str, str]:
    """(county, street, community, cell) parts of a 15-digit unit-grid code."""
    if len(code) != 15 or not code.isdigit():
        raise GeoError(f"{code!r} is not a 15-digit unit-grid code")
    return code[:6], code[6:9], code[9:12], code[12:]
