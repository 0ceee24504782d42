"""Benchmark of circles.isochrones on the Liechtenstein walking network.

Builds the circles walking network of ``../shared/data/osm/liechtenstein-latest.osm.pbf``,
picks 20 origins (fixed seed), computes node times with scipy's Dijkstra (cut off at
15 min at 1.2 m/s) and times :func:`circles.isochrones.isochrone_polygons` for the 5-,
10- and 15-minute levels with both methods, plus the ways of buffering the reached
segments that the ``"network"`` method chose between. Prints the figures and writes them
to ``benchmarks/results/isochrones.json``.

Run: ``/work/venv/bin/python benchmarks/bench_isochrones.py``
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import shapely
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from circles.io import write_atomic_text
from circles.isochrones import (
    NETWORK_BUFFER_M,
    QUAD_SEGS,
    area_km2,
    directed_edge_cost,
    isochrone_polygons,
    reached_segments,
)
from circles.network import WalkNetwork

HERE = Path(__file__).resolve().parent
PBF = HERE.parent.parent / "shared" / "data" / "osm" / "liechtenstein-latest.osm.pbf"
OUT = HERE / "results" / "isochrones.json"
SPEED_M_S = 1.2
LEVELS_S = (300.0, 600.0, 900.0)
N_ORIGINS = 20
SEED = 2024

T = TypeVar("T")


def load_network(path: Path) -> WalkNetwork:
    """The study's walking network, as ``circles run`` builds it."""
    from circles.io import load_network as circles_load_network

    return circles_load_network(path)


def graph(net: WalkNetwork, cost: np.ndarray) -> csr_matrix:
    tail, head, c = net.directed_arcs(cost)
    ok = np.isfinite(c)
    tail, head, c = tail[ok], head[ok], c[ok]
    order = np.lexsort((c, head, tail))  # keep the cheapest of duplicate arcs
    tail, head, c = tail[order], head[order], c[order]
    first = np.ones(tail.size, bool)
    first[1:] = (tail[1:] != tail[:-1]) | (head[1:] != head[:-1])
    return csr_matrix((c[first], (tail[first], head[first])), shape=(net.n_nodes,) * 2)


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    t0 = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t0) * 1000.0, out


