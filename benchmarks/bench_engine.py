"""Engine benchmark: all-node minutes for all default categories on Liechtenstein.

Times, in the same run and on the same graph and facilities:

- circles: ``AccessGraph.from_network`` + ``nearest_by_group`` (minutes only, graph
  build included);
- circles run: what the access stage of ``circles run`` computes per category
  (:func:`circles.access.category_access`: the minutes *and* the number of facilities
  within 5/10/15 minutes of every node, ``counts_within``), graph build included;
- raw scipy: ``scipy.sparse.csgraph.dijkstra(min_only=True)`` on prebuilt CSR matrices
  of the same arrays (the floor);
- networkx: ``multi_source_dijkstra_path_length`` on the same augmented graph;
- pandana (when installed): ``nearest_pois`` after ``precompute`` (node-snapped, float32).

Run: ``python benchmarks/bench_engine.py [path/to/liechtenstein-latest.osm.pbf]``.
Results are printed and written to ``benchmarks/results/engine.json``.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from pathlib import Path

import networkx as nx
import numpy as np
from scipy.sparse.csgraph import dijkstra

from circles import categories, io
from circles.access import AccessGraph, category_access, nearest_by_group
from circles.config import config_from_dict
from circles.facilities import STATUS_SNAPPED
from circles.pipeline import load_facilities

HERE = Path(__file__).resolve().parent
DEFAULT = HERE.parents[1] / "shared" / "data" / "osm" / "liechtenstein-latest.osm.pbf"
SPEED_M_S = 1.2
LIMIT_S = 45 * 60.0
REPEAT = 7


def best_of(fn, repeat=REPEAT):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times)


def main(path: Path) -> dict:
    if not path.exists():
        sys.exit(f"skipped: {path} not found (../shared/data is not on this machine)")
    t = time.perf_counter()
    net = io.load_network(path)
    load_s = time.perf_counter() - t
    cfg = config_from_dict({"network": {"source": str(path)}})
    profile = categories.load_profile("default")
    cats = [c.id for c in profile.categories]
    fac, _, _ = load_facilities(
        net,
        features=str(path),
        files=[],
        categories=cats,
        profile=profile,
        max_snap_m=cfg.walk.max_snap_m,
    )
    fac = fac[fac["status"] == STATUS_SNAPPED]
    fac = fac[fac["category"].isin(cats)]
    edge = fac["edge"].to_numpy(np.int64)
    frac = fac["frac"].to_numpy(float)
    acc = fac["snap_m"].to_numpy(float) / SPEED_M_S
    group = fac["category"].to_numpy(object)
    present = [c for c in cats if (group == c).any()]
    cost = net.edge_seconds(SPEED_M_S)

    def circles_engine():
        g = AccessGraph.from_network(net, cost)
        got = nearest_by_group(g, edge, frac, acc, group, limit_s=LIMIT_S, groups=present)
        return {c: v[0] for c, v in got.items()}

    def circles_run_engine():
        g = AccessGraph.from_network(net, cost)
        out = {}
        for c in present:
            m = group == c
            out[c] = category_access(
                g, edge[m], frac[m], acc[m], c, max_minutes=LIMIT_S / 60,
                levels_minutes=(5.0, 10.0, 15.0),
            )  # fmt: skip
        return out

    g = AccessGraph.from_network(net, cost)
    mat = g.with_facilities(edge, frac, acc)
    n = net.n_nodes
    idx = {c: n + np.flatnonzero(group == c) for c in present}

    def raw_scipy():
        return {
            c: dijkstra(mat, directed=True, indices=i, min_only=True, limit=LIMIT_S)[:n]
            for c, i in idx.items()
        }

    per_cat = {c: (edge[group == c], frac[group == c], acc[group == c]) for c in present}
    mats = {c: g.with_facilities(*a) for c, a in per_cat.items()}
    nxg = {}
    for c, m in mats.items():
        coo = m.tocoo()
        G = nx.DiGraph()
        G.add_weighted_edges_from(
            zip(coo.row.tolist(), coo.col.tolist(), coo.data.tolist(), strict=False)
        )
        nxg[c] = (G, set(range(n, m.shape[0])))

    def networkx_engine():
        return {
            c: nx.multi_source_dijkstra_path_length(G, s, cutoff=LIMIT_S)
            for c, (G, s) in nxg.items()
        }

    ours = circles_engine()
    ref = raw_scipy()
    nxr = networkx_engine()
    max_diff_m = 0.0
    for c in per_cat:
        a = np.full(n, np.inf)
        for k, v in nxr[c].items():
            if k < n:
                a[k] = v
        same = np.isfinite(a) == np.isfinite(ours[c])
        assert same.all(), f"reachability differs from networkx for {c}"
        fin = np.isfinite(a)
        max_diff_m = max(max_diff_m, float(np.abs(a[fin] - ours[c][fin]).max() * SPEED_M_S))
        assert np.array_equal(ref[c], ours[c])
    run_out = circles_run_engine()
    for c in per_cat:
        assert np.array_equal(run_out[c][0], ours[c] / 60.0)

    res = {
        "extract": path.name,
        "nodes": n,
        "edges": net.n_edges,
        "categories_with_facilities": len(per_cat),
        "facilities": len(fac),
        "load_network_s": round(load_s, 3),
        "limit_min": LIMIT_S / 60,
        "max_abs_diff_vs_networkx_m": max_diff_m,
        "python": platform.python_version(),
    }
    for name, fn in [
        ("circles", circles_engine),
        ("circles_run_minutes_and_counts", circles_run_engine),
        ("raw_scipy", raw_scipy),
        ("networkx", networkx_engine),
    ]:
        slow = name in ("networkx", "circles_run_minutes_and_counts")
        best, med = best_of(fn, 3 if slow else REPEAT)
        res[f"{name}_best_s"] = round(best, 4)
        res[f"{name}_median_s"] = round(med, 4)
    try:
        import pandana
        import pandas as pd

        edges = pd.DataFrame({"from": net.u, "to": net.v, "w": net.length_m})
        nodes = pd.DataFrame({"x": net.lon, "y": net.lat}, index=np.arange(n))
        t = time.perf_counter()
        pn = pandana.Network(
            nodes["x"], nodes["y"], edges["from"], edges["to"], edges[["w"]], twoway=True
        )
        pn.precompute(LIMIT_S * SPEED_M_S)
        res["pandana_build_s"] = round(time.perf_counter() - t, 3)
        nodes_of = {c: np.where(a[1] < 0.5, net.u[a[0]], net.v[a[0]]) for c, a in per_cat.items()}

        def pandana_engine():
            out = {}
            for c, nd in nodes_of.items():
                pn.set_pois(c, LIMIT_S * SPEED_M_S, 1, net.lon[nd], net.lat[nd])
                out[c] = pn.nearest_pois(LIMIT_S * SPEED_M_S, c, num_pois=1)
            return out

        best, med = best_of(pandana_engine, 3)
        res["pandana_best_s"] = round(best, 4)
        res["pandana_median_s"] = round(med, 4)
    except ImportError:
        res["pandana"] = "not installed"
    res["circles_vs_raw_scipy"] = round(res["circles_median_s"] / res["raw_scipy_median_s"], 2)
    res["circles_run_vs_raw_scipy"] = round(
        res["circles_run_minutes_and_counts_median_s"] / res["raw_scipy_median_s"], 2
    )
    res["networkx_vs_circles"] = round(res["networkx_median_s"] / res["circles_median_s"], 1)
    if "pandana_median_s" in res:
        res["pandana_vs_circles"] = round(res["pandana_median_s"] / res["circles_median_s"], 1)
    out = HERE / "results" / "engine.json"
    io.write_atomic_text(out, json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT)
