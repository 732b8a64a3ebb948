"""Pipe-network topology and valve isolation.

Pipes are edges between nodes found by snapping their end points (to a tolerance in
metres); valves sit on nodes. Closing the valves around a damaged segment isolates
every segment reachable from it without passing a valve: that section and the valves
that bound it are what a dispatcher needs.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import shapely

from geo.crs import metric_crs_for, require_geographic
from geo.errors import GeoError

SNAP_M = 1.0
VALVE_SNAP_M = 5.0


@dataclass(frozen=True)
class Isolation:
    """The section to shut off for a damaged segment."""

    segment_ids: tuple[str, ...]
    valve_ids: tuple[str, ...]
    #: False when no valve bounds the section on some side (it runs to a network end).
    closed: bool


class PipeNetwork:
    """Topology of one network (gas, water, drainage or heating)."""

    def __init__(self, pipes: gpd.GeoDataFrame, valves: gpd.GeoDataFrame | None = None) -> None:
        require_geographic(pipes, "pipes")
        if pipes.empty:
            raise GeoError("a pipe network needs at least one pipe")
        metric = metric_crs_for(pipes)
        projected = pipes.to_crs(metric)
        self.segment_ids = projected["asset_id"].astype(str).to_numpy()
        geoms = shapely.line_merge(projected.geometry.to_numpy())
        starts = shapely.get_point(geoms, 0)
        ends = shapely.get_point(geoms, -1)
        nodes: dict[tuple[int, int], int] = {}

        def node_of(pt: shapely.Point) -> int:
            key = (round(pt.x / SNAP_M), round(pt.y / SNAP_M))
            return nodes.setdefault(key, len(nodes))

        self.ends = np.array(
            [(node_of(a), node_of(b)) for a, b in zip(starts, ends, strict=True)], dtype=np.int64
        )
        self.node_xy = np.zeros((len(nodes), 2))
        for (kx, ky), i in nodes.items():
            self.node_xy[i] = (kx * SNAP_M, ky * SNAP_M)
        self.incident: dict[int, list[int]] = defaultdict(list)
        for seg, (a, b) in enumerate(self.ends):
            self.incident[int(a)].append(seg)
            self.incident[int(b)].append(seg)
        self.valve_at: dict[int, str] = {}
        if valves is not None and not valves.empty:
            require_geographic(valves, "valves")
            vproj = valves.to_crs(metric)
            tree = shapely.STRtree(shapely.points(self.node_xy))
            v_idx, n_idx = tree.query_nearest(
                vproj.geometry.to_numpy(), max_distance=VALVE_SNAP_M, all_matches=False
            )
            vids = vproj["asset_id"].astype(str).to_numpy()
            for v, n in zip(v_idx, n_idx, strict=True):
                self.valve_at[int(n)] = str(vids[v])
        self._index = {sid: i for i, sid in enumerate(self.segment_ids)}

    def isolate(self, segment_id: str) -> Isolation:
        """Segments and valves of the section around ``segment_id``."""
        start = self._index.get(segment_id)
        if start is None:
            raise GeoError(f"segment {segment_id!r} is not in this network")
        seen = {start}
        valves: set[str] = set()
        closed = True
        queue = deque([start])
        while queue:
            seg = queue.popleft()
            for end in self.ends[seg]:
                node = int(end)
                if node in self.valve_at:
                    valves.add(self.valve_at[node])
                    continue
                neighbours = [s for s in self.incident[node] if s != seg]
                if not neighbours:
                    closed = False
                for nxt in neighbours:
                    if nxt not in seen:
                        seen.add(nxt)
                        queue.append(nxt)
        return Isolation(
            tuple(sorted(str(self.segment_ids[s]) for s in seen)), tuple(sorted(valves)), closed
        )
