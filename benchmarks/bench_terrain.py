"""Benchmark: slope-aware walking times and population placement on Liechtenstein.

What it measures, in one run on ``../shared/data/osm/liechtenstein-latest.osm.pbf``:

1. **Cost.** Minutes to every category of the default profile with
   :func:`circles.pipeline.access_by_profile` on the flat network (``elevation_m=None``,
   the baseline), then slope-aware: :func:`circles.terrain.split_long_edges` (50 m),
   :func:`circles.terrain.sample_elevation` on a synthetic DEM, facility snapping on the
   split network and ``access_by_profile`` with the elevations; and population placement
   (:func:`circles.population.raster_node_population`) on a synthetic WorldPop-like
   raster (3 arc-seconds, about 100 m) covering the country. Times are reported as
   ratios to the flat access run.
2. **Effect.** The share of nodes whose minutes to the nearest fitness facility change
   by more than one minute with slope (compared on the same split network, so only the
   slope differs), the 15-minute isochrone area from Vaduz (at the foot of the synthetic
   slope), and the 15-minute isochrone area from the foot of a synthetic 10 % (and 20 %)
   hill on a regular 50 m street grid, walking up (from the point) and down (to it).

The synthetic DEM is *not* real terrain: the Rhine valley floor at 450 m west of
longitude 9.525 deg E (Vaduz's Städtle lies at its edge), rising eastwards along a
smooth S-curve to 2000 m over 8 km (average grade 19 %, steepest 29 %), in UTM 32N with
25 m cells (about Copernicus GLO-30's spacing). See ``docs/terrain_and_population.md``
for real SRTM / Copernicus tiles.

Writes ``benchmarks/results/terrain.json`` and prints a markdown table.

Run: ``/work/venv/bin/python benchmarks/bench_terrain.py``
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import rasterio
import shapely
from pyproj import Transformer
from rasterio.transform import Affine
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from circles import io, terrain
from circles.categories import load_profile
from circles.config import StudyConfig, config_from_dict
from circles.isochrones import area_km2, isochrone_polygons
from circles.network import WalkNetwork, build_network
from circles.pipeline import access_by_profile, category_profiles, load_communities, load_facilities
from circles.population import raster_node_population

HERE = Path(__file__).resolve().parent
PBF = HERE.parent.parent / "shared" / "data" / "osm" / "liechtenstein-latest.osm.pbf"
OUT = HERE / "results" / "terrain.json"

UTM32 = "EPSG:32632"
#: Synthetic relief: valley floor, summit height, foot longitude, rise length.
VALLEY_M, SUMMIT_M, FOOT_LON, RISE_M = 450.0, 2000.0, 9.525, 8000.0
DEM_CELL_M = 25.0
#: WorldPop's 3 arc-second grid (about 93 m x 63 m at 47 deg N).
POP_CELL_DEG = 3.0 / 3600.0
#: Isochrone origins (WGS84): Vaduz's Städtle at the foot of the synthetic slope, and
#: Triesenberg village on it (about 1.3 km east of the foot, a 15 % grade there).
ORIGINS = {"vaduz": (9.5215, 47.1395), "triesenberg": (9.5430, 47.1180)}
REPEATS = 7
SEED = 6

T = TypeVar("T")


def timed(fn: Callable[[], T], repeats: int = REPEATS) -> tuple[float, T]:
    """Best wall time of ``repeats`` calls in seconds, and the last result."""
    best = np.inf
    out: Any = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return float(best), out


def write_tif(path: Path, data: np.ndarray, transform: Affine, crs: str, nodata: float) -> Path:
    """One-band float32 GeoTIFF, written atomically."""
    tmp = path.with_name(path.name + ".part")
    with rasterio.open(
        tmp,
        "w",
        driver="GTiff",
        height=data.shape[0],
        width=data.shape[1],
        count=1,
        dtype="float32",
        crs=crs,
        transform=transform,
        nodata=nodata,
        compress="deflate",
        tiled=True,
    ) as dst:
        dst.write(data.astype("float32"), 1)
    os.replace(tmp, path)
    return path


def relief_m(x_m: np.ndarray, foot_x_m: float) -> np.ndarray:
    """Valley floor west of ``foot_x_m``, smoothstep rise to the summit over RISE_M."""
    t = np.clip((x_m - foot_x_m) / RISE_M, 0.0, 1.0)
    return VALLEY_M + (SUMMIT_M - VALLEY_M) * t * t * (3.0 - 2.0 * t)


def liechtenstein_dem(net: WalkNetwork, folder: Path) -> Path:
    to_utm = Transformer.from_crs("EPSG:4326", UTM32, always_xy=True)
    ex, ey = to_utm.transform(net.lon, net.lat)
    x0, x1 = float(np.min(ex)) - 1000, float(np.max(ex)) + 1000
    y0, y1 = float(np.min(ey)) - 1000, float(np.max(ey)) + 1000
    w, h = int((x1 - x0) / DEM_CELL_M) + 1, int((y1 - y0) / DEM_CELL_M) + 1
    cx = x0 + (np.arange(w) + 0.5) * DEM_CELL_M
    foot_x, _ = to_utm.transform(FOOT_LON, ORIGINS["vaduz"][1])
    z = np.broadcast_to(relief_m(cx, foot_x), (h, w))
    tf = Affine(DEM_CELL_M, 0.0, x0, 0.0, -DEM_CELL_M, y1)
    return write_tif(folder / "synthetic_dem.tif", np.ascontiguousarray(z), tf, UTM32, -9999.0)


def population_raster(net: WalkNetwork, folder: Path) -> tuple[Path, tuple[int, int]]:
    """People per 3" cell: dense in the valley, sparse up the slope, some nodata."""
    lon0, lon1 = float(net.lon.min()) - 0.01, float(net.lon.max()) + 0.01
    lat0, lat1 = float(net.lat.min()) - 0.01, float(net.lat.max()) + 0.01
    w = int((lon1 - lon0) / POP_CELL_DEG) + 1
    h = int((lat1 - lat0) / POP_CELL_DEG) + 1
    rng = np.random.default_rng(SEED)
    lon_c = lon0 + (np.arange(w) + 0.5) * POP_CELL_DEG
    valley = np.where(lon_c < FOOT_LON + 0.01, 1.0, 0.15)
    people = rng.gamma(0.6, 12.0, size=(h, w)) * valley[None, :]
    people[rng.random((h, w)) < 0.02] = -99999.0
    tf = Affine(POP_CELL_DEG, 0.0, lon0, 0.0, -POP_CELL_DEG, lat1)
    return write_tif(folder / "synthetic_pop.tif", people, tf, "EPSG:4326", -99999.0), (h, w)


