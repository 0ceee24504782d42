"""Incremental update and batch benchmark on Liechtenstein.

In one process, on the real Liechtenstein extract with its 11 municipalities as
communities (isochrones, service areas and the self-contained map included):

1. full run, cold cache (pyrosm, folium and the map module imported beforehand: import
   time is not counted), three times, each in a fresh folder (the median is the
   reference: one run of ~10 s on a shared 2-core machine varies by +-20 %);
2. ``circles.update.update`` adding one elderly canteen in Vaduz to the first study:
   reuses the cache, recomputes one category, redraws its service areas, refreshes
   coverage, the GeoPackage (changed layers/columns/rows only), reports and the map;
3. a no-change re-run (three times);
4. the same update as a fresh full run with the canteen file in ``[[facilities.files]]``
   and an empty cache (the reference the update must equal; also checks equality);
5. seven more single-canteen updates in other towns (each canteen snaps to the network,
   so every update changes results: the benchmark checks that each one recomputed the
   category); the update figure is the median of the eight;
6. batch: the 11 municipalities as ``[[areas]]`` (boundary = municipality name, default
   halo), on a dask ``LocalCluster`` with 1 and with 2 worker processes, each with a
   fresh output folder (the parsed network is prepared once per batch, in the client).

Run: ``python benchmarks/bench_update.py [path/to/liechtenstein-latest.osm.pbf]``.
Writes ``benchmarks/results/update.json`` and prints a markdown table.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
DEFAULT = HERE.parents[1] / "shared" / "data" / "osm" / "liechtenstein-latest.osm.pbf"
MUNICIPALITIES = [
    "Balzers",
    "Eschen",
    "Gamprin",
    "Mauren",
    "Planken",
    "Ruggell",
    "Schaan",
    "Schellenberg",
    "Triesen",
    "Triesenberg",
    "Vaduz",
]


#: Further single-canteen updates (lon, lat in Liechtenstein's towns: Schaan, Balzers,
#: Triesen, Eschen, Mauren, Schellenberg, Balzers west), timed for a median. Each snaps
#: to the walking network within 40 m, so each update changes the results.
EXTRA_CANTEENS = [
    (9.5095, 47.1660),
    (9.4990, 47.0650),
    (9.5280, 47.1070),
    (9.5220, 47.2110),
    (9.5440, 47.2200),
    (9.5340, 47.1990),
    (9.4900, 47.0700),
]


def _config(extract: Path, out: Path, extra: str = "") -> object:
    from circles.config import load_config

    toml = out / "study.toml"
    toml.write_text(
        f"""
[study]
name = "li"
output_dir = "{out / "processed"}"
maps_dir = "{out / "maps"}"

[network]
source = "{extract}"

