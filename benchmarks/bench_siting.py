"""Siting benchmark: 10 elderly-canteen sites on Liechtenstein, greedy against exact.

In one process, on the real Liechtenstein extract with 500 m hexagons as communities
(711 of them), elderly canteens walked at 0.9 m/s, 15-minute threshold:

1. the study is run once (cache warm for every suggestion below; not timed);
2. ``circles.siting.suggest`` with the greedy method (lazy evaluation) on the default
   candidates (network nodes, one per 100 m cell) and on coarser grids (200, 400 m):
   the whole suggestion (run from the cache, candidates, cover sets, choice, files and
   map) and the choice alone;
3. the same problems solved exactly with spopt + CBC (``method="exact"``) where it
   finishes within the time limit; the covered residents of both are compared.

Ratios are against the greedy choice of the same problem in the same run.

Run: ``python benchmarks/bench_siting.py [path/to/liechtenstein-latest.osm.pbf]``.
Writes ``benchmarks/results/siting.json`` and prints a markdown table.
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT = HERE.parents[1] / "shared" / "data" / "osm" / "liechtenstein-latest.osm.pbf"
SITES = 10
SPACINGS_M = (100.0, 200.0, 400.0)
EXACT_LIMIT_S = 600.0


def main() -> int:
    pbf = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    if not pbf.is_file():
        print(f"{pbf} not found: this benchmark needs the Liechtenstein extract")
        return 1
    from circles.config import config_from_dict
    from circles.io import write_atomic_text
    from circles.pipeline import run
    from circles.siting import suggest

    tmp = Path(tempfile.mkdtemp(prefix="circles_bench_siting_"))
    cfg = config_from_dict(
        {
            "study": {
                "name": "li_hex",
                "output_dir": str(tmp / "out"),
                "maps_dir": str(tmp / "maps"),
            },
            "network": {"source": str(pbf)},
            "communities": {"source": "hexagons", "hex_width_m": 500},
            "facilities": {"categories": ["elderly_canteen"]},
            "isochrones": {"enabled": False},
        },
        base_dir=tmp,
    )
    t0 = time.perf_counter()
    res = run(cfg, write=False, cache=True)
    t_run = time.perf_counter() - t0
    rows = []
    for spacing in SPACINGS_M:
        row: dict[str, object] = {"spacing_m": spacing}
        t0 = time.perf_counter()
        g = suggest(
            cfg, category="elderly_canteen", count=SITES, spacing_m=spacing, name=f"g{spacing:g}"
        )
        row.update(
            candidates=g.n_candidates,
            greedy_total_s=round(time.perf_counter() - t0, 3),
            greedy_choice_s=round(g.choice.seconds, 4),
            greedy_evaluations=g.choice.evaluations,
            greedy_covered=g.choice.covered,
            greedy_share_after=float(g.sites["share_after"].iloc[-1]),
            share_before=g.share_before,
        )
        try:
            t0 = time.perf_counter()
            e = suggest(
                cfg,
                category="elderly_canteen",
                count=SITES,
                spacing_m=spacing,
                method="exact",
                name=f"e{spacing:g}",
                time_limit_s=EXACT_LIMIT_S,
            )
            row.update(
                exact_total_s=round(time.perf_counter() - t0, 3),
                exact_choice_s=round(e.choice.seconds, 3),
                exact_covered=e.choice.covered,
                exact_share_after=float(e.sites["share_after"].iloc[-1]),
                greedy_over_exact=g.choice.covered / e.choice.covered,
                exact_over_greedy_time=e.choice.seconds / max(g.choice.seconds, 1e-9),
            )
        except Exception as exc:  # a solve that does not finish is a result too
            row["exact"] = f"{type(exc).__name__}: {exc}"
        rows.append(row)
        print(json.dumps(row), flush=True)
    doc = {
        "machine": platform.platform(),
        "python": platform.python_version(),
        "communities": len(res.communities),
        "nodes": res.network.n_nodes,
        "study_run_s": round(t_run, 2),
        "sites": SITES,
        "rows": rows,
    }
    out = HERE / "results" / "siting.json"
    out.parent.mkdir(exist_ok=True)
    write_atomic_text(out, json.dumps(doc, indent=2))
    print(f"\n{len(res.communities)} hexagon communities, {res.network.n_nodes} nodes")
    print(
        "| candidates (spacing) | greedy: whole suggestion | greedy: choice | exact: choice "
        "| covered greedy / exact |"
    )
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        ex = f"{r['exact_choice_s']} s" if "exact_choice_s" in r else str(r.get("exact"))[:60]
        ratio = f"{r['greedy_over_exact']:.4f}" if "greedy_over_exact" in r else "–"
        print(
            f"| {r['candidates']} ({r['spacing_m']:g} m) | {r['greedy_total_s']} s | "
            f"{r['greedy_choice_s']} s | {ex} | {ratio} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