def forward_seconds(net: WalkNetwork, cost: np.ndarray, origin: int, *, to_origin: bool) -> Any:
    """Seconds from ``origin`` (or to it, on the reversed graph) with scipy's Dijkstra."""
    tail, head, c = net.directed_arcs(cost)
    ok = np.isfinite(c)
    tail, head, c = tail[ok], head[ok], c[ok]
    if to_origin:
        tail, head = head, tail
    order = np.lexsort((c, head, tail))  # keep the cheapest of duplicate arcs
    tail, head, c = tail[order], head[order], c[order]
    first = np.ones(tail.size, bool)
    first[1:] = (tail[1:] != tail[:-1]) | (head[1:] != head[:-1])
    g = csr_matrix((c[first], (tail[first], head[first])), shape=(net.n_nodes,) * 2)
    return dijkstra(g, indices=origin, limit=3600.0)


def isochrone_km2(
    net: WalkNetwork, cost: np.ndarray, origin: int, level_s: float, *, to_origin: bool
) -> float:
    secs = forward_seconds(net, cost, origin, to_origin=to_origin)
    # node times *to* the origin pair with the swapped cost columns
    c = cost[:, ::-1] if to_origin else cost
    poly = isochrone_polygons(net, secs, c, [level_s])[0]
    return float(area_km2([poly], crs=net.crs)[0])


