"""The run summary: what ``summary.json`` holds and what ``circles run`` prints.

What drops out is said loudly: a run warns (and ``summary.json`` lists under
``warnings``) when small disconnected pieces of the network hold much of the street
length, overall or in a community, and when many nodes lie outside every community
(naming the boundaries that are not communities: incomplete in the extract, outside
``parent``, excluded). ``communities_detail`` gives, per community, its nodes, street
length and the street length dropped as small pieces; ``community_overlaps`` the pairs
of overlapping community polygons and the rule that gives each node one community.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from circles.areas import ACROSS_BORDER, nodes_inside
from circles.communities import (
    LEFT_OUT,
    OVERLAP_RULE,
    OVERLAPS,
    network_report,
    overlap_warning,
)
from circles.facilities import STATUS_SNAPPED
from circles.network import DROPPED_STREET_HINT, DROPPED_STREET_WARN_SHARE, dropped_street_share
from circles.result import (
    Facilities,
    Residents,
    RunContext,
    StudyAccess,
    StudyResult,
    level_key,
)

logger = logging.getLogger(__name__)

#: Warn when small disconnected pieces hold at least this share (0-1) of the whole
#: network's street length ...
DROPPED_WARN_SHARE = 0.05
#: ... or of one community's.
COMMUNITY_DROPPED_WARN_SHARE = 0.10
#: Warn when at least this share (0-1) of the network's nodes is outside every community.
OUTSIDE_WARN_SHARE = 0.05


def study_summary(
    result: StudyResult,
    facilities: Facilities,
    residents: Residents,
    access: StudyAccess,
    cycling: dict[str, Any] | None,
    area: Any,
    elevation_m: Any,
    ctx: RunContext,
    *,
    left_out: list[dict[str, Any]] | None = None,
    overlaps: list[dict[str, Any]] | None = None,
    files: list[dict[str, Any]] | None = None,
    across_border: list[dict[str, Any]] | None = None,
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
    left_out : list of dict, optional
        Boundaries of the communities' source that are not communities (the
        communities stage's ``attrs["communities_left_out"]``).
    overlaps : list of dict, optional
        Overlapping pairs of communities (:func:`circles.communities.community_overlaps`;
        default: the table's ``attrs["communities_overlaps"]``), recorded under
        ``community_overlaps`` with the rule that assigns their nodes (the stage has
        already warned).
    files : list of dict, optional
        How each planner facility file was read (the facilities stage's ``files``:
        :attr:`circles.facilities.FileRead.record`), as ``facilities.files``.
    across_border : list of dict, optional
        Communities overlapping the area that it did not keep
        (:data:`circles.areas.ACROSS_BORDER`), as ``area.communities_across_border``.
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
            "street_share_in_small_components": round(
                dropped_street_share(network.report, network.length_m.sum()), 4
            ),
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
            c: _profile_doc(cfg.walk.walk_profile(p)) for c, p in profiles.items()
        },
        "slope_aware": slope_aware,
    }
    doc["facilities"]["areas"] = area_facilities(fac, result.entries)
    if files:
        doc["facilities"]["files"] = list(files)
    detail = network_report(network, table, node_comm)
    outside = detail.pop()
    doc["communities_detail"] = detail
    left_out = list(left_out if left_out is not None else table.attrs.get(LEFT_OUT, []))
    n_out, n_nodes, halo = nodes_outside(
        network, node_comm, area.boundary if area is not None else None
    )
    doc["outside_communities"] = {
        "nodes": n_out,
        "share_of_nodes": round(n_out / max(n_nodes, 1), 4),
        "street_km": outside["street_km"],
        "dropped_street_km": outside["dropped_street_km"],
        "communities_left_out": left_out,
    }
    if halo is not None:
        doc["outside_communities"]["nodes_in_area_halo"] = halo
    doc["warnings"] = drop_warnings(network, detail, doc["outside_communities"])
    for text in doc["warnings"]:
        logger.warning("%s", text)
    pairs = list(overlaps if overlaps is not None else table.attrs.get(OVERLAPS, []))
    doc["community_overlaps"] = {
        "pairs": len(pairs),
        "rule": OVERLAP_RULE,
        "overlaps": pairs[:100],
    }
    if pairs:
        doc["warnings"].append(overlap_warning(pairs))  # logged by the communities stage
    if cycling is not None:
        doc["cycling"] = cycling
    if area_doc is not None:
        doc["area"] = {
            **area_doc,
            "communities_across_border": list(
                across_border if across_border is not None else table.attrs.get(ACROSS_BORDER, [])
            ),
        }
    if updates:
        doc["facility_updates"] = updates
    if facilities.datum:
        doc["datum_check"] = facilities.datum
    doc["seconds"] = round(seconds, 2)
    return doc


def _profile_doc(prof: Any) -> dict[str, Any]:
    """A walking profile as the summary states it: speed and the cost of steps."""
    return {
        "profile": prof.name,
        "speed_m_s": prof.speed_m_s,
        "steps_factor": prof.steps_factor,
        "exclude_steps": prof.exclude_steps,
    }


def area_facilities(facilities: Any, entries: Any) -> dict[str, Any]:
    """Area facilities of the run: how many, where they are entered, nodes inside.

    Returns
    -------
    dict
        ``facilities`` (area facilities, each id once), ``entries`` (their entries,
        inside nodes not counted), ``entries_by_kind``, ``inside_nodes``, ``by_rule``
        (how each was joined: ``gates``, ``entries``, ``open``, ``nearest``) and
        ``cut_by_extract_edge`` (ids and names of those whose outline the extract cut).
    """
    if "footprint_wkb" not in facilities or len(facilities) == 0:
        return {"facilities": 0, "entries": 0, "inside_nodes": 0}
    rows = facilities[
        facilities["footprint_wkb"].notna().to_numpy()
        & (facilities["status"] == STATUS_SNAPPED).to_numpy()
    ]
    rows = rows[~rows["facility_id"].astype(str).duplicated()]
    kinds = {} if entries is None else entries["kind"].value_counts().to_dict()
    cut = rows[rows["outline"].astype(object) == "cut"] if "outline" in rows else rows.iloc[0:0]
    doc: dict[str, Any] = {
        "facilities": len(rows),
        "entries": int(sum(v for k, v in kinds.items() if k != "inside")),
        "entries_by_kind": {str(k): int(v) for k, v in kinds.items() if k != "inside"},
        "inside_nodes": int(kinds.get("inside", 0)),
    }
    if "entry_rule" in rows:
        doc["by_rule"] = {str(k): int(v) for k, v in rows["entry_rule"].value_counts().items()}
    doc["cut_by_extract_edge"] = [
        {"facility_id": str(i), "name": None if n is None or n != n else str(n)}
        for i, n in zip(cut["facility_id"], cut["name"], strict=True)
    ]
    return doc


def nodes_outside(
    network: Any, node_comm: np.ndarray, boundary: Any
) -> tuple[int, int, int | None]:
    """Nodes outside every community, of how many, and how many are in the area's halo.

    An area's run keeps a halo of network around its boundary (:mod:`circles.areas`)
    whose nodes are outside the area's communities by design; only the nodes inside the
    boundary count, so the warning names what the user can act on.

    Parameters
    ----------
    network : WalkNetwork
    node_comm : numpy.ndarray
        The community of each node (-1: none).
    boundary : shapely geometry, optional
        The area's polygon (EPSG:4326); None: every node counts.

    Returns
    -------
    outside : int
        Nodes (inside the boundary) outside every community.
    of : int
        Nodes counted (inside the boundary).
    halo : int or None
        Nodes in the halo (None without a boundary).
    """
    if boundary is None:
        return int((node_comm < 0).sum()), int(network.n_nodes), None
    inside = nodes_inside(network, boundary)
    return int(((node_comm < 0) & inside).sum()), int(inside.sum()), int((~inside).sum())


def drop_warnings(network: Any, detail: list[dict[str, Any]], outside: dict[str, Any]) -> list[str]:
    """What dropped out, in words: small pieces of the network and nodes outside every
    community, with the communities and shares concerned (see the module docstring)."""
    out = []
    rep = network.report
    dropped_m = float(rep.get("street_length_in_small_components_m", 0.0))
    share = dropped_street_share(rep, network.length_m.sum())
    big = share > DROPPED_STREET_WARN_SHARE
    hit = [d for d in detail if d["dropped_share"] >= COMMUNITY_DROPPED_WARN_SHARE]
    if share >= DROPPED_WARN_SHARE or hit:
        where = ", ".join(
            f"{d['name']} {100 * d['dropped_share']:.0f}% ({d['dropped_street_km']:.1f} km)"
            for d in sorted(hit, key=lambda d: -d["dropped_share"])
        )
        out.append(
            f"{100 * share:.1f}% of the walking network ({dropped_m / 1000:.1f} km, "
            f"{rep.get('edges_in_small_components', 0)} segments, "
            f"{rep.get('nodes_in_small_components', 0)} nodes) is in small pieces not "
            "connected to the rest (e.g. cut off by roads tagged foot=no) and reaches no "
            "facility"
            + (f"; most in: {where}" if where else "")
            + (f". {DROPPED_STREET_HINT[0].upper()}{DROPPED_STREET_HINT[1:]}" if big else "")
        )
    n = int(outside["nodes"])
    if n and outside["share_of_nodes"] >= OUTSIDE_WARN_SHARE:
        gone = outside["communities_left_out"]
        names = "; ".join(f"{b.get('name') or b.get('osm_id')} ({b['reason']})" for b in gone)
        out.append(
            f"{n} network nodes ({100 * outside['share_of_nodes']:.1f}%) are outside every "
            "community and count for none"
            + (f"; boundaries that are not communities: {names}" if names else "")
        )
    return out


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
