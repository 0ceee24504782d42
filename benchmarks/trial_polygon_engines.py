"""A trial, not a dependency: GEOS against Clipper2 for the union of reached streets.

Community isochrones spend most of their time in GEOS (shapely) buffering and unioning
the reached streets. This measures what a Clipper2 engine (the ``clipper2-py`` bindings,
``pip install clipper2-py``; not a dependency of circles) would give on the same input:
for the 500 m hexagon centres of Liechtenstein (every ``--sample``-th), the streets
reached within 15 minutes (:func:`circles.geometry.reached_segments`, merged into lines)
are buffered by 25 m and unioned:

- **geos**: ``shapely.union_all(shapely.buffer(lines, 25, quad_segs=4))`` on the 1 mm grid
  (what :func:`circles.geometry.reach_polygons` does, in one union);
- **clipper2**: ``clipper2.inflate_paths`` of the same lines on a 1 mm integer grid, round
  joins and ends, ``arc_tolerance`` 0.48 m (GEOS's chord error at ``quad_segs=4``).

Each on one thread and on two (does it release the GIL?). Accuracy: the largest distance
of each polygon's vertices from the lines (the true buffer has 25 m), and the area of
each polygon farther than 0.5 m from the other one.

Run: ``python benchmarks/trial_polygon_engines.py [--sample K]`` (skips without the
shared extract or without ``clipper2``). Prints JSON; nothing is written.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import shapely

HERE = Path(__file__).resolve().parent
DEFAULT = HERE.parents[1] / "shared" / "data" / "osm" / "liechtenstein-latest.osm.pbf"
BUFFER_M = 25.0
CHORD_M = 0.48


def clipper_polygon(paths: list[np.ndarray]) -> Any:
    """Clipper2's stroke of ``paths`` (metres) as one shapely (Multi)Polygon."""
    import clipper2
    from clipper2 import EndType, JoinType

    rings = clipper2.inflate_paths(
        [np.round(p * 1000).astype(np.int64) for p in paths],
        BUFFER_M * 1000,
        JoinType.ROUND,
        EndType.ROUND,
        arc_tolerance=CHORD_M * 1000,
    )
    closed = [shapely.linearrings(np.vstack([r, r[:1]]) / 1000.0) for r in rings]
    outer = [shapely.Polygon(r) for r in closed if shapely.is_ccw(r)]
    holes = [shapely.Polygon(r) for r in closed if not shapely.is_ccw(r)]
    poly = shapely.union_all(outer)
    return shapely.difference(poly, shapely.union_all(holes)) if holes else poly


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--extract", type=Path, default=DEFAULT)
    ap.add_argument("--sample", type=int, default=7, help="every k-th centre")
    args = ap.parse_args(argv[1:])
    if not args.extract.exists():
        print(f"skipped: {args.extract} not found (../shared/data is not on this machine)")
        return 0
    try:
        import clipper2
    except ImportError:
        print("skipped: clipper2 is not installed (pip install clipper2-py)")
        return 0
    from circles import geometry, isochrones
    from circles.access import AccessGraph, seconds_from_nodes
    from circles.coverage import hexagon_communities
    from circles.io import load_network

    net = load_network(args.extract)
    graph = AccessGraph.from_network(net, net.edge_seconds(1.2))
    comm = hexagon_communities(net, width_m=500.0)
    centres = isochrones.community_centres(net, comm)[:: args.sample]
    reach = seconds_from_nodes(graph, centres, limit_s=900.0)
    lines, paths = [], []
    for i in range(len(centres)):
        nodes, secs = reach.reached(i)
        row = np.full(net.n_nodes, np.inf)
        row[nodes] = secs
        seg = geometry.reached_segments(net, row, graph.edge_cost, 900.0)
        merged = shapely.get_parts(shapely.line_merge(shapely.multilinestrings(seg)))
        lines.append(merged)
        paths.append([shapely.get_coordinates(g) for g in merged])

    def geos(i: int) -> Any:
        poly = shapely.union_all(shapely.buffer(lines[i], BUFFER_M, quad_segs=4))
        return shapely.set_precision(poly, 0.001)

    def clip(i: int) -> Any:
        return clipper_polygon(paths[i])

    n = len(centres)
    ms: dict[str, float] = {}
    drawn: dict[str, list[Any]] = {}
    for name, fn in (("geos", geos), ("clipper2", clip)) * 2:  # twice: the second counts
        t = time.perf_counter()
        drawn[name] = [fn(i) for i in range(n)]
        ms[f"{name}_one_thread"] = (time.perf_counter() - t) / n * 1000
        with ThreadPoolExecutor(2) as pool:
            t = time.perf_counter()
            list(pool.map(fn, range(n)))
            ms[f"{name}_two_threads"] = (time.perf_counter() - t) / n * 1000
    far = {"geos": 0.0, "clipper2": 0.0}
    outside = {"geos_beyond_clipper2": 0.0, "clipper2_beyond_geos": 0.0}
    for i in range(n):
        allines = shapely.union_all(lines[i])
        for name in far:
            pts = shapely.points(shapely.get_coordinates(drawn[name][i]))
            far[name] = max(far[name], float(shapely.distance(pts, allines).max()))
        g, c = drawn["geos"][i], drawn["clipper2"][i]
        outside["geos_beyond_clipper2"] = max(
            outside["geos_beyond_clipper2"], shapely.difference(g, shapely.buffer(c, 0.5)).area
        )
        outside["clipper2_beyond_geos"] = max(
            outside["clipper2_beyond_geos"], shapely.difference(c, shapely.buffer(g, 0.5)).area
        )
    res = {
        "extract": args.extract.name,
        "communities": n,
        "ms_per_community_level_15": {k: round(v, 2) for k, v in ms.items()},
        "geos_over_clipper2_one_thread": round(
            ms["geos_one_thread"] / ms["clipper2_one_thread"], 2
        ),
        "max_vertex_distance_from_streets_m": {k: round(v, 4) for k, v in far.items()},
        "max_area_beyond_0_5_m_of_the_other_m2": {k: round(v, 2) for k, v in outside.items()},
        "clipper2_py": getattr(clipper2, "__version__", "?"),
        "geos": shapely.geos_version_string,
    }
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
