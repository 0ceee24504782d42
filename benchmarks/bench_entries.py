"""Cost of area-facility entries against the old single-point snapping, in one run.

On each extract, with all default categories, timed in the same process on the same
network and facilities (best of ``REPEAT``):

- network build: ``io.load_network`` (unchanged) and, new, ``io.read_osm_entrances``
  (entrance and gate nodes, fence and wall ways: one more pass over the file);
- snapping: ``load_facilities`` (features read, classified and snapped at one point: the
  old way) and, new, ``entries.area_entries`` on top of it;
- access: ``compute_access`` for all categories without entries (the old single point)
  and with them.

Run: ``python benchmarks/bench_entries.py [extract.osm.pbf ...]`` (default: the
Liechtenstein and Porto extracts of ../shared/data). Results are printed and written to
``benchmarks/results/entries.json``.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from circles import categories, entries, io
from circles.access import compute_access
from circles.facilities import load_facilities
from circles.io import write_atomic_text

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "shared" / "data" / "osm"
DEFAULT = [DATA / "liechtenstein-latest.osm.pbf", DATA / "porto.osm.pbf"]
SPEED_M_S = 1.2
REPEAT = 3


def best_of(fn: Callable[[], Any], repeat: int = REPEAT) -> tuple[float, Any]:
    """Smallest wall time (s) of ``repeat`` calls, and the last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def one(path: Path) -> dict[str, Any]:
    profile = categories.load_profile("default")
    cats = [c.id for c in profile.categories]
    load_s, net = best_of(lambda: io.load_network(path))
    ent_read_s, ents = best_of(lambda: io.read_osm_entrances(path))
    snap_s, got = best_of(
        lambda: load_facilities(net, features=str(path), files=[], categories=cats, profile=profile)
    )
    fac = got[0]
    area_s, (ent, per) = best_of(lambda: entries.area_entries(net, fac, ents))

    def access(with_entries: bool) -> Any:
        return compute_access(
            net,
            fac,
            cats,
            speed_m_s=SPEED_M_S,
            max_minutes=45.0,
            levels_minutes=(5.0, 10.0, 15.0),
            entries=ent if with_entries else None,
        )

    old_s, _ = best_of(lambda: access(False))
    new_s, _ = best_of(lambda: access(True))
    return {
        "extract": path.name,
        "nodes": net.n_nodes,
        "facilities": len(fac),
        "area_facilities": len(per),
        "entries": int(per["entries"].sum()),
        "inside_nodes": int(per["inside_nodes"].sum()),
        "network_build_s": round(load_s, 3),
        "read_entrances_s": round(ent_read_s, 3),
        "network_build_ratio": round((load_s + ent_read_s) / load_s, 2),
        "snap_points_s": round(snap_s, 3),
        "area_entries_s": round(area_s, 3),
        "snapping_ratio": round((snap_s + area_s) / snap_s, 2),
        "access_points_s": round(old_s, 3),
        "access_entries_s": round(new_s, 3),
        "access_ratio": round(new_s / old_s, 2),
    }


def main(paths: list[Path]) -> list[dict[str, Any]]:
    found = [p for p in paths if p.exists()]
    if not found:
        sys.exit(f"skipped: none of {[str(p) for p in paths]} found (../shared/data absent)")
    out = [one(p) for p in found]
    for r in out:
        print(json.dumps(r))
    res = HERE / "results"
    res.mkdir(exist_ok=True)
    doc = {"python": platform.python_version(), "runs": out}
    write_atomic_text(res / "entries.json", json.dumps(doc, indent=2))
    return out


if __name__ == "__main__":
    main([Path(a) for a in sys.argv[1:]] or DEFAULT)
