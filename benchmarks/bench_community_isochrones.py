"""Community isochrones per community: circles against the osmnx notebook, same centres.

On a real extract (default Liechtenstein, 53,135 walking nodes), the centres of the
500 m hexagon communities (711; ``--width`` changes it), levels 5/10/15 min at 1.2 m/s.
For a sample of the centres (every k-th, ``--sample``), each of these draws the three
levels of one community, taking turns community by community (so a busy machine slows
them alike):

- **notebook**: the typical osmnx notebook (osmnx-examples, isolines and isochrones):
  for each level ``nx.ego_graph(G, centre, radius=level, distance="time")`` and the
  convex hull of the nodes of the subgraph (``gpd.GeoSeries(points).union_all()
  .convex_hull``), on the same walking network as an osmnx-style MultiDiGraph (projected
  x/y, ``time`` per edge);
- **previous**: what circles drew before: a dense Dijkstra row and
  :func:`circles.geometry.isochrone_polygons` (every level from all its pieces, nested
  by a second union);
- **circles**: a bounded search (:func:`circles.access.seconds_from_nodes`) and
  :func:`circles.geometry.reach_polygons` (chain buffers drawn once, levels built one on
  the other), on one thread.

Then the whole stage, :func:`circles.isochrones.community_isochrones` on all centres of
the sample, on one thread and on one thread per core (wall time per community). The
first use of the chains (their buffers, once per network) is part of the stage timing.
Ratios are within this run. Accuracy: the area of the hulls against the network
polygons, and the largest Hausdorff distance between circles and previous.

Run: ``python benchmarks/bench_community_isochrones.py [--extract PBF] [--sample K]``.
Writes ``benchmarks/results/community_isochrones.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import shapely

HERE = Path(__file__).resolve().parent
DEFAULT = HERE.parents[1] / "shared" / "data" / "osm" / "liechtenstein-latest.osm.pbf"
SPEED_M_S = 1.2
LEVELS_S = [300.0, 600.0, 900.0]


def notebook_graph(net: Any) -> Any:
    """The network as the notebook has it: a MultiDiGraph, x/y in metres, ``time`` (s)."""
    import networkx as nx

    g = nx.MultiDiGraph(crs=net.crs)
    g.add_nodes_from(
        (i, {"x": float(x), "y": float(y)})
        for i, (x, y) in enumerate(zip(net.x, net.y, strict=True))
    )
    tail, head, sec = net.directed_arcs(net.edge_seconds(SPEED_M_S))
    g.add_edges_from(
        (int(a), int(b), {"time": float(s), "length": float(s * SPEED_M_S)})
        for a, b, s in zip(tail, head, sec, strict=True)
    )
    return g


def notebook_isochrones(g: Any, centre: int) -> list[Any]:
    """The notebook's loop for one centre (largest level first, as it draws them)."""
    import geopandas as gpd
    import networkx as nx
    from shapely.geometry import Point

    polys = []
    for trip in sorted(LEVELS_S, reverse=True):
        sub = nx.ego_graph(g, centre, radius=trip, distance="time")
        pts = [Point((d["x"], d["y"])) for _, d in sub.nodes(data=True)]
        polys.append(gpd.GeoSeries(pts).union_all().convex_hull)
    return polys[::-1]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--extract", type=Path, default=DEFAULT)
    ap.add_argument("--width", type=float, default=500.0, help="hexagon width, m")
    ap.add_argument("--sample", type=int, default=7, help="every k-th centre")
    args = ap.parse_args(argv[1:])
    if not args.extract.exists():
        print(f"skipped: {args.extract} not found (../shared/data is not on this machine)")
        return 0
    from scipy.sparse.csgraph import dijkstra

    from circles import geometry, isochrones
    from circles.access import AccessGraph, seconds_from_nodes
    from circles.coverage import hexagon_communities
    from circles.io import load_network, write_atomic_text

    net = load_network(args.extract)
    graph = AccessGraph.from_network(net, net.edge_seconds(SPEED_M_S))
    comm = hexagon_communities(net, width_m=args.width)
    centres = isochrones.community_centres(net, comm)
    pick = np.arange(0, len(centres), args.sample)
    sample = comm.iloc[pick].reset_index(drop=True)
    g = notebook_graph(net)
    weight = net.node_weight_m()
    fwd = graph.forward_matrix()

    # the whole stage first, cold (the chains and their buffers are built in here)
    t = time.perf_counter()
    isochrones.community_isochrones(graph, sample, weight, levels_minutes=[5, 10, 15])
    stage_threads = time.perf_counter() - t
    geometry._CHAINS.clear()
    t = time.perf_counter()
    with isochrones.one_thread():
        isochrones.community_isochrones(graph, sample, weight, levels_minutes=[5, 10, 15])
    stage_one = time.perf_counter() - t

    chains = geometry.StreetChains.of(net)
    times: dict[str, list[float]] = {"notebook": [], "previous": [], "circles": []}
    hull_over: list[float] = []
    hausdorff = 0.0
    for c in centres[pick].tolist():
        t = time.perf_counter()
        hulls = notebook_isochrones(g, c)
        times["notebook"].append(time.perf_counter() - t)
        t = time.perf_counter()
        row = dijkstra(fwd, directed=True, indices=c, limit=max(LEVELS_S))
        old = geometry.isochrone_polygons(net, row, graph.edge_cost, LEVELS_S, threads=False)
        times["previous"].append(time.perf_counter() - t)
        t = time.perf_counter()
        reach = seconds_from_nodes(graph, np.array([c]), limit_s=max(LEVELS_S))
        new = geometry.reach_polygons(chains, *reach.reached(0), graph.edge_cost, LEVELS_S)
        times["circles"].append(time.perf_counter() - t)
        hull_over.append(hulls[-1].area / max(new[-1].area, 1e-9))
        hausdorff = max(
            hausdorff, *(shapely.hausdorff_distance(a, b) for a, b in zip(old, new, strict=True))
        )

    n = len(pick)
    per = {k: statistics.mean(v) * 1000 for k, v in times.items()}
    res = {
        "extract": args.extract.name,
        "nodes": net.n_nodes,
        "communities": len(comm),
        "sample": n,
        "levels_s": LEVELS_S,
        "ms_per_community_taking_turns": {k: round(v, 2) for k, v in per.items()},
        "median_ms": {k: round(statistics.median(v) * 1000, 2) for k, v in times.items()},
        "notebook_vs_circles_one_thread": round(per["notebook"] / per["circles"], 2),
        "previous_vs_circles_one_thread": round(per["previous"] / per["circles"], 2),
        "stage_ms_per_community_one_thread": round(stage_one / n * 1000, 2),
        "stage_ms_per_community_threads": round(stage_threads / n * 1000, 2),
        "threads": isochrones.COMMUNITY_THREADS,
        "notebook_vs_stage_threads": round(per["notebook"] / (stage_threads / n * 1000), 2),
        "hull_area_over_network_area_15min_median": round(statistics.median(hull_over), 2),
        "max_hausdorff_circles_vs_previous_m": round(hausdorff, 3),
        "python": platform.python_version(),
        "shapely": shapely.__version__,
        "geos": shapely.geos_version_string,
        "cpus": os.cpu_count(),
    }
    write_atomic_text(HERE / "results" / "community_isochrones.json", json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
