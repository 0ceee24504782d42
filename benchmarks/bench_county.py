"""County scale: whole ``circles`` processes from 11 to 711 communities, and a tiled county.

For each study (default: Liechtenstein with its 11 municipalities and hexagon communities
sized for 52, 206 and 711; Porto with hexagons for 55, 236 and 550), in a fresh folder,
each step a separate process timed by ``/usr/bin/time -v``:

- **cold**: ``circles run study.toml`` with an empty cache;
- **warm**: the same again (nothing changed: everything from the cache);
- **update**: ``circles update study.toml --facilities canteen.csv --category
  elderly_canteen`` (one new canteen in the town centre);

recording wall seconds, peak memory (maximum resident set size), CPU use (cores busy on
average), the map's size and the share of each stage in the cold run
(``manifest.json`` ``stage_seconds``). Ratios (711 vs 11, update vs cold) are within
one run of the script.

``--tiled N`` also builds a county-sized network from N copies of the Liechtenstein
extract side by side (:func:`tile_extract`: node, way and relation ids offset per copy,
coordinates shifted by the extract's width or height plus a gap, neighbouring copies
joined by short footways between their nearest edge nodes; needs ``osmium``:
``pip install -e ".[bench]"``) and times a cold run on it with hexagons sized for
``--tiled-communities`` communities; ``--areas K`` then runs the first K copies as
``[[areas]]`` of one study on dask with 1 and with 2 worker processes (the speed-up).

Run: ``python benchmarks/bench_county.py [--only liechtenstein|porto] [--tiled 13]``.
Writes ``benchmarks/results/county.json`` and prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "shared" / "data" / "osm"
LIECHTENSTEIN = DATA / "liechtenstein-latest.osm.pbf"
PORTO = DATA / "porto.osm.pbf"
#: A new elderly canteen in each town's centre (lon, lat): snaps to the network.
CANTEEN = {"liechtenstein": (9.5215, 47.1395), "porto": (-8.6110, 41.1480)}
STUDIES = {
    "liechtenstein": (LIECHTENSTEIN, ["osm", 52, 206, 711]),
    "porto": (PORTO, [55, 236, 550]),
}
CIRCLES = [sys.executable, "-m", "circles.cli"]


# --------------------------------------------------------------------------- processes


def timed_process(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``cmd`` under ``/usr/bin/time -v``: wall seconds, peak memory, CPU use."""
    t = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-v", *cmd],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env=None if env is None else {**os.environ, **env},
    )
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    cpu = re.search(r"Percent of CPU this job got: (\d+)%", proc.stderr)
    user = re.search(r"User time \(seconds\): ([\d.]+)", proc.stderr)
    system = re.search(r"System time \(seconds\): ([\d.]+)", proc.stderr)
    return {
        "seconds": round(wall, 2),
        # CPU seconds: what a busy machine inflates least (wall time waits for a core)
        "cpu_s": round(float(user.group(1)) + float(system.group(1)), 2)
        if user and system
        else None,
        "peak_gb": round(int(rss.group(1)) / 1024**2, 3) if rss else None,
        "cores_busy": round(int(cpu.group(1)) / 100, 2) if cpu else None,
    }


def hex_width_for(net: Any, target: int) -> tuple[float, int]:
    """Hexagon width (m) whose grid gives about ``target`` communities (bisection)."""
    from circles.coverage import hexagon_communities

    lo, hi = 50.0, 20000.0
    best = (hi, 0)
    for _ in range(30):
        mid = (lo * hi) ** 0.5
        n = len(hexagon_communities(net, width_m=mid))
        if abs(n - target) < abs(best[1] - target):
            best = (round(mid, 1), n)
        if n == target:
            break
        lo, hi = (lo, mid) if n < target else (mid, hi)
    return best


def write_study(folder: Path, extract: Path, communities: str, extra: str = "") -> Path:
    toml = folder / "study.toml"
    toml.write_text(
        f"""[study]
name = "county"
output_dir = "{folder / "processed"}"
maps_dir = "{folder / "maps"}"

[network]
source = "{extract}"

[communities]
{communities}
{extra}
""",
        encoding="utf-8",
    )
    return toml