def grid_hill(grade: float, *, half_m: float = 1500.0, step_m: float = 50.0) -> dict[str, Any]:
    """15-minute isochrones from the foot of a plane hill on a regular street grid."""
    k = int(half_m / step_m)
    ii, jj = np.meshgrid(np.arange(-k, k + 1), np.arange(-k, k + 1), indexing="ij")
    x = 500_000.0 + jj.ravel() * step_m  # UTM 32N, near Vaduz
    y = 5_220_000.0 + ii.ravel() * step_m
    lon, lat = Transformer.from_crs(UTM32, "EPSG:4326", always_xy=True).transform(x, y)
    n = 2 * k + 1
    idx = np.arange(n * n).reshape(n, n)
    u = np.concatenate([idx[:, :-1].ravel(), idx[:-1, :].ravel()])
    v = np.concatenate([idx[:, 1:].ravel(), idx[1:, :].ravel()])
    net = build_network(np.arange(n * n) + 1, np.asarray(lon), np.asarray(lat), u + 1, v + 1)
    # the foot: the grid's central node
    origin = int(np.argmin(np.hypot(net.x - np.median(net.x), net.y - np.median(net.y))))
    z = grade * np.maximum(net.x - net.x[origin], 0.0)  # flat west of the foot, hill east
    adult = terrain.WALK_PROFILES["adult"]
    flat = terrain.edge_seconds(net, adult)
    hill = terrain.edge_seconds(net, adult, elevation_m=z)
    out: dict[str, Any] = {"grade": grade, "grid_step_m": step_m, "nodes": net.n_nodes}
    for label, to in (("from_foot_uphill", False), ("to_foot_downhill", True)):
        a_flat = isochrone_km2(net, flat, origin, 900.0, to_origin=to)
        a_hill = isochrone_km2(net, hill, origin, 900.0, to_origin=to)
        out[label] = {"flat_km2": a_flat, "tobler_km2": a_hill, "ratio": a_hill / a_flat}
    return out


def config(folder: Path) -> StudyConfig:
    return config_from_dict(
        {
            "study": {"name": "bench", "output_dir": str(folder / "out")},
            "network": {"source": str(PBF)},
            "communities": {"source": "osm", "admin_level": 8, "parent": "Liechtenstein"},
            "walk": {"dem": "synthetic_dem.tif"},
        },
        base_dir=folder,
    )


def main() -> int:
    if not PBF.is_file():
        print(f"skipped: {PBF} is absent (see ../shared/data/README.md)")
        return 1
    # the population warning (people > 250 m from any street) would repeat per timing run;
    # the figures are in the results instead
    logging.getLogger("circles").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="bench_terrain_") as tmp:
        result = measure(Path(tmp))
    io.write_atomic_text(OUT, json.dumps(result, indent=2) + "\n")
    print()
    print(markdown(result))
    print(f"\nwrote {OUT}")
    return 0