[communities]
source = "osm"
admin_level = 8
parent = "Liechtenstein"
{extra}
""",
        encoding="utf-8",
    )
    return load_config(toml)


def _timed(fn: object) -> tuple[object, float]:
    t = time.perf_counter()
    res = fn()  # type: ignore[operator]
    return res, time.perf_counter() - t


def main(argv: list[str]) -> int:
    extract = Path(argv[1]) if len(argv) > 1 else DEFAULT
    if not extract.exists():
        print(f"Liechtenstein extract not found at {extract}; nothing to measure.")
        return 1
    import logging

    logging.disable(logging.WARNING)
    import pyogrio
    import pyrosm  # noqa: F401  (import costs are not part of a run)
    from distributed import Client, LocalCluster

    import circles.isochrones
    import circles.maps  # noqa: F401
    from circles.batch import run_batch
    from circles.io import write_atomic_text
    from circles.pipeline import run
    from circles.update import update

    rows: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "a").mkdir()
        canteen = base / "canteen.csv"
        pd.DataFrame(
            {"id": ["new1"], "name": ["Seniorenmensa Vaduz"], "lon": [9.5215], "lat": [47.1395]}
        ).to_csv(canteen, index=False)
        cfg = _config(extract, base / "a")
        full_times = []
        _, dt = _timed(lambda: run(cfg))
        full_times.append(dt)
        for k in (1, 2):  # two more cold full runs, in fresh folders
            (base / f"full{k}").mkdir()
            other = _config(extract, base / f"full{k}")
            _, dt = _timed(lambda other=other: run(other))
            full_times.append(dt)
        rows["full run (cold cache), median of 3"] = statistics.median(full_times)
        res, first_update = _timed(lambda: update(cfg, canteen, category="elderly_canteen"))
        recomputed = res.manifest["categories"]["recomputed"]  # type: ignore[attr-defined]
        changed = res.manifest["outputs_changed"]  # type: ignore[attr-defined]
        nochange_times = []
        for _ in range(3):
            res2, dt = _timed(lambda: run(cfg))
            nochange_times.append(dt)
        rows["no-change re-run"] = statistics.median(nochange_times)
        nothing = res2.manifest["nothing_changed"]  # type: ignore[attr-defined]
        (base / "b").mkdir()
        ref_cfg = _config(
            extract,
            base / "b",
            "[facilities]\n[[facilities.files]]\n"
            f'path = "{canteen}"\ncategory = "elderly_canteen"\n',
        )
        _, rows["reference full run with the canteen in the config"] = _timed(lambda: run(ref_cfg))
        a = base / "a" / "processed" / "li"
        b = base / "b" / "processed" / "li"
        equal = (a / "coverage.csv").read_bytes() == (b / "coverage.csv").read_bytes()
        for layer in ("communities", "facilities", "nodes", "isochrones", "service_areas"):
            la = pyogrio.read_dataframe(a / "circles.gpkg", layer=layer)
            lb = pyogrio.read_dataframe(b / "circles.gpkg", layer=layer)
            equal &= bool(la.equals(lb))
        # more single-canteen updates (each adds one more canteen), for a median: one
        # sub-second timing on a shared 2-core machine varies by +-30 %
        update_times = [first_update]
        every_update_recomputed = recomputed == ["elderly_canteen"]
        for i, (lon, lat) in enumerate(EXTRA_CANTEENS, start=2):
            extra = base / f"canteen{i}.csv"
            pd.DataFrame(
                {"id": [f"new{i}"], "name": [f"Mensa {i}"], "lon": [lon], "lat": [lat]}
            ).to_csv(extra, index=False)
            r, dt = _timed(lambda extra=extra: update(cfg, extra, category="elderly_canteen"))
            update_times.append(dt)
            every_update_recomputed &= r.manifest["categories"]["recomputed"] == [  # type: ignore[attr-defined]
                "elderly_canteen"
            ]
        rows["update: add one elderly canteen, median of 8"] = statistics.median(update_times)
        rows["update: fastest of the 8"] = min(update_times)
        rows["update: slowest of the 8"] = max(update_times)

        areas = "".join(f'\n[[areas]]\nname = "{m}"\nboundary = "{m}"\n' for m in MUNICIPALITIES)
        batch_times = {}
        for workers in (1, 2):
            folder = base / f"batch{workers}"
            folder.mkdir()
            bcfg = _config(extract, folder, areas)
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",  # HTTP metrics on loopback, any free port
            )
            client = Client(cluster)
            try:
                _, batch_times[workers] = _timed(lambda: run_batch(bcfg, client=client))  # noqa: B023
            finally:
                client.close()
                cluster.close()
        rows["batch, 11 municipalities, 1 worker"] = batch_times[1]
        rows["batch, 11 municipalities, 2 workers"] = batch_times[2]

    full = rows["full run (cold cache), median of 3"]
    result = {
        "machine": {
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
        },
        "extract": str(extract),
        "seconds": {k: round(v, 3) for k, v in rows.items()},
        "update_speedup": round(full / rows["update: add one elderly canteen, median of 8"], 1),
        "full_run_seconds_each": [round(x, 3) for x in full_times],
        "update_seconds_each": [round(x, 3) for x in update_times],
        "every_update_recomputed_the_category": bool(every_update_recomputed),
        "no_change_speedup": round(full / rows["no-change re-run"], 1),
        "batch_speedup_2_workers": round(batch_times[1] / batch_times[2], 2),
        "update_recomputed_categories": recomputed,
        "update_outputs_rewritten": changed,
        "no_change_said_nothing_changed": bool(nothing),
        "update_equals_full_run": bool(equal),
    }
    out = HERE / "results" / "update.json"
    write_atomic_text(out, json.dumps(result, indent=2) + "\n")
    print("| step | seconds | vs full run |")
    print("|---|---:|---:|")
    for k, v in rows.items():
        print(f"| {k} | {v:.2f} | {full / v:.1f}x |")
    print()
    print(
        f"update recomputed {recomputed}, rewrote {changed}; equal to a full run: {equal}; "
        f"no-change run said nothing changed: {nothing}; batch 2 vs 1 worker: "
        f"{result['batch_speedup_2_workers']}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