def run_study(
    folder: Path,
    extract: Path,
    communities: str,
    canteen: tuple[float, float],
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Cold, warm and update processes of one study; the cold run's manifest."""
    folder.mkdir(parents=True)
    toml = write_study(folder, extract, communities)
    out: dict[str, Any] = {"cold": timed_process([*CIRCLES, "run", str(toml)], folder, env)}
    manifest = json.loads((folder / "processed" / "county" / "manifest.json").read_text())
    out["warm"] = timed_process([*CIRCLES, "run", str(toml)], folder, env)
    csv = folder / "canteen.csv"
    csv.write_text(f"id,name,lon,lat\nnew1,New canteen,{canteen[0]},{canteen[1]}\n")
    out["update"] = timed_process(
        [*CIRCLES, "update", str(toml), "--facilities", str(csv), "--category", "elderly_canteen"],
        folder,
        env,
    )
    stages = manifest.get("stage_seconds", {})
    total = sum(stages.values()) or 1.0
    out["stage_share"] = {k: round(v / total, 3) for k, v in stages.items()}
    out["stage_seconds"] = stages
    out["map_mb"] = round((folder / "maps" / "county" / "coverage.html").stat().st_size / 1e6, 2)
    out["gpkg_mb"] = round(
        (folder / "processed" / "county" / "circles.gpkg").stat().st_size / 1e6, 2
    )
    return out


# --------------------------------------------------------------------------- the tiling


def tile_extract(src: Path, dst: Path, copies: int, *, columns: int = 5, gap_m: float = 60.0):
    """Write ``copies`` of the extract ``src`` side by side into ``dst`` (.osm.pbf).

    Copy ``k`` sits in row ``k // columns``, column ``k % columns``: its coordinates are
    shifted by whole extract widths and heights (of the walking network's bounding box)
    plus ``gap_m``; its node, way and relation ids are offset by ``k * 10**11``. Each
    copy is joined to its right and upper neighbours by footways between the 12 walking
    nodes nearest to the shared edge on each side, paired by position along it. Returns
    the number of walking nodes of one copy and the offsets (degrees) of every copy.
    """
    import osmium

    from circles.io import load_network

    net = load_network(src)
    lon0, lon1 = float(net.lon.min()), float(net.lon.max())
    lat0, lat1 = float(net.lat.min()), float(net.lat.max())
    mid_lat = np.deg2rad((lat0 + lat1) / 2)
    gap_lon = gap_m / (111_320.0 * np.cos(mid_lat))
    gap_lat = gap_m / 110_540.0
    step_lon, step_lat = lon1 - lon0 + gap_lon, lat1 - lat0 + gap_lat
    offsets = [((k % columns) * step_lon, (k // columns) * step_lat) for k in range(copies)]
    id_step = 10**11

    def edge_nodes(side: str, k: int = 12) -> np.ndarray:
        key = {"east": -net.lon, "west": net.lon, "north": -net.lat, "south": net.lat}[side]
        pick = np.argsort(key, kind="stable")[:k]
        along = net.lat if side in ("east", "west") else net.lon
        return pick[np.argsort(along[pick], kind="stable")]

    links: list[tuple[int, int]] = []
    for k in range(copies):
        col = k % columns
        for other, a_side, b_side in (
            (k + 1 if col + 1 < columns else None, "east", "west"),
            (k + columns, "north", "south"),
        ):
            if other is None or other >= copies:
                continue
            a, b = edge_nodes(a_side), edge_nodes(b_side)
            links += [
                (int(net.node_id[i]) + k * id_step, int(net.node_id[j]) + other * id_step)
                for i, j in zip(a, b, strict=True)
            ]

    class Copy(osmium.SimpleHandler):  # type: ignore[misc]
        def __init__(self, writer: Any, k: int, what: str) -> None:
            super().__init__()
            self.w, self.k, self.what = writer, k, what
            self.dlon, self.dlat = offsets[k]
            self.off = k * id_step

        def node(self, n: Any) -> None:
            if self.what == "node":
                loc = osmium.osm.Location(n.location.lon + self.dlon, n.location.lat + self.dlat)
                self.w.add_node(n.replace(id=n.id + self.off, location=loc))

        def way(self, w: Any) -> None:
            if self.what == "way":
                nodes = [nd.ref + self.off for nd in w.nodes]
                self.w.add_way(w.replace(id=w.id + self.off, nodes=nodes))

        def relation(self, r: Any) -> None:
            if self.what == "relation":
                members = [(m.type, m.ref + self.off, m.role) for m in r.members]
                self.w.add_relation(r.replace(id=r.id + self.off, members=members))

    dst.unlink(missing_ok=True)
    writer = osmium.SimpleWriter(str(dst))
    try:
        for what in ("node", "way"):  # sorted: all nodes, then all ways
            for k in range(copies):
                Copy(writer, k, what).apply_file(str(src))
            if what == "way":
                base = copies * id_step
                for i, (a, b) in enumerate(links):
                    writer.add_way(
                        osmium.osm.mutable.Way(
                            id=base + i, nodes=[a, b], tags={"highway": "footway"}
                        )
                    )
        for k in range(copies):
            Copy(writer, k, "relation").apply_file(str(src))
    finally:
        writer.close()
    return net.n_nodes, offsets, (lon0, lat0, lon1, lat1)


# --------------------------------------------------------------------------- main


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=list(STUDIES), action="append")
    ap.add_argument("--skip-table", action="store_true")
    ap.add_argument("--tiled", type=int, default=0, help="copies of Liechtenstein (0: none)")
    ap.add_argument("--tiled-communities", type=int, default=3000)
    ap.add_argument("--areas", type=int, default=0, help="copies run as [[areas]] on dask")
    ap.add_argument("--keep", type=Path, help="folder to keep the runs in (default: temp)")
    ap.add_argument(
        "--baseline",
        type=Path,
        help="a folder holding another version's circles/ package (e.g. from `git archive "
        "<commit> circles | tar -x -C DIR`): each study also runs with it, just before",
    )
    ap.add_argument("--sizes", help="comma-separated sizes to run (e.g. osm,711)")
    ap.add_argument(
        "--out", type=Path, default=HERE / "results" / "county.json", help="results file"
    )
    args = ap.parse_args(argv[1:])
    if not LIECHTENSTEIN.exists():
        print(f"skipped: {LIECHTENSTEIN} not found (../shared/data is not on this machine)")
        return 0
    from circles.io import load_network, write_atomic_text

    result: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_at_start": os.getloadavg(),
        },
        "studies": {},
    }
    tmp = tempfile.TemporaryDirectory()
    base = args.keep or Path(tmp.name)
    base.mkdir(parents=True, exist_ok=True)
    if not args.skip_table:
        for name in args.only or list(STUDIES):
            extract, sizes = STUDIES[name]
            if not extract.exists():
                print(f"{name}: {extract} not found, skipped")
                continue
            net = load_network(extract)
            for size in sizes:
                if args.sizes and str(size) not in args.sizes.split(","):
                    continue
                if size == "osm":
                    comm = 'source = "osm"\nadmin_level = 8\nparent = "Liechtenstein"'
                    label, width, n = f"{name} municipalities", None, 11
                else:
                    width, n = hex_width_for(net, int(size))
                    comm = f'source = "hexagons"\nhex_width_m = {width}'
                    label = f"{name} {n} hexagons"
                print(f"{label} ...", flush=True)
                before = None
                if args.baseline:
                    before = run_study(
                        base / (label.replace(" ", "_") + "_baseline"),
                        extract,
                        comm,
                        CANTEEN[name],
                        {"PYTHONPATH": str(args.baseline.resolve())},
                    )
                rec = run_study(base / label.replace(" ", "_"), extract, comm, CANTEEN[name])
                if before is not None:
                    rec["baseline"] = before
                rec.update({"communities": n, "hex_width_m": width, "nodes": net.n_nodes})
                result["studies"][label] = rec
                print(json.dumps(rec), flush=True)
                write_atomic_text(args.out, json.dumps(result, indent=2))
    if args.tiled:
        tiled = base / f"liechtenstein_x{args.tiled}.osm.pbf"
        t = time.perf_counter()
        one, offsets, bbox = tile_extract(LIECHTENSTEIN, tiled, args.tiled)
        build_s = time.perf_counter() - t
        net = load_network(tiled)
        width, n = hex_width_for(net, args.tiled_communities)
        print(f"tiled: {net.n_nodes} nodes, {n} communities ({width} m)", flush=True)
        folder = base / "tiled"
        folder.mkdir()
        toml = write_study(folder, tiled, f'source = "hexagons"\nhex_width_m = {width}')
        rec = {
            "copies": args.tiled,
            "nodes": net.n_nodes,
            "edges": net.n_edges,
            "nodes_of_one_copy": one,
            "communities": n,
            "hex_width_m": width,
            "build_s": round(build_s, 1),
            "cold": timed_process([*CIRCLES, "run", str(toml)], folder),
        }
        manifest = json.loads((folder / "processed" / "county" / "manifest.json").read_text())
        rec["stage_seconds"] = manifest.get("stage_seconds", {})
        result["tiled"] = rec
        print(json.dumps(rec), flush=True)
        write_atomic_text(args.out, json.dumps(result, indent=2))
        if args.areas:
            result["tiled_areas"] = run_areas(base, tiled, offsets, bbox, args.areas, width)
            print(json.dumps(result["tiled_areas"]), flush=True)
    write_atomic_text(args.out, json.dumps(result, indent=2))
    print_tables(result)
    tmp.cleanup()
    return 0


def run_areas(
    base: Path, tiled: Path, offsets: list, bbox: tuple, k: int, width: float
) -> dict[str, Any]:
    """The first ``k`` copies as ``[[areas]]`` (their boxes as boundary files) on dask."""
    import shapely

    lon0, lat0, lon1, lat1 = bbox
    out: dict[str, Any] = {"areas": k}
    for workers in (1, 2):
        folder = base / f"areas_{workers}"
        folder.mkdir()
        extra = []
        for i in range(k):
            dlon, dlat = offsets[i]
            box = shapely.box(lon0 + dlon, lat0 + dlat, lon1 + dlon, lat1 + dlat)
            path = folder / f"copy{i}.geojson"
            path.write_text(
                json.dumps(
                    {
                        "type": "FeatureCollection",
                        "features": [
                            {"type": "Feature", "properties": {}, "geometry": box.__geo_interface__}
                        ],
                    }
                )
            )
            extra.append(f'[[areas]]\nname = "copy{i}"\nboundary = "{path}"\n')
        toml = write_study(
            folder, tiled, f'source = "hexagons"\nhex_width_m = {width}', "\n".join(extra)
        )
        out[f"workers_{workers}"] = timed_process(
            [*CIRCLES, "batch", str(toml), "--workers", str(workers)], folder
        )
    out["speedup_2_workers"] = round(out["workers_1"]["seconds"] / out["workers_2"]["seconds"], 2)
    return out


def print_tables(result: dict[str, Any]) -> None:
    rows = result["studies"]
    if rows:
        print("| study | communities | cold s | cold CPU s | warm s | update s | update/cold | "
              "peak GB | cores | map MB | isochrones | outputs |")  # fmt: skip
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        pairs = []
        for label, r in rows.items():
            if "baseline" in r:
                pairs.append(
                    (f"{label}, before", {**r["baseline"], "communities": r["communities"]})
                )
            pairs.append((label, r))
        for label, r in pairs:
            share = r["stage_share"]
            print(
                f"| {label} | {r['communities']} | {r['cold']['seconds']} | "
                f"{r['cold'].get('cpu_s')} | "
                f"{r['warm']['seconds']} | {r['update']['seconds']} | "
                f"1/{r['cold']['seconds'] / r['update']['seconds']:.1f} | "
                f"{r['cold']['peak_gb']} | {r['cold']['cores_busy']} | {r['map_mb']} | "
                f"{share.get('isochrones', 0):.0%} | {share.get('outputs', 0):.0%} |"
            )
    if "tiled" in result:
        t = result["tiled"]
        print(
            f"\ntiled: {t['nodes']} nodes, {t['communities']} communities: cold "
            f"{t['cold']['seconds']} s, peak {t['cold']['peak_gb']} GB, "
            f"{t['cold']['cores_busy']} cores"
        )


if __name__ == "__main__":
    sys.exit(main(sys.argv))
