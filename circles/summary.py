"""The run summary: what ``summary.json`` holds and what ``circles run`` prints."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from circles.facilities import STATUS_SNAPPED
from circles.result import (
    Facilities,
    Residents,
    RunContext,
    StudyAccess,
    StudyResult,
    level_key,
)


def study_summary(
    result: StudyResult,
    facilities: Facilities,
    residents: Residents,
    access: StudyAccess,
    cycling: dict[str, Any] | None,
    area: Any,
    elevation_m: Any,
    ctx: RunContext,
) -> dict[str, Any]:
    """What ``summary.json`` holds: counts, what was dropped, what residents rest on.

    Parameters
    ----------
    result : StudyResult
        The run's result (its tables, network and configuration).
    facilities : Facilities
        The facilities stage's counts and the updates applied.
    residents : Residents
        What the residents stage found (basis and placement counts).
    access : StudyAccess
        The access stage (the walking profile of each category).
    cycling : dict, optional
        The cycling section (:func:`circles.cycling.study_cycling`).
    area : circles.areas.Area, optional
        The selected area.
    elevation_m : numpy.ndarray, optional
        Node elevations (None: walking times are flat).
    ctx : RunContext
        The run (its time so far).
    """
    profiles = access.profiles
    slope_aware = elevation_m is not None
    seconds = time.perf_counter() - ctx.t0
    area_doc = area.doc if area is not None else None
    facility_counts, updates = facilities.counts, facilities.updates
    cfg = result.config
    network = result.network
    table = result.communities
    fac = result.facilities
    categories = result.categories
    node_comm = result.node_community
    assert node_comm is not None
    lev = level_key(cfg.walk.levels_minutes[-1])
    rows = []
    total = float(table["residents"].sum())
    for cat in list(categories) + [c for c in cfg.coverage.always_flag if c not in categories]:
        sh = table[f"{cat}_share_{lev}"].to_numpy(float)
        res = table["residents"].to_numpy(float)
        ok = np.isfinite(sh)
        covered = float((sh[ok] * res[ok]).sum() / total) if total > 0 else float("nan")
        n_fac = int(((fac["category"] == cat) & (fac["status"] == STATUS_SNAPPED)).sum())
        rows.append(
            {
                "category": cat,
                "facilities": n_fac,
                f"share_within_{lev}_min": covered,
                "communities_flagged": int(table[f"{cat}_flag"].sum()),
                "always_reported": cat in cfg.coverage.always_flag,
            }
        )
    status = fac["status"].value_counts().to_dict() if len(fac) else {}
    doc: dict[str, Any] = {
        "study": cfg.study.name,
        "network_source": network.source,
        "network": {
            "nodes": network.n_nodes,
            "edges": network.n_edges,
            "length_km": round(float(network.length_m.sum()) / 1000, 3),
            "crs": network.crs,
            **{k: v for k, v in network.report.items()},
        },
        "communities": len(table),
        "communities_derived": str(table["derived"].iloc[0]) if len(table) else "",
        "community_names": table["name"].tolist(),
        "nodes_outside_communities": int((node_comm < 0).sum()),
        "residents_basis": residents.basis,
        "speed_m_s": cfg.walk.resolved_speed_m_s,
        "levels_minutes": list(cfg.walk.levels_minutes),
        "flag_threshold": cfg.coverage.flag_threshold,
        "facilities": {
            **facility_counts,
            "by_status": {str(k): int(v) for k, v in status.items()},
            "near_island": int(fac["near_island"].sum()) if len(fac) else 0,
        },
        "rejected_rows": len(result.rejects),
        "categories": rows,
        "population": residents.info,
        "walking_profiles": {
            c: {"profile": p, "speed_m_s": cfg.walk.walk_profile(p).speed_m_s}
            for c, p in profiles.items()
        },
        "slope_aware": slope_aware,
    }
    if cycling is not None:
        doc["cycling"] = cycling
    if area_doc is not None:
        doc["area"] = area_doc
    if updates:
        doc["facility_updates"] = updates
    doc["seconds"] = round(seconds, 2)
    return doc


def summary_table(result: StudyResult) -> str:
    """A plain-text summary table (what ``circles run`` prints)."""
    s = result.summary
    k = level_key(result.config.walk.levels_minutes[-1])
    lines = [
        f"study: {s['study']}   network: {s['network']['nodes']:,} nodes, "
        f"{s['network']['length_km']:,} km   speed: {s['speed_m_s']} m/s",
        f"communities: {s['communities']} ({s['communities_derived']})   residents: "
        f"{s['residents_basis']}",
        f"facilities: {_by_status(s['facilities'].get('by_status', {}))}   "
        f"rejected planner rows: {s['rejected_rows']}",
        "",
        f"{'category':<18}{'walk':>10}{'facilities':>11}{'share<=' + k + 'min':>14}{'flagged':>9}",
    ]
    n = s["communities"]
    for r in s["categories"]:
        share = r[f"share_within_{k}_min"]
        share_s = "-" if share != share else f"{100 * share:.1f}%"
        star = " *" if r["always_reported"] else ""
        walk = s.get("walking_profiles", {}).get(r["category"], {}).get("profile", "")
        lines.append(
            f"{r['category']:<18}{walk:>10}{r['facilities']:>11}{share_s:>14}"
            f"{r['communities_flagged']:>5}/{n}{star}"
        )
    lines.append("")
    man = result.manifest or {}
    if man.get("nothing_changed"):
        lines.append("nothing changed: reused cached results (no category recomputed)")
    elif man.get("categories"):
        rec = man["categories"].get("recomputed", [])
        lines.append(
            f"recomputed {len(rec)} of {len(result.categories)} categories"
            + (f": {', '.join(rec)}" if rec and len(rec) < len(result.categories) else "")
        )
    lines.append(
        f"* always reported (flag: 15-minute share below "
        f"{100 * result.config.coverage.flag_threshold:.0f}%)"
    )
    lines.append(
        "communities: "
        + ", ".join(map(str, s["community_names"][:40]))
        + (" ..." if len(s["community_names"]) > 40 else "")
    )
    return "\n".join(lines)


#: How the summary names each facility status.
_STATUS_WORDS = {
    "snapped": "on the walking network",
    "unreachable": "too far from it",
    "island": "on a cut-off piece of it",
}


def _by_status(counts: dict[str, int]) -> str:
    """Facility counts by status in words: ``74 on the walking network, 2 too far from it``."""
    if not counts:
        return "none"
    order = [*[k for k in _STATUS_WORDS if k in counts], *sorted(set(counts) - set(_STATUS_WORDS))]
    return ", ".join(f"{counts[k]} {_STATUS_WORDS.get(k, k)}" for k in order)