def measure(folder: Path) -> dict[str, Any]:
    """All timings and effects; temporary rasters go to ``folder``."""
    cfg = config(folder)
    t_load, net = timed(lambda: io.load_network(str(PBF)), repeats=1)
    print(f"network: {net.n_nodes} nodes, {net.n_edges} edges ({t_load:.1f} s to load)")
    profile = load_profile(cfg.facilities.profile)
    cats = [c.id for c in profile.categories]
    cat_profile = category_profiles(cfg.walk, profile, cats)
    communities = load_communities(cfg.communities, net, str(PBF))

    def pipeline_facilities(network: Any) -> Any:
        return load_facilities(
            network,
            features=str(PBF),
            files=[],
            categories=cats,
            profile=profile,
            max_snap_m=cfg.walk.max_snap_m,
        )

    area = shapely.union_all(communities.geometry.to_numpy())

    # --- flat baseline
    t_fac_flat, (fac_flat, _, _) = timed(lambda: pipeline_facilities(net), repeats=1)
    t_flat, (min_flat, _, _) = timed(
        lambda: access_by_profile(cfg.walk, net, fac_flat, cat_profile, None)
    )
    print(f"flat access, {len(cats)} categories: {t_flat:.2f} s")

    # --- slope-aware
    dem = liechtenstein_dem(net, folder)
    t_split, split = timed(lambda: terrain.split_long_edges(net, max_length_m=50.0))
    t_sample, z = timed(lambda: terrain.sample_elevation(split, dem))
    t_fac_split, (fac_split, _, _) = timed(lambda: pipeline_facilities(split), repeats=1)
    t_slope, (min_slope, _, _) = timed(
        lambda: access_by_profile(cfg.walk, split, fac_split, cat_profile, z)
    )
    t_split_flat, (min_split_flat, _, _) = timed(
        lambda: access_by_profile(cfg.walk, split, fac_split, cat_profile, None)
    )
    print(
        f"split {t_split:.2f} s, sample {t_sample:.2f} s, slope access {t_slope:.2f} s, "
        f"flat access on the split network {t_split_flat:.2f} s"
    )

    # --- population
    pop_path, pop_shape = population_raster(net, folder)
    t_pop, placed = timed(
        lambda: raster_node_population(net, pop_path, max_snap_m=250.0, area=area)
    )
    print(f"population placement: {t_pop:.2f} s ({placed.placed:.0f} placed)")

    # --- effect of slope
    n0 = net.n_nodes
    fit_slope = min_slope["fitness"].to_numpy()[:n0]
    fit_sflat = min_split_flat["fitness"].to_numpy()[:n0]
    fit_flat = min_flat["fitness"].to_numpy()
    reached = np.isfinite(fit_sflat) | np.isfinite(fit_slope)

    def changed(a: np.ndarray, b: np.ndarray) -> float:
        d = np.abs(np.where(np.isfinite(a), a, 1e9) - np.where(np.isfinite(b), b, 1e9))
        return float((d[reached] > 1.0).mean())

    all_cat = {}
    for c in cats:
        a = min_split_flat[c].to_numpy()[:n0]
        b = min_slope[c].to_numpy()[:n0]
        ok = np.isfinite(a) & np.isfinite(b)
        if ok.sum():
            all_cat[c] = {
                "nodes_compared": int(ok.sum()),
                "share_changed_gt_1_min": float((np.abs(b[ok] - a[ok]) > 1.0).mean()),
                "median_change_min": float(np.median(b[ok] - a[ok])),
            }
    adult = terrain.WALK_PROFILES["adult"]
    town_iso: dict[str, Any] = {}
    flat_cost = terrain.edge_seconds(split, adult)
    hill_cost = terrain.edge_seconds(split, adult, elevation_m=z)
    for town, (lon, lat) in ORIGINS.items():
        # nearest node (degrees, longitude scaled by cos 47 deg)
        o = int(np.argmin(np.hypot((split.lon - lon) * 0.68, split.lat - lat)))
        town_iso[town] = {"node_id": int(split.node_id[o]), "elevation_m": float(z[o])}
        for label, to in (("from", False), ("to", True)):
            f = isochrone_km2(split, flat_cost, o, 900.0, to_origin=to)
            t = isochrone_km2(split, hill_cost, o, 900.0, to_origin=to)
            town_iso[town][label] = {"flat_km2": f, "tobler_km2": t, "ratio": t / f}
    hills = [grid_hill(0.10), grid_hill(0.20)]

    result: dict[str, Any] = {
        "data": PBF.name,
        "nodes": net.n_nodes,
        "edges": net.n_edges,
        "categories": len(cats),
        "profiles": sorted(set(cat_profile.values())),
        "synthetic_dem": {
            "crs": UTM32,
            "cell_m": DEM_CELL_M,
            "valley_m": VALLEY_M,
            "summit_m": SUMMIT_M,
            "foot_lon": FOOT_LON,
            "rise_m": RISE_M,
        },
        "split": {
            "max_length_m": 50.0,
            "nodes": split.n_nodes,
            "edges": split.n_edges,
            "edges_split": split.report["edges_split"],
        },
        "population_raster": {
            "cell_deg": POP_CELL_DEG,
            "shape": list(pop_shape),
            "window_shape": list(placed.window_shape),
            "raster_total": placed.raster_total,
            "placed": placed.placed,
            "unplaced": placed.unplaced,
        },
        "seconds": {
            "load_network": t_load,
            "flat_facilities_read_and_snap": t_fac_flat,
            "flat_access": t_flat,
            "split_long_edges": t_split,
            "sample_elevation": t_sample,
            "split_facilities_read_and_snap": t_fac_split,
            "slope_access": t_slope,
            "flat_access_on_split_network": t_split_flat,
            "population_placement": t_pop,
        },
        "ratio_to_flat_access": {
            "split_long_edges": t_split / t_flat,
            "sample_elevation": t_sample / t_flat,
            "slope_access": t_slope / t_flat,
            "slope_total_split_sample_access": (t_split + t_sample + t_slope) / t_flat,
            "flat_access_on_split_network": t_split_flat / t_flat,
            "population_placement": t_pop / t_flat,
        },
        "facilities_snapped": {
            c: int(((fac_flat["category"] == c) & (fac_flat["status"] == "snapped")).sum())
            for c in cats
        },
        "effect": {
            "fitness_nodes_reached": int(reached.sum()),
            "fitness_share_changed_gt_1_min_same_network": changed(fit_sflat, fit_slope),
            "fitness_share_changed_gt_1_min_vs_unsplit_flat_run": changed(fit_flat, fit_slope),
            "per_category_same_network": all_cat,
            "town_15_min_isochrones": town_iso,
            "grid_hill_15_min_isochrone": hills,
        },
        "repeats": REPEATS,
        "machine": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "rasterio": rasterio.__version__,
            "cpus": os.cpu_count(),
        },
    }
    return result


