"""Life-circle checklists: which facility items each community reaches, and at which level.

A profile with ``[[levels]]`` and ``[[checklist]]`` sections (the packaged
``china_life_circle`` and ``fitness_circle``; format in ``circles/profiles/README.md``)
lists the items a community should reach within each walk-time level, e.g. a kindergarten
within 5 minutes and a middle school within 15 minutes (GB 50180-2018).

Rule
----
An item is **met at level L** (minutes) when the share of the community's residents
within ``L`` minutes of a facility of *any* of the item's categories is at least
``threshold``. The default threshold is the coverage flag threshold
(:data:`circles.settings.FLAG_THRESHOLD_SHARE`, 0.8; a study's ``[coverage]
flag_threshold`` when evaluated from a :class:`~circles.pipeline.StudyResult`), so "met"
and "not flagged" use the same bar.

Levels are cumulative: the 15-minute circle's checklist holds its own items *and* the 5-
and 10-minute items, each of which must be met within its own level (a kindergarten 12
minutes away does not complete a 15-minute circle). Per community:

- ``completeness``: share of all checklist items met within their own level (0-1);
- ``completeness_<L>``: the same over the items of levels up to ``L``;
- ``<item>_met_level``: the smallest level at which the item is met (NaN: not within the
  largest level);
- ``missing_zh`` / ``missing_en``: the items not met within their own level, in plain words.

Items with several categories (e.g. 社区卫生服务站: a health station *or* a health centre)
need the share of residents near *any* of them, which per-category shares cannot give
exactly. :func:`item_coverage` computes it from node minutes (what
:func:`checklist_from_result` does); given only a coverage table, the largest
single-category share is used, a lower bound, and the ``share_basis`` column says so.
An item none of whose categories has a column in the table is ``no data``: not met, and
listed as such rather than as missing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd

from circles._errors import ConfigError, InputDataError
from circles.categories import ChecklistItem, Profile
from circles.coverage import coverage_table
from circles.settings import FLAG_THRESHOLD_SHARE

if TYPE_CHECKING:
    from circles.result import StudyResult

__all__ = [
    "ATTRIBUTE_COLUMNS",
    "BASIS_EXACT",
    "BASIS_LOWER_BOUND",
    "BASIS_NO_DATA",
    "ChecklistResult",
    "checklist_from_result",
    "evaluate_checklist",
    "item_column",
    "item_coverage",
]

logger = logging.getLogger(__name__)

#: Community columns carried into the checklist tables when present.
ATTRIBUTE_COLUMNS: Final = ("county", "street", "kind", "derived")

#: ``share_basis`` values of the long table.
BASIS_EXACT: Final = "exact"
BASIS_LOWER_BOUND: Final = "lower bound (best single category; union needs node minutes)"
BASIS_NO_DATA: Final = "no data"

_ITEM_PREFIX: Final = "chk_"


def item_column(item_id: str) -> str:
    """Prefix of the coverage columns of a checklist item (``chk_<id>``).

    :func:`item_coverage` writes ``chk_<id>_share_<L>``; :func:`evaluate_checklist` reads
    them in preference to per-category columns.
    """
    return f"{_ITEM_PREFIX}{item_id}"


def _lev(level: float) -> str:
    return str(int(level)) if float(level).is_integer() else str(level)


@dataclass(frozen=True)
class ChecklistResult:
    """Checklist evaluation of every community.

    Attributes
    ----------
    communities : pandas.DataFrame
        One row per community (see the module docstring for the columns).
    items : pandas.DataFrame
        One row per community and item: shares per level, ``met_<L>``, ``met_at_level``,
        ``met_level``, ``share_basis``, and the item's labels, source and status.
    threshold : float
        Share of residents an item needed (0-1).
    profile : str
        Profile name.
    """

    communities: pd.DataFrame
    items: pd.DataFrame
    threshold: float
    profile: str


def _check_profile(profile: Any) -> Profile:
    if not isinstance(profile, Profile):
        raise ConfigError(
            f"a checklist needs a Profile from circles.categories.load_profile(); got "
            f"{type(profile).__name__}"
        )
    if not profile.checklist:
        raise ConfigError(
            f"profile {profile.name!r} has no [[checklist]] items; use a planning profile "
            "such as 'china_life_circle' or 'fitness_circle'"
        )
    return profile


def _check_threshold(threshold: Any) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise ConfigError(f"threshold must be a share between 0 and 1; got {threshold!r}")
    if not 0.0 <= float(threshold) <= 1.0:
        raise ConfigError(f"threshold must be a share between 0 and 1; got {threshold!r}")
    return float(threshold)


def item_coverage(
    communities: pd.DataFrame,
    node_community: np.ndarray,
    node_weight: np.ndarray,
    node_minutes: Mapping[str, np.ndarray] | pd.DataFrame,
    profile: Profile,
    *,
    levels_minutes: Sequence[float] | None = None,
) -> pd.DataFrame:
    """Exact shares of residents within each level of *any* category of each item.

    Parameters
    ----------
    communities : pandas.DataFrame
        The communities (any frame with one row per community, in ``node_community``'s
        order; only its index and length are used).
    node_community : numpy.ndarray
        Community position per node (-1: none), from :func:`circles.coverage.assign_nodes`.
    node_weight : numpy.ndarray
        Residents per node (people, or metres of street as a stand-in).
    node_minutes : mapping or pandas.DataFrame
        Category -> walking minutes per node to the nearest facility (``inf``: none
        within the cut-off), e.g. :attr:`StudyResult.node_minutes`.
    profile : Profile
        A profile with a checklist.
    levels_minutes : sequence of float, optional
        Levels to compute (default: the profile's levels).

    Returns
    -------
    pandas.DataFrame
        Indexed like ``communities``, columns ``chk_<item>_share_<L>`` (0-1, NaN for a
        community without residents) for every item with at least two categories in
        ``node_minutes`` (a single category's own coverage column is already exact).
    """
    profile = _check_profile(profile)
    if not isinstance(communities, pd.DataFrame):
        raise InputDataError(f"communities must be a DataFrame; got {type(communities).__name__}")
    levels = tuple(profile.level_minutes if levels_minutes is None else levels_minutes)
    if not levels:
        raise ConfigError(f"profile {profile.name!r} has no [[levels]]")
    nc = np.asarray(node_community)
    w = np.asarray(node_weight, dtype=float)
    if nc.shape != w.shape:
        raise InputDataError(
            f"node_community has shape {nc.shape} but node_weight {w.shape}; give one value "
            "per network node in both"
        )
    union: dict[str, np.ndarray] = {}
    for item in profile.checklist:
        present = [c for c in item.categories if c in node_minutes]
        if len(present) < 2:
            continue  # one category: its own coverage column is exact
        stack = np.vstack([np.asarray(node_minutes[c], dtype=float) for c in present])
        if stack.shape[1] != nc.size:
            raise InputDataError(
                f"node minutes of {present[0]!r} have {stack.shape[1]} values for {nc.size} nodes"
            )
        union[item_column(item.id)] = stack.min(axis=0)
    if not union:
        return pd.DataFrame(index=communities.index)
    base = pd.DataFrame(
        {"community_id": np.arange(len(communities)), "name": ""}, index=communities.index
    )
    import geopandas as gpd

    table = coverage_table(
        gpd.GeoDataFrame(base, geometry=[None] * len(base)),
        nc,
        w,
        union,
        levels_minutes=levels,
    )
    cols = [f"{k}_share_{_lev(lv)}" for k in union for lv in levels]
    return pd.DataFrame(table[cols])


def _item_shares(
    table: pd.DataFrame, item: ChecklistItem, levels: tuple[float, ...]
) -> tuple[dict[float, np.ndarray], str]:
    n = len(table)
    key = item_column(item.id)
    if all(f"{key}_share_{_lev(lv)}" in table for lv in levels):
        return {lv: table[f"{key}_share_{_lev(lv)}"].to_numpy(float) for lv in levels}, BASIS_EXACT
    present = [c for c in item.categories if f"{c}_share_{_lev(levels[0])}" in table]
    if not present:
        return {lv: np.full(n, np.nan) for lv in levels}, BASIS_NO_DATA
    out: dict[float, np.ndarray] = {}
    for lv in levels:
        cols = [f"{c}_share_{_lev(lv)}" for c in present]
        missing = [c for c in cols if c not in table]
        if missing:
            raise InputDataError(
                f"coverage table has no column {missing[0]!r}: the checklist needs shares "
                f"at every level of the profile ({', '.join(_lev(x) for x in levels)} "
                "minutes); set [walk] levels_minutes to include them"
            )
        vals = table[cols].to_numpy(float)
        best = np.where(np.isnan(vals), -1.0, vals).max(axis=1)
        out[lv] = np.where(np.isnan(vals).all(axis=1), np.nan, best)
    return out, (BASIS_EXACT if len(present) == 1 else BASIS_LOWER_BOUND)


def _tri(values: np.ndarray, unknown: np.ndarray) -> np.ndarray:
    """Object array of True/False, None where ``unknown`` (no residents or no data)."""
    out = np.asarray(values, dtype=bool).astype(object)
    out[np.asarray(unknown, dtype=bool)] = None
    return out


def _missing_words(item: ChecklistItem, met_level: float, no_data: bool, lang: str) -> str:
    lev = _lev(item.level_minutes)
    if lang == "zh":
        if no_data:
            return f"{item.label_zh}（{lev}分钟内；无设施数据）"
        if np.isfinite(met_level):
            return f"{item.label_zh}（应在{lev}分钟内，{_lev(met_level)}分钟内可达）"
        return f"{item.label_zh}（应在{lev}分钟内）"
    if no_data:
        return f"{item.label_en} (within {lev} min; no facility data)"
    if np.isfinite(met_level):
        return f"{item.label_en} (needed within {lev} min; reached within {_lev(met_level)} min)"
    return f"{item.label_en} (needed within {lev} min)"


def evaluate_checklist(
    table: pd.DataFrame,
    profile: Profile,
    *,
    threshold: float = FLAG_THRESHOLD_SHARE,
) -> ChecklistResult:
    """Evaluate a profile's checklist on a coverage table.

    Parameters
    ----------
    table : pandas.DataFrame
        A coverage table as produced by :func:`circles.coverage.coverage_table` (columns
        ``community_id``, ``name``, ``residents`` and ``<category>_share_<L>`` for every
        level ``L`` of the profile), optionally with the ``chk_<item>_share_<L>`` columns
        of :func:`item_coverage` for exact multi-category items.
    profile : Profile
        A profile with ``[[levels]]`` and ``[[checklist]]``.
    threshold : float, default 0.8
        Share of residents (0-1) within the level for an item to count as met.

    Returns
    -------
    ChecklistResult

    Raises
    ------
    InputDataError
        If the table lacks ``community_id``/``name`` or the shares of a level.
    ConfigError
        If the profile has no checklist or the threshold is not a share.
    """
    profile = _check_profile(profile)
    threshold = _check_threshold(threshold)
    if not isinstance(table, pd.DataFrame):
        raise InputDataError(
            f"evaluate_checklist() needs a coverage table (DataFrame); got {type(table).__name__}"
        )
    for col in ("community_id", "name"):
        if col not in table:
            raise InputDataError(
                f"coverage table has no {col!r} column; pass the output of "
                "circles.coverage.coverage_table or StudyResult.communities"
            )
    levels = profile.level_minutes
    n = len(table)
    residents = table["residents"].to_numpy(float) if "residents" in table else np.full(n, np.nan)
    carry = [c for c in ATTRIBUTE_COLUMNS if c in table]
    head = pd.DataFrame(
        {"community_id": table["community_id"].to_numpy(), "name": table["name"].to_numpy()}
    )
    for c in carry:
        head[c] = table[c].to_numpy()
    long_parts: list[pd.DataFrame] = []
    met_own = np.zeros((n, len(profile.checklist)), dtype=bool)
    no_data_items = np.zeros(len(profile.checklist), dtype=bool)
    met_levels = np.full((n, len(profile.checklist)), np.nan)
    for j, item in enumerate(profile.checklist):
        shares, basis = _item_shares(table, item, levels)
        no_data_items[j] = basis == BASIS_NO_DATA
        part = head.copy()
        part["item"] = item.id
        part["label_zh"] = item.label_zh
        part["label_en"] = item.label_en
        part["level_minutes"] = item.level_minutes
        part["categories"] = " / ".join(item.categories)
        part["provision"] = item.provision
        part["status"] = item.status
        part["source"] = item.source
        part["share_basis"] = basis
        met_lv = np.full(n, np.nan)
        for lv in reversed(levels):
            s = shares[lv]
            part[f"share_{_lev(lv)}"] = s
            ok = s >= threshold
            part[f"met_{_lev(lv)}"] = _tri(ok, np.isnan(s))
            met_lv = np.where(ok, lv, met_lv)
        own = shares[item.level_minutes]
        met_at = own >= threshold
        part["met_at_level"] = _tri(met_at, np.isnan(own))
        part["met_level"] = met_lv
        part["threshold"] = threshold
        met_own[:, j] = met_at
        met_levels[:, j] = met_lv
        long_parts.append(part)
    items = pd.concat(long_parts, ignore_index=True)
    share_order = [f"share_{_lev(lv)}" for lv in levels] + [f"met_{_lev(lv)}" for lv in levels]
    first = [*head.columns, "item", "label_zh", "label_en", "level_minutes", "categories"]
    rest = [c for c in items.columns if c not in first and c not in share_order]
    items = items[first + share_order + rest]

    out = head.copy()
    out["residents"] = residents
    has_res = np.isfinite(residents) & (residents > 0) if "residents" in table else np.ones(n, bool)
    item_levels = np.array([it.level_minutes for it in profile.checklist])
    out["items_total"] = len(profile.checklist)
    out["items_met"] = np.where(has_res, met_own.sum(axis=1), 0)
    out["items_no_data"] = int(no_data_items.sum())
    for lv in levels:
        sel = item_levels <= lv
        with np.errstate(invalid="ignore", divide="ignore"):
            comp = met_own[:, sel].sum(axis=1) / max(int(sel.sum()), 1)
        out[f"completeness_{_lev(lv)}"] = np.where(has_res & (sel.sum() > 0), comp, np.nan)
    out["completeness"] = np.where(has_res, met_own.sum(axis=1) / len(profile.checklist), np.nan)
    miss_zh: list[str] = []
    miss_en: list[str] = []
    for i in range(n):
        if not has_res[i]:
            miss_zh.append("（无居民，未评估）")
            miss_en.append("(no residents: not evaluated)")
            continue
        zh = [
            _missing_words(it, met_levels[i, j], bool(no_data_items[j]), "zh")
            for j, it in enumerate(profile.checklist)
            if not met_own[i, j]
        ]
        en = [
            _missing_words(it, met_levels[i, j], bool(no_data_items[j]), "en")
            for j, it in enumerate(profile.checklist)
            if not met_own[i, j]
        ]
        miss_zh.append("；".join(zh))
        miss_en.append("; ".join(en))
    out["missing_zh"] = miss_zh
    out["missing_en"] = miss_en
    for j, it in enumerate(profile.checklist):
        out[f"{it.id}_met_level"] = met_levels[:, j]
    logger.debug(
        "checklist %s: %d communities, %d items, threshold %.2f",
        profile.name,
        n,
        len(profile.checklist),
        threshold,
    )
    return ChecklistResult(communities=out, items=items, threshold=threshold, profile=profile.name)


def checklist_from_result(
    result: StudyResult,
    *,
    profile: Profile | None = None,
    threshold: float | None = None,
) -> ChecklistResult:
    """Evaluate the checklist of a study run, with exact multi-category items.

    Parameters
    ----------
    result : StudyResult
        From :func:`circles.pipeline.run`.
    profile : Profile, optional
        Default: the study's ``[facilities] profile``.
    threshold : float, optional
        Default: the study's ``[coverage] flag_threshold``.

    Returns
    -------
    ChecklistResult
    """
    from circles.categories import load_profile
    from circles.coverage import assign_nodes
    from circles.result import StudyResult

    if not isinstance(result, StudyResult):
        raise InputDataError(
            f"checklist_from_result() needs a StudyResult from circles.pipeline.run(); got "
            f"{type(result).__name__}"
        )
    cfg = result.config
    prof = load_profile(cfg.facilities.profile) if profile is None else _check_profile(profile)
    thr = cfg.coverage.flag_threshold if threshold is None else threshold
    net = result.network
    comm = result.communities
    node_comm = assign_nodes(net, comm)
    weight = getattr(result, "node_weight", None)
    if weight is None:
        weight = net.node_weight_m()
        pop_col = cfg.communities.population_column
        if pop_col is not None and pop_col in comm:
            from circles.population import community_node_population

            weight = community_node_population(net, node_comm, comm[pop_col].to_numpy(float))
            weight = np.nan_to_num(weight, nan=0.0)
    levels = tuple(lv for lv in prof.level_minutes)
    missing = [lv for lv in levels if lv not in tuple(float(x) for x in cfg.walk.levels_minutes)]
    if missing:
        raise InputDataError(
            f"the study's walk.levels_minutes {list(cfg.walk.levels_minutes)} lack the "
            f"profile's levels {missing}; add them to [walk] levels_minutes"
        )
    exact = item_coverage(comm, node_comm, weight, result.node_minutes, prof, levels_minutes=levels)
    table = pd.concat([pd.DataFrame(comm.drop(columns="geometry")), exact], axis=1)
    return evaluate_checklist(table, prof, threshold=thr)
