"""What a proposal would change, before it is adopted: ``circles compare``.

A scenario is the study with facilities added, removed or replaced: a second study
file (``circles compare baseline.toml scenario.toml``), or a ``[[scenarios]]`` entry of
the study whose ``[[scenarios.updates]]`` are facility update files (``action`` add /
replace / remove; a ``circles suggest`` file is one) applied after the study's own
updates (``circles compare study.toml --scenario NAME``, :func:`scenario_config`).

:func:`compare` runs both without writing either (the caches are used and filled; the
baseline's outputs are not touched) and writes, as one transaction, under
``<output_dir>/<baseline>/compare/<scenario>/``:

- ``compare.csv``: one row per community and category: the share within the last level
  before and after, the change, the flag before and after, and ``flag_change``
  (``lost_flag``: a gap closed; ``gained_flag``: a gap opened);
- ``checklist_changes.csv``: the life-circle checklist items that a community meets
  after but not before, or before but not after (profiles with a checklist);
- ``indicator_changes.csv``: the plan indicators (:func:`circles.report.indicator_table`)
  whose measured value or verdict changes;
- ``compare.json``: per category the city-wide share and the flagged communities before
  and after, and the counts of the changes;

and the map ``<maps_dir>/<baseline>/compare/<scenario>.html`` (communities that gain or
lose a flag, per category).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from circles import io
from circles._errors import CirclesError, ConfigError, InputDataError
from circles.config import StudyConfig, resolve_path
from circles.pipeline import StudyResult, run
from circles.result import level_key, to_json
from circles.transaction import Transaction, study_lock

logger = logging.getLogger(__name__)


def scenario_config(cfg: StudyConfig, name: str) -> StudyConfig:
    """The study with the ``[[scenarios]]`` entry ``name`` applied: its update files after
    the study's own (same study name, so the cache is shared; never written by compare).

    Raises
    ------
    ConfigError
        No scenario of that name.
    """
    names = [s.name for s in cfg.scenarios]
    if name not in names:
        raise ConfigError(f"no scenario named {name!r} in [[scenarios]]; scenarios are: {names}")
    sc = cfg.scenarios[names.index(name)]
    fac = replace(cfg.facilities, updates=(*cfg.facilities.updates, *sc.updates))
    return replace(cfg, facilities=fac, scenarios=())


#: The sections a scenario must share with its baseline: it changes facilities only.
SAME_SECTIONS = ("network", "communities", "walk", "population", "coverage")

#: Keys of those sections that hold paths (compared once resolved against each study's
#: folder, so two study files in different folders may name the same file).
_PATH_KEYS = {
    "network": ("source", "raw_dir"),
    "communities": ("source", "centres", "boundary"),
    "walk": ("dem",),
    "population": ("raster", "elderly_raster"),
}


def differing_settings(baseline: StudyConfig, scenario: StudyConfig) -> list[str]:
    """The settings of :data:`SAME_SECTIONS` in which ``scenario`` differs from
    ``baseline``, as ``"[section] key: baseline value -> scenario value"``.

    Parameters
    ----------
    baseline, scenario : StudyConfig

    Returns
    -------
    list of str
        Empty when the scenario changes nothing but facilities.
    """
    out = []
    for name in SAME_SECTIONS:
        a, b = getattr(baseline, name), getattr(scenario, name)
        for f in fields(a):
            va, vb = getattr(a, f.name), getattr(b, f.name)
            if va == vb:
                continue
            if f.name in _PATH_KEYS.get(name, ()) and isinstance(va, str) and isinstance(vb, str):
                ra = os.path.normpath(str(resolve_path(va, baseline.base_dir)))
                rb = os.path.normpath(str(resolve_path(vb, scenario.base_dir)))
                if ra == rb:
                    continue
            out.append(f"[{name}] {f.name}: {va!r} -> {vb!r}")
    return out


@dataclass
class Comparison:
    """What :func:`compare` found and wrote.

    Attributes
    ----------
    name : str
        The scenario's name.
    table : pandas.DataFrame
        ``compare.csv``.
    checklist : pandas.DataFrame
        Checklist items met before or after only (empty without a checklist).
    indicators : pandas.DataFrame
        Plan indicators that change.
    summary : dict
        ``compare.json``.
    before, after : StudyResult
    outputs : dict
        Output name -> path.
    """

    name: str
    table: pd.DataFrame
    checklist: pd.DataFrame
    indicators: pd.DataFrame
    summary: dict[str, Any]
    before: StudyResult
    after: StudyResult
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        """Whether anything differs between the baseline and the scenario."""
        return bool(
            (self.table["change"].fillna(0) != 0).any()
            or (self.table["flag_change"] != "").any()
            or len(self.checklist)
            or len(self.indicators)
        )

    def summary_text(self) -> str:
        """A few lines for the terminal."""
        lev = self.summary["level_minutes"]
        lines = [f"scenario {self.name!r} against the baseline (within {lev:g} min):"]
        for cat, d in self.summary["categories"].items():
            if d["share_before"] == d["share_after"] and not d["lost_flag"] + d["gained_flag"]:
                continue
            lines.append(
                f"  {cat:<18} {100 * d['share_before']:5.1f}% -> {100 * d['share_after']:5.1f}%"
                f"  flagged {d['flagged_before']} -> {d['flagged_after']}"
                f" (gaps closed {d['lost_flag']}, opened {d['gained_flag']})"
            )
        if len(lines) == 1:
            lines.append("  no change")
        lines.append(
            f"  checklist items changed: {len(self.checklist)}; plan indicators changed: "
            f"{len(self.indicators)}"
        )
        return "\n".join(lines)


def _city_share(table: pd.DataFrame, cat: str, lk: str) -> float:
    sh = table[f"{cat}_share_{lk}"].to_numpy(float)
    res = table["residents"].to_numpy(float)
    ok = np.isfinite(sh)
    total = float(res.sum())
    return float((sh[ok] * res[ok]).sum() / total) if total > 0 else float("nan")


def compare_tables(before: StudyResult, after: StudyResult) -> pd.DataFrame:
    """``compare.csv``: per community and category, shares and flags before and after."""
    a, b = before.communities, after.communities
    if list(a["community_id"]) != list(b["community_id"]):
        raise InputDataError(
            "the baseline and the scenario have different communities; a scenario may "
            "change facilities only (same [communities], [network] and [walk])"
        )
    lk = level_key(before.config.walk.levels_minutes[-1])
    cats = [c for c in before.categories if c in after.categories]
    parts = []
    for cat in cats:
        sb = a[f"{cat}_share_{lk}"].to_numpy(float)
        sa = b[f"{cat}_share_{lk}"].to_numpy(float)
        fb = a[f"{cat}_flag"].to_numpy(bool)
        fa = b[f"{cat}_flag"].to_numpy(bool)
        parts.append(
            pd.DataFrame(
                {
                    "community_id": a["community_id"].to_numpy(),
                    "name": a["name"].to_numpy(),
                    "category": cat,
                    "share_before": sb,
                    "share_after": sa,
                    "change": sa - sb,
                    "flag_before": fb,
                    "flag_after": fa,
                    "flag_change": np.where(
                        fb & ~fa, "lost_flag", np.where(~fb & fa, "gained_flag", "")
                    ),
                }
            )
        )
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _checklist_changes(before: StudyResult, after: StudyResult) -> pd.DataFrame:
    from circles.checklist import checklist_from_result

    try:
        cb = checklist_from_result(before).items
        ca = checklist_from_result(after).items
    except CirclesError as exc:
        logger.info("no checklist comparison: %s", exc)
        return pd.DataFrame(columns=["community_id", "item", "met_before", "met_after"])
    item = "item"
    keys = ["community_id", item]
    m = cb[[*keys, "met_at_level"]].merge(
        ca[[*keys, "met_at_level"]], on=keys, suffixes=("_before", "_after")
    )
    diff = m["met_at_level_before"].astype(bool) != m["met_at_level_after"].astype(bool)
    names = {"met_at_level_before": "met_before", "met_at_level_after": "met_after"}
    out = m.loc[diff].rename(columns={item: "item", **names})
    return out.reset_index(drop=True)


def _indicator_changes(before: StudyResult, after: StudyResult) -> pd.DataFrame:
    from circles.report import indicator_table

    cfg = before.config
    kw: dict[str, Any] = {
        "threshold": cfg.coverage.flag_threshold,
        "level_minutes": float(cfg.walk.levels_minutes[-1]),
        "lang": cfg.study.lang,
    }
    ib = indicator_table(before.communities, before.facilities, categories=before.categories, **kw)
    ia = indicator_table(after.communities, after.facilities, categories=after.categories, **kw)
    keys = ["scope", "indicator_id", "indicator"]
    m = ib[[*keys, "measured", "met"]].merge(
        ia[[*keys, "measured", "met"]], on=keys, suffixes=("_before", "_after")
    )
    diff = (m["measured_before"].astype(str) != m["measured_after"].astype(str)) | (
        m["met_before"].astype(str) != m["met_after"].astype(str)
    )
    return m.loc[diff].reset_index(drop=True)


def compare(
    baseline: StudyConfig,
    scenario: StudyConfig,
    *,
    name: str | None = None,
    progress: Any = None,
    wait_s: float = 0.0,
) -> Comparison:
    """Compare a scenario with its baseline and write the comparison.

    Parameters
    ----------
    baseline : StudyConfig
        The study as it is.
    scenario : StudyConfig
        The study with facilities changed (:func:`scenario_config`, or another study
        file with the same communities).
    name : str, optional
        The scenario's name (default: the scenario study's name; give the
        ``[[scenarios]]`` name for :func:`scenario_config`).
    progress : callable, optional
        Stage messages.
    wait_s : float, default 0
        Seconds to wait for another process that holds the baseline study.

    Returns
    -------
    Comparison

    Raises
    ------
    ConfigError
        The scenario differs from the baseline in more than facilities (its
        :data:`SAME_SECTIONS`, :func:`differing_settings`), or its name is not a name.
    """
    label = name or scenario.study.name
    if not label or any(ch in label for ch in "/\\") or label.startswith("."):
        raise ConfigError(f"scenario name {label!r} must be a name without slashes")
    changed = differing_settings(baseline, scenario)
    if changed:
        raise ConfigError(
            "a scenario may change facilities only (the same "
            + ", ".join(f"[{s}]" for s in SAME_SECTIONS)
            + " as the baseline); this one also changes "
            + "; ".join(changed)
        )
    say = progress or (lambda msg: None)
    with study_lock(baseline.out_dir, study=baseline.study.name, wait_s=wait_s):
        say("baseline")
        before = run(baseline, write=False, cache=True, progress=progress)
        say(f"scenario {label}")
        after = run(scenario, write=False, cache=True, progress=progress)
        table = compare_tables(before, after)
        checklist = _checklist_changes(before, after)
        indicators = _indicator_changes(before, after)
        lk = level_key(before.config.walk.levels_minutes[-1])
        cats: dict[str, Any] = {}
        for cat in dict.fromkeys(table["category"]) if len(table) else []:
            t = table[table["category"] == cat]
            cats[cat] = {
                "share_before": _city_share(before.communities, cat, lk),
                "share_after": _city_share(after.communities, cat, lk),
                "flagged_before": int(t["flag_before"].sum()),
                "flagged_after": int(t["flag_after"].sum()),
                "lost_flag": int((t["flag_change"] == "lost_flag").sum()),
                "gained_flag": int((t["flag_change"] == "gained_flag").sum()),
            }
        summary = {
            "scenario": label,
            "baseline": baseline.study.name,
            "level_minutes": float(before.config.walk.levels_minutes[-1]),
            "facilities_before": len(before.facilities),
            "facilities_after": len(after.facilities),
            "categories": cats,
            "checklist_changes": len(checklist),
            "indicator_changes": len(indicators),
        }
        res = Comparison(label, table, checklist, indicators, summary, before, after)
        folder = f"compare/{label}"
        with Transaction({"data": baseline.out_dir, "maps": baseline.map_dir}) as tx:
            for key, df in (
                ("compare_csv", table),
                ("checklist_csv", checklist),
                ("indicators_csv", indicators),
            ):
                fname = {
                    "compare_csv": "compare.csv",
                    "checklist_csv": "checklist_changes.csv",
                    "indicators_csv": "indicator_changes.csv",
                }[key]
                io.write_csv(df, tx.path("data", f"{folder}/{fname}"))
                res.outputs[key] = str(tx.final("data", f"{folder}/{fname}"))
            tx.path("data", f"{folder}/compare.json").write_text(to_json(summary), encoding="utf-8")
            res.outputs["compare_json"] = str(tx.final("data", f"{folder}/compare.json"))
            if baseline.map.enabled and len(table):
                from circles.scenario_maps import change_map

                change_map(
                    _wide(before.communities, table),
                    list(cats),
                    labels=before.labels,
                    level=lk,
                    path=tx.path("maps", f"compare/{label}.html"),
                    lang=baseline.study.lang,
                    simplify_m=float(baseline.map.simplify_m),
                    tiles=baseline.map.tiles,
                    self_contained=baseline.map.self_contained,
                )
                res.outputs["map_html"] = str(tx.final("maps", f"compare/{label}.html"))
            tx.commit()
    say(res.summary_text())
    return res


def _wide(communities: gpd.GeoDataFrame, table: pd.DataFrame) -> gpd.GeoDataFrame:
    """One row per community with ``<cat>_share_before`` ... ``<cat>_change`` for the map."""
    out = communities[["community_id", "name", "geometry"]].copy()
    cols: dict[str, Any] = {}
    for cat, t in table.groupby("category", sort=False):
        t = t.set_index("community_id").loc[out["community_id"]]
        kind = np.where(
            t["flag_change"] != "",
            t["flag_change"],
            np.where(t["change"] > 0, "share_up", np.where(t["change"] < 0, "share_down", "same")),
        )
        cols[f"{cat}_share_before"] = t["share_before"].to_numpy()
        cols[f"{cat}_share_after"] = t["share_after"].to_numpy()
        cols[f"{cat}_flag_before"] = t["flag_before"].to_numpy()
        cols[f"{cat}_flag_after"] = t["flag_after"].to_numpy()
        cols[f"{cat}_change"] = kind
    extra = pd.DataFrame(cols, index=out.index)
    return gpd.GeoDataFrame(pd.concat([out, extra], axis=1), geometry="geometry", crs=out.crs)


def scenario_path(cfg: StudyConfig, name: str) -> Path:
    """``<output_dir>/<study>/compare/<name>/``: where a comparison is written."""
    return cfg.out_dir / "compare" / name
