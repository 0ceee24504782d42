"""Facilities within 5/10/15 minutes (``counts_within``) against raw scipy's minutes.

For every default category with OSM facilities, in the same process and on the same
graph: raw ``scipy.sparse.csgraph.dijkstra(min_only=True)`` all-node minutes (45-minute
cut-off; the floor), ``counts_within`` (one search per facility, bounded in time and in
space, on the sub-network its walks can reach), the whole access stage
(``category_access``: minutes and counts), and the previous ``counts_within`` (one
search per facility over the whole network), whose counts must be equal.

Run::

    python benchmarks/bench_counts.py                      # Liechtenstein and Porto
    python benchmarks/bench_counts.py --tiled 13           # + 13 tiled copies (~690k nodes)

``--tiled`` writes the copies with :func:`bench_county.tile_extract` (needs ``osmium``:
``pip install -e ".[bench]"``). Results go to ``benchmarks/results/counts.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.sparse.csgraph import dijkstra

from circles import access, categories, io
from circles.access import AccessGraph, Entries, category_access, counts_within
from circles.facilities import STATUS_SNAPPED
from circles.pipeline import load_facilities

HERE = Path(__file__).resolve().parent
OSM = HERE.parents[1] / "shared" / "data" / "osm"
SPEED_M_S = 1.2
LEVELS_S = np.array([300.0, 600.0, 900.0])


def median_s(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(path: Path) -> dict:
    net = io.load_network(path)
    profile = categories.load_profile("default")
    cats = [c.id for c in profile.categories]
    fac, _, _ = load_facilities(
        net, features=str(path), files=[], categories=cats, profile=profile, max_snap_m=200.0
    )
    fac = fac[(fac["status"] == STATUS_SNAPPED) & fac["category"].isin(cats)]
    edge = fac["edge"].to_numpy(np.int64)
    frac = fac["frac"].to_numpy(float)
    acc = fac["snap_m"].to_numpy(float) / SPEED_M_S
    group = fac["category"].to_numpy(object)
    present = [c for c in cats if (group == c).any()]
    g = AccessGraph.from_network(net, net.edge_seconds(SPEED_M_S))
    n = net.n_nodes
    mat = g.with_facilities(edge, frac, acc)
    idx = {c: n + np.flatnonzero(group == c) for c in present}
    sel = {c: group == c for c in present}

    def raw():
        for i in idx.values():
            dijkstra(mat, directed=True, indices=i, min_only=True, limit=45 * 60.0)

    def counts():
        return [counts_within(g, edge[m], frac[m], acc[m], levels_s=LEVELS_S) for m in sel.values()]

    def stage():
        for c, m in sel.items():
            category_access(
                g, edge[m], frac[m], acc[m], c, max_minutes=45, levels_minutes=(5, 10, 15)
            )

    def previous():
        out = []
        for m in sel.values():
            ent = Entries.at_points(edge[m], frac[m], acc[m])
            o = np.zeros((n, LEVELS_S.size), np.int32)
            access._count_whole(g.with_entries(ent), np.arange(ent.n_facilities), n, LEVELS_S, o)
            out.append(o)
        return out

    equal = all(np.array_equal(a, b) for a, b in zip(counts(), previous(), strict=True))
    t_raw, t_counts, t_stage = median_s(raw), median_s(counts), median_s(stage)
    t_prev = median_s(previous, 1)
    rec = {
        "network": path.name,
        "nodes": n,
        "facilities": len(fac),
        "categories": len(present),
        "raw_scipy_minutes_s": t_raw,
        "counts_within_s": t_counts,
        "counts_vs_raw": t_counts / t_raw,
        "minutes_and_counts_s": t_stage,
        "stage_vs_raw": t_stage / t_raw,
        "previous_counts_s": t_prev,
        "previous_vs_raw": t_prev / t_raw,
        "counts_equal_previous": bool(equal),
    }
    print(json.dumps(rec), flush=True)
    return rec


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiled", type=int, default=0, help="copies of Liechtenstein (0: none)")
    ap.add_argument("paths", nargs="*", type=Path)
    args = ap.parse_args()
    paths = args.paths or [OSM / "liechtenstein-latest.osm.pbf", OSM / "porto.osm.pbf"]
    missing = [p for p in paths if not p.exists()]
    if missing:
        sys.exit(f"skipped: {missing[0]} not found (../shared/data is not on this machine)")
    results = [measure(p) for p in paths]
    if args.tiled:
        sys.path.insert(0, str(HERE))
        from bench_county import tile_extract

        with tempfile.TemporaryDirectory() as tmp:
            tiled = Path(tmp) / f"liechtenstein_x{args.tiled}.osm.pbf"
            tile_extract(OSM / "liechtenstein-latest.osm.pbf", tiled, args.tiled)
            results.append(measure(tiled))
    out = HERE / "results" / "counts.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
