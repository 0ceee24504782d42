"""What area-facility entries change: counts per extract, and coverage of Liechtenstein.

For every OSM extract in ../shared/data/osm (``.osm.pbf``, or ``.osm.bz2`` where no
``.pbf`` of the same name exists), with the default profile: the number of area
facilities, of their entries and of the network nodes inside their footprints
(:func:`circles.entries.area_entries`).

Then the study of Liechtenstein's 11 municipalities (``source = "osm"``, admin level 8)
is run once with :func:`circles.pipeline.run`, and the fitness and park columns of its
coverage table are computed twice on the same network, facilities, communities and
weights: with the entries (what ``circles run`` does) and with every facility reached
at its one snapped point (the old way, ``entries=None``). Both use
:func:`circles.coverage.coverage_table` with the run's own levels.

Run: ``python benchmarks/entries_effect.py``. Prints markdown tables and writes
``benchmarks/results/entries_effect.json``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import shapely

# the county benchmark's study writer and extract (this script runs from benchmarks/)
from bench_county import LIECHTENSTEIN, write_study

from circles import categories, entries, io
from circles.access import access_by_profile, compute_access
from circles.config import load_config
from circles.coverage import coverage_table
from circles.facilities import load_facilities
from circles.io import write_atomic_text
from circles.pipeline import run

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "shared" / "data" / "osm"
CATS = ("fitness", "park")


def extracts() -> list[Path]:
    """The shared extracts, one file per place (the .pbf where both exist)."""
    pbf = sorted(DATA.glob("*.osm.pbf"))
    stems = {p.name[: -len(".osm.pbf")] for p in pbf}
    bz2 = [p for p in sorted(DATA.glob("*.osm.bz2")) if p.name[: -len(".osm.bz2")] not in stems]
    return pbf + bz2


def inside_park_nodes(net: Any, fac: Any) -> np.ndarray:
    """Positions of the network nodes inside (or on) a park footprint."""
    rows = fac[(fac["category"] == "park") & fac["footprint_wkb"].notna()]
    fp = gpd.GeoSeries(shapely.from_wkb(rows["footprint_wkb"].to_numpy()), crs=4326)
    fp = fp.to_crs(net.crs).to_numpy()
    fp = fp[np.isin(shapely.get_type_id(fp), [3, 6])]
    tree = shapely.STRtree(shapely.points(net.x, net.y))
    _, nodes = tree.query(fp, predicate="intersects")
    return np.unique(nodes)


def counts(path: Path) -> dict[str, Any]:
    """Area facilities, entries and inside nodes of one extract (default profile)."""
    profile = categories.load_profile("default")
    cats = [c.id for c in profile.categories]
    net = io.load_network(path)
    fac = load_facilities(net, features=str(path), files=[], categories=cats, profile=profile)[0]
    ent, per = entries.area_entries(net, fac, io.read_osm_entrances(path))
    inside = inside_park_nodes(net, fac)
    within = {}
    for label, e in (("one point", None), ("entries", ent)):
        m, _ = compute_access(
            net, fac, ["park"], speed_m_s=1.2, max_minutes=45.0, levels_minutes=(15.0,), entries=e
        )
        mins = m["park"].to_numpy()[inside] if "park" in m else np.zeros(0)
        within[label] = float((mins <= 1.0).mean()) if inside.size else None
    rules = per["entry_rule"].value_counts().to_dict() if len(per) else {}
    return {
        "extract": path.name,
        "nodes": int(net.n_nodes),
        "facilities": int(fac["facility_id"].nunique()),
        "area_facilities": len(per),
        "entries": int(per["entries"].sum()),
        "inside_nodes": int(per["inside_nodes"].sum()),
        "nodes_in_parks": int(inside.size),
        "in_parks_within_1_min": within,
        "entry_rules": {str(k): int(v) for k, v in rules.items()},
    }


def liechtenstein_coverage(folder: Path) -> dict[str, Any]:
    """Fitness and park coverage of the 11 municipalities, with and without entries."""
    toml = write_study(
        folder,
        LIECHTENSTEIN,
        'source = "osm"\nadmin_level = 8\nparent = "Liechtenstein"',
        "[map]\nenabled = false\n",
    )
    cfg = load_config(toml)
    res = run(cfg)
    assert res.node_community is not None
    assert res.node_weight is not None
    levels = tuple(float(m) for m in cfg.walk.levels_minutes)
    fac = res.facilities[res.facilities["category"].isin(CATS)]
    assert res.access is not None
    cat_profile = {c: res.access.profiles[c] for c in CATS}
    out: dict[str, Any] = {"levels": list(levels)}
    tables = {}
    for label, ent in (("entries", res.entries), ("one point", None)):
        # the run's own walking profiles, flat terrain as in this study (no DEM)
        minutes, _, _ = access_by_profile(
            cfg.walk, res.network, fac, cat_profile, None, entries=ent
        )
        base = res.communities[["community_id", "name", "geometry"]]
        tables[label] = coverage_table(
            base,
            res.node_community,
            res.node_weight,
            {c: minutes[c].to_numpy() for c in CATS},
            levels_minutes=levels,
        )
    # the run's own table equals the recomputation with entries
    for c in CATS:
        col = f"{c}_share_{int(levels[-1])}"
        assert np.allclose(
            tables["entries"][col].to_numpy(), res.communities[col].to_numpy(), equal_nan=True
        ), col
    total = tables["entries"]["residents"].to_numpy()
    rows = []
    for i, name in enumerate(tables["entries"]["name"].tolist()):
        row: dict[str, Any] = {"community": name}
        for c in CATS:
            col = f"{c}_share_{int(levels[-1])}"
            row[f"{c} before"] = float(tables["one point"][col].iloc[i])
            row[f"{c} after"] = float(tables["entries"][col].iloc[i])
            row[f"{c}_flag before"] = bool(tables["one point"][f"{c}_flag"].iloc[i])
            row[f"{c}_flag after"] = bool(tables["entries"][f"{c}_flag"].iloc[i])
        rows.append(row)
    whole = {}
    for c in CATS:
        col = f"{c}_share_{int(levels[-1])}"
        for label in ("one point", "entries"):
            s = tables[label][col].to_numpy()
            whole[f"{c} {label}"] = float(np.nansum(s * total) / total.sum())
    out.update({"communities": rows, "all": whole})
    return out


def park(r: dict[str, Any]) -> str:
    """'n: a% -> b%' for the nodes inside park footprints."""
    w = r["in_parks_within_1_min"]
    if not r["nodes_in_parks"]:
        return "no park footprint"
    return f"{r['nodes_in_parks']:,}: {100 * w['one point']:.1f}% -> {100 * w['entries']:.1f}%"


def main() -> int:
    if not LIECHTENSTEIN.exists():
        print(f"skipped: {DATA} not found (../shared/data is not on this machine)")
        return 0
    doc: dict[str, Any] = {"extracts": [counts(p) for p in extracts()]}
    print(
        "| extract | nodes | facilities | area facilities | entries | inside nodes "
        "| nodes in parks: within 1 min, one point -> entries |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in doc["extracts"]:
        print(
            f"| {r['extract']} | {r['nodes']:,} | {r['facilities']:,} | {r['area_facilities']:,}"
            f" | {r['entries']:,} | {r['inside_nodes']:,} | {park(r)} |"
        )
    with tempfile.TemporaryDirectory() as tmp:
        doc["liechtenstein"] = li = liechtenstein_coverage(Path(tmp))
    lev = int(li["levels"][-1])
    print(f"\nShare of street length within {lev} min (one point -> entries), flag at < 80%:\n")
    print("| municipality | fitness | park |")
    print("|---|---|---|")
    for r in li["communities"]:
        cells = []
        for c in CATS:
            b, a = r[f"{c} before"], r[f"{c} after"]
            fb, fa = r[f"{c}_flag before"], r[f"{c}_flag after"]
            flag = "" if fb == fa else (" (flag lifted)" if fb else " (flag added)")
            cells.append(f"{100 * b:.1f}% -> {100 * a:.1f}%{flag}")
        print(f"| {r['community']} | {' | '.join(cells)} |")
    w = li["all"]
    print(
        f"| all 11 | {100 * w['fitness one point']:.1f}% -> {100 * w['fitness entries']:.1f}%"
        f" | {100 * w['park one point']:.1f}% -> {100 * w['park entries']:.1f}% |"
    )
    res = HERE / "results"
    res.mkdir(exist_ok=True)
    write_atomic_text(res / "entries_effect.json", json.dumps(doc, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