def markdown(r: dict[str, Any]) -> str:
    s, q, e = r["seconds"], r["ratio_to_flat_access"], r["effect"]
    lines = [
        f"Liechtenstein, {r['nodes']:,} nodes / {r['edges']:,} edges "
        f"({r['split']['nodes']:,} / {r['split']['edges']:,} after splitting at 50 m), "
        f"{r['categories']} categories, best of {r['repeats']}:",
        "",
        "| step | ms | x flat access |",
        "|---|---:|---:|",
        f"| flat access (baseline) | {1000 * s['flat_access']:.1f} | 1.00 |",
        f"| split_long_edges (50 m) | {1000 * s['split_long_edges']:.1f} | "
        f"{q['split_long_edges']:.2f} |",
        f"| sample_elevation (bilinear, 25 m DEM) | {1000 * s['sample_elevation']:.1f} | "
        f"{q['sample_elevation']:.2f} |",
        f"| slope-aware access (Tobler, split network) | {1000 * s['slope_access']:.1f} | "
        f"{q['slope_access']:.2f} |",
        f"| **slope total** (split + sample + access) | "
        f"{1000 * (s['split_long_edges'] + s['sample_elevation'] + s['slope_access']):.1f} | "
        f"**{q['slope_total_split_sample_access']:.2f}** |",
        f'| population placement (3" raster, '
        f"{r['population_raster']['window_shape'][0]}x"
        f"{r['population_raster']['window_shape'][1]} window) | "
        f"{1000 * s['population_placement']:.1f} | {q['population_placement']:.2f} |",
        "",
        "| effect of slope | flat | Tobler | ratio |",
        "|---|---:|---:|---:|",
    ]
    for h in e["grid_hill_15_min_isochrone"]:
        g = round(100 * h["grade"])
        for key, label in (("from_foot_uphill", "from"), ("to_foot_downhill", "to")):
            d = h[key]
            lines.append(
                f"| 15-min isochrone {label} the foot of a {g} % hill (km²) | "
                f"{d['flat_km2']:.3f} | {d['tobler_km2']:.3f} | {d['ratio']:.3f} |"
            )
    for town, iso in e["town_15_min_isochrones"].items():
        for label in ("from", "to"):
            d = iso[label]
            lines.append(
                f"| 15-min isochrone {label} {town.title()} ({iso['elevation_m']:.0f} m on "
                f"the synthetic relief) (km²) | {d['flat_km2']:.3f} | {d['tobler_km2']:.3f} | "
                f"{d['ratio']:.3f} |"
            )
    lines.append(
        f"| nodes whose minutes to the nearest fitness facility "
        f"({r['facilities_snapped']['fitness']} facilities) change > 1 min | | | "
        f"{100 * e['fitness_share_changed_gt_1_min_same_network']:.1f} % |"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