def stats(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {
        "mean_ms": round(float(a.mean()), 3),
        "median_ms": round(float(np.median(a)), 3),
        "p90_ms": round(float(np.percentile(a, 90)), 3),
        "max_ms": round(float(a.max()), 3),
    }


def buffer_variants(segs: np.ndarray) -> dict[str, Callable[[], object]]:
    """Ways of buffering the reached segments into one polygon."""
    multi = shapely.multilinestrings(segs)

    def merged(union: Callable[[np.ndarray], object] = shapely.union_all) -> object:
        parts = shapely.get_parts(shapely.line_merge(multi))
        return union(shapely.buffer(parts, NETWORK_BUFFER_M, quad_segs=QUAD_SEGS))

    variants: dict[str, Callable[[], object]] = {
        "union_all(buffer(line_merge parts))": merged,
    }
    if hasattr(shapely, "disjoint_subset_union_all"):  # shapely >= 2.1, GEOS >= 3.12
        variants["disjoint_subset_union_all(buffer(line_merge parts)) [used]"] = lambda: merged(
            shapely.disjoint_subset_union_all
        )
    else:
        variants["union_all(buffer(line_merge parts)) [used]"] = variants.pop(
            "union_all(buffer(line_merge parts))"
        )
    return variants | {
        "union_all(buffer(each segment))": lambda: shapely.union_all(
            shapely.buffer(segs, NETWORK_BUFFER_M, quad_segs=QUAD_SEGS)
        ),
        "buffer(multilinestring)": lambda: shapely.buffer(
            multi, NETWORK_BUFFER_M, quad_segs=QUAD_SEGS
        ),
        "buffer(union_all(segments))": lambda: shapely.buffer(
            shapely.union_all(segs), NETWORK_BUFFER_M, quad_segs=QUAD_SEGS
        ),
    }


def main() -> int:
    if not PBF.exists():
        print(f"skipped: {PBF} is absent (see ../shared/data/README.md)")
        return 0
    t_load, net = timed(lambda: load_network(PBF))
    print(f"network: {net.n_nodes} nodes, {net.n_edges} edges ({t_load / 1000:.1f} s to load)")
    cost = directed_edge_cost(net, net.edge_seconds(SPEED_M_S))
    g = graph(net, cost)
    origins = np.random.default_rng(SEED).choice(net.n_nodes, N_ORIGINS, replace=False)
    t_dij, times = timed(lambda: dijkstra(g, indices=origins, limit=max(LEVELS_S)))
    node_times = np.asarray(times, dtype=float)
    print(f"dijkstra: {N_ORIGINS} origins, {t_dij:.0f} ms in all")

    result: dict[str, Any] = {
        "data": PBF.name,
        "nodes": net.n_nodes,
        "edges": net.n_edges,
        "origins": N_ORIGINS,
        "seed": SEED,
        "speed_m_s": SPEED_M_S,
        "levels_s": list(LEVELS_S),
        "buffer_m": NETWORK_BUFFER_M,
        "quad_segs": QUAD_SEGS,
        "machine": {
            "python": platform.python_version(),
            "shapely": shapely.__version__,
            "geos": shapely.geos_version_string,
            "cpus": os.cpu_count(),
        },
        "methods": {},
    }
    # warm-up (imports, GEOS caches)
    isochrone_polygons(net, node_times[0], cost, LEVELS_S)
    for method in ("network", "concave"):
        per_call: list[float] = []
        per_level: dict[float, list[float]] = {lev: [] for lev in LEVELS_S}
        areas: dict[float, list[float]] = {lev: [] for lev in LEVELS_S}
        for secs in node_times:
            ms, polys = timed(partial(isochrone_polygons, net, secs, cost, LEVELS_S, method=method))
            per_call.append(ms / len(LEVELS_S))
            for lev, a in zip(LEVELS_S, area_km2(polys, crs=net.crs), strict=True):
                areas[lev].append(float(a))
            for lev in LEVELS_S:
                ms1, _ = timed(partial(isochrone_polygons, net, secs, cost, [lev], method=method))
                per_level[lev].append(ms1)
        entry: dict[str, Any] = {
            "per_isochrone_in_3_level_call": stats(per_call),
            "single_level_call": {
                f"{int(lev // 60)} min": stats(per_level[lev]) for lev in LEVELS_S
            },
            "mean_area_km2": {
                f"{int(lev // 60)} min": round(float(np.mean(areas[lev])), 4) for lev in LEVELS_S
            },
        }
        result["methods"][method] = entry
        print(
            f"{method:8s}: {entry['per_isochrone_in_3_level_call']['mean_ms']:.2f} ms per "
            f"isochrone (mean of {N_ORIGINS} origins x 3 levels; median "
            f"{entry['per_isochrone_in_3_level_call']['median_ms']:.2f}, p90 "
            f"{entry['per_isochrone_in_3_level_call']['p90_ms']:.2f})"
        )
        for lev in LEVELS_S:
            key = f"{int(lev // 60)} min"
            print(
                f"          {key:>6s} alone: {entry['single_level_call'][key]['mean_ms']:7.2f} ms,"
                f" mean area {entry['mean_area_km2'][key]:.3f} km2"
            )

    variant_ms: dict[str, list[float]] = {}
    seg_ms: list[float] = []
    for secs in node_times:
        ms, segs = timed(partial(reached_segments, net, secs, cost, max(LEVELS_S)))
        seg_ms.append(ms)
        for name, fn in buffer_variants(segs).items():
            variant_ms.setdefault(name, []).append(timed(fn)[0])
    result["reached_segments_15min"] = stats(seg_ms)
    result["buffer_variants_15min"] = {k: stats(v) for k, v in variant_ms.items()}
    print(f"reached_segments (15 min): {np.mean(seg_ms):.2f} ms")
    print("buffering the 15-min reached segments (mean ms):")
    for name, v in variant_ms.items():
        print(f"  {name:45s} {np.mean(v):8.2f}")

    write_atomic_text(OUT, json.dumps(result, indent=2) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
