"""Placement: devices and positioned events → grid cell, district parts, nearest asset.

Vectorised for batches. Distances are metres in the GK zone of the asset map.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pandas as pd
import shapely
from shapely import STRtree

from geo.crs import FloatArray, metric_crs_for, project, require_geographic
from geo.grid import GridIndex

DEFAULT_MAX_DISTANCE_M = 50.0
#: Longest piece of an asset's outline kept in the search tree, in metres.
PIECE_M = 50.0
#: Radii of the growing nearest-asset search before the caller's maximum, in metres.
SEARCH_RADII_M: tuple[float, ...] = (20.0, 50.0)


@dataclass
class _ClassIndex:
    """Segments (and polygons) of one asset class in metric coordinates."""

    ids: npt.NDArray[np.str_]
    x1: FloatArray
    y1: FloatArray
    x2: FloatArray
    y2: FloatArray
    owner: npt.NDArray[np.int64]
    tree: STRtree
    polygons: STRtree | None
    polygon_owner: npt.NDArray[np.int64]

    @classmethod
    def build(cls, ids: npt.NDArray[np.str_], geoms: npt.NDArray[np.object_]) -> _ClassIndex:
        # Points become zero-length segments; lines and polygon rings their segments.
        boundaries = np.array(
            [
                g.boundary if isinstance(g, shapely.Polygon | shapely.MultiPolygon) else g
                for g in geoms
            ],
            dtype=object,
        )
        parts, part_owner = shapely.get_parts(boundaries, return_index=True)
        coords, idx = shapely.get_coordinates(parts, return_index=True)
        is_point = shapely.get_type_id(parts)[idx] == 0
        same = np.r_[idx[1:] == idx[:-1], False]
        start = np.flatnonzero(same | is_point)
        end = np.where(is_point[start], start, start + 1)
        owner = part_owner[idx[start]]
        x1, y1 = coords[start, 0], coords[start, 1]
        x2, y2 = coords[end, 0], coords[end, 1]
        # Short pieces keep bounding boxes tight, so a search box meets few of them.
        length = np.hypot(x2 - x1, y2 - y1)
        pieces = np.maximum(np.ceil(length / PIECE_M), 1).astype(np.int64)
        seg = np.repeat(np.arange(x1.size), pieces)
        k = np.arange(seg.size) - np.repeat(np.cumsum(pieces) - pieces, pieces)
        f0, f1 = k / pieces[seg], (k + 1) / pieces[seg]
        ddx, ddy = x2 - x1, y2 - y1
        x1, y1, x2, y2 = (
            x1[seg] + f0 * ddx[seg],
            y1[seg] + f0 * ddy[seg],
            x1[seg] + f1 * ddx[seg],
            y1[seg] + f1 * ddy[seg],
        )
        owner = owner[seg]
        boxes = shapely.box(
            np.minimum(x1, x2), np.minimum(y1, y2), np.maximum(x1, x2), np.maximum(y1, y2)
        )
        poly_mask = np.array(
            [isinstance(g, shapely.Polygon | shapely.MultiPolygon) for g in geoms], dtype=bool
        )
        return cls(
            ids=ids,
            x1=x1,
            y1=y1,
            x2=x2,
            y2=y2,
            owner=owner.astype(np.int64),
            tree=STRtree(boxes),
            polygons=STRtree(geoms[poly_mask]) if poly_mask.any() else None,
            polygon_owner=np.flatnonzero(poly_mask).astype(np.int64),
        )

    def nearest(
        self, x: FloatArray, y: FloatArray, max_distance_m: float
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], FloatArray]:
        """(point index, asset index, distance) of the nearest asset for points in reach.

        Searches grow outwards: a point whose nearest asset lies within a small radius
        is settled by the first pass (exactly: anything closer is in its search box);
        only the rest are searched again with the next radius.
        """
        out_pi, out_owner, out_dist = [], [], []
        todo = np.arange(x.size)
        radii = sorted({min(max_distance_m, r) for r in SEARCH_RADII_M} | {max_distance_m})
        for radius in radii:
            if not todo.size:
                break
            pi, owner, dist = self._nearest_within(x[todo], y[todo], radius)
            out_pi.append(todo[pi])
            out_owner.append(owner)
            out_dist.append(dist)
            found = np.zeros(todo.size, dtype=bool)
            found[pi] = True
            todo = todo[~found]
        return np.concatenate(out_pi), np.concatenate(out_owner), np.concatenate(out_dist)

    def _nearest_within(
        self, x: FloatArray, y: FloatArray, md: float
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], FloatArray]:
        pi, si = self.tree.query(shapely.box(x - md, y - md, x + md, y + md))
        ax, ay = self.x1[si], self.y1[si]
        dx, dy = self.x2[si] - ax, self.y2[si] - ay
        vx, vy = x[pi] - ax, y[pi] - ay
        length2 = dx * dx + dy * dy
        safe = np.where(length2 > 0, length2, 1.0)
        t = np.clip(np.where(length2 > 0, (vx * dx + vy * dy) / safe, 0.0), 0.0, 1.0)
        ex, ey = vx - t * dx, vy - t * dy
        dist = np.sqrt(ex * ex + ey * ey)
        owner = self.owner[si]
        if self.polygons is not None:
            inside_pt, inside_poly = self.polygons.query(shapely.points(x, y), predicate="within")
            pi = np.concatenate([pi, inside_pt])
            owner = np.concatenate([owner, self.polygon_owner[inside_poly]])
            dist = np.concatenate([dist, np.zeros(inside_pt.size)])
        keep = dist <= md
        pi, owner, dist = pi[keep], owner[keep], dist[keep]
        if not pi.size:
            return pi, owner, dist
        order = np.lexsort((dist, pi))
        pi, owner, dist = pi[order], owner[order], dist[order]
        first = np.r_[True, pi[1:] != pi[:-1]]
        return pi[first], owner[first], dist[first]


@dataclass
class AssetIndex:
    """Nearest-asset search per asset class, in metres (GK zone of the asset map)."""

    metric_crs: str
    classes: dict[str, _ClassIndex] = field(default_factory=dict)

    @classmethod
    def build(cls, assets: gpd.GeoDataFrame) -> AssetIndex:
        """``assets`` needs ``asset_id`` and ``asset_class`` columns, in WGS84."""
        require_geographic(assets, "assets")
        metric = metric_crs_for(assets)
        projected = assets.to_crs(metric)
        index = cls(metric)
        for asset_class, part in projected.groupby("asset_class", sort=True):
            index.classes[str(asset_class)] = _ClassIndex.build(
                part["asset_id"].astype(str).to_numpy(), part.geometry.to_numpy()
            )
        return index

    def nearest(
        self,
        lon: npt.ArrayLike,
        lat: npt.ArrayLike,
        classes: tuple[str, ...],
        max_distance_m: float = DEFAULT_MAX_DISTANCE_M,
    ) -> tuple[npt.NDArray[np.object_], FloatArray]:
        """Nearest asset of any of ``classes`` within ``max_distance_m`` of each point.

        Returns (asset ids, distances in m); None and NaN where none is in reach.
        """
        lon_a = np.atleast_1d(np.asarray(lon, dtype=np.float64))
        lat_a = np.atleast_1d(np.asarray(lat, dtype=np.float64))
        n = lon_a.size
        best_id = np.full(n, None, dtype=object)
        best_d = np.full(n, np.inf)
        if n == 0:
            return best_id, best_d
        x, y = project(lon_a, lat_a, self.metric_crs)
        for asset_class in classes:
            index = self.classes.get(asset_class)
            if index is None:
                continue
            pi, owner, dist = index.nearest(x, y, max_distance_m)
            better = dist < best_d[pi]
            pi, owner, dist = pi[better], owner[better], dist[better]
            best_d[pi] = dist
            best_id[pi] = index.ids[owner]
        best_d[np.isinf(best_d)] = np.nan
        return best_id, best_d


@dataclass
class Placer:
    """Places points on the grid and the asset map."""

    grid: GridIndex
    assets: AssetIndex | None = None

    def place(
        self,
        lon: npt.ArrayLike,
        lat: npt.ArrayLike,
        asset_classes: tuple[str, ...] = (),
        max_distance_m: float = DEFAULT_MAX_DISTANCE_M,
    ) -> pd.DataFrame:
        """One row per point: grid_code, county, street, community, asset_id, asset_distance_m."""
        codes = self.grid.cell_codes(lon, lat)
        frame = pd.DataFrame(
            {
                "grid_code": codes,
                "county": np.char.ljust(codes.astype("<U15"), 15).astype("<U6"),
            }
        )
        frame["street"] = [c[6:9] for c in codes]
        frame["community"] = [c[9:12] for c in codes]
        frame.loc[frame["grid_code"] == "", ["county", "street", "community"]] = ""
        if self.assets is not None and asset_classes:
            ids, dist = self.assets.nearest(lon, lat, asset_classes, max_distance_m)
            frame["asset_id"] = ids
            frame["asset_distance_m"] = dist
        else:
            frame["asset_id"] = None
            frame["asset_distance_m"] = np.nan
        return frame


def pipes_to_assets(pipes: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Pipe layer rows as assets of class ``<network>_pipe``."""
    out = pipes.copy()
    out["asset_class"] = out["network"].astype(str) + "_pipe"
    return out


def combine_assets(*layers: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """One asset table (asset_id, asset_class, owner_dept, geometry) from several layers."""
    cols = ["asset_id", "asset_class", "owner_dept", "geometry"]
    parts = [layer[[c for c in cols if c in layer.columns]] for layer in layers]
    for layer in layers:
        require_geographic(layer, "assets")
    return gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), crs="EPSG:4326")
