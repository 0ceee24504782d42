"""Yuxi plan indicators (玉溪市"十四五"城乡社区服务体系建设规划) per county and for the city.

:func:`indicator_table` measures each indicator of :data:`INDICATORS` per county /
district (the ``county`` column) and for the whole study area; :func:`write_report`
writes it as CSV, XLSX and a self-contained HTML page, with the life-circle checklist
(:mod:`circles.checklist`) when the profile has one.

Each row: ``scope`` (a county, or the whole area), ``indicator_id``, ``indicator``,
``target`` (from the plan), ``measured`` (in words), ``value`` (the number compared with
the target), ``met`` (``"yes"``, ``"no"``, ``"reported"`` for indicators the plan only asks
to report, or ``"no data"``) and ``basis`` (the data it rests on). An indicator whose data
are missing is ``"no data"`` with the missing column named in ``basis``: nothing is ever
estimated silently.

Reach rule
----------
A community "has X within 15 minutes" when the share of its residents within 15 minutes
of a facility of X is at least ``threshold`` (default: the coverage flag threshold, 0.8),
i.e. when it is not flagged for X. Communities without residents are left out of the
counts (``basis`` says how many).

Community attribute columns
---------------------------
Read from the community table (join them with ``attributes=``; e.g. the bureau's table, or
:func:`circles.yuxi.community_attributes` for the first three):

========================= ============================================================
``county``                county / district (区县); rows per county use it
``street``                township or sub-district (乡镇/街道); sub-districts end in 街道
``kind``                  ``"urban"`` (社区居民委员会) or ``"rural"`` (村民委员会)
``households``            households (户)
``population``            resident population (常住人口, people)
``service_area_m2``       floor area of the community's comprehensive service facility
                          (社区综合服务设施建筑面积, m²)
``activity_area_m2``      of which areas for residents' activities (居民活动区域面积, m²)
``community_workers``     community workers (社区工作者, people)
========================= ============================================================

Facility attribute columns (planner files), used when the community table lacks the
matching column: ``floor_area_m2``, ``activity_area_m2`` and ``staff`` of the
``community_service`` facilities, summed over the facilities inside each community
polygon.
"""

from __future__ import annotations

import html
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import geopandas as gpd
import numpy as np
import pandas as pd

from circles import io
from circles import report_tables as tables
from circles._errors import ConfigError, InputDataError
from circles.communities import NUMERIC_ATTRIBUTES
from circles.report_tables import write_xlsx_atomic
from circles.settings import FLAG_THRESHOLD_SHARE

__all__ = [
    "COMMUNITY_COLUMNS",
    "FACILITY_COLUMNS",
    "INDICATORS",
    "Indicator",
    "indicator_table",
    "write_report",
    "write_xlsx_atomic",
]

logger = logging.getLogger(__name__)

#: Community attribute columns the indicators read (see the module docstring): the
#: numeric ones are read as numbers with the communities file
#: (:data:`circles.communities.NUMERIC_ATTRIBUTES`).
COMMUNITY_COLUMNS: Final = ("county", "street", "kind", *NUMERIC_ATTRIBUTES)
#: Facility attribute columns (planner files) summed per community as a fallback.
FACILITY_COLUMNS: Final = {
    "service_area_m2": "floor_area_m2",
    "activity_area_m2": "activity_area_m2",
    "community_workers": "staff",
}
#: Category of the comprehensive service facilities (社区综合服务设施).
SERVICE_CATEGORY: Final = "community_service"

NO_DATA: Final = "no data"
_MET_WORDS: Final = {
    "zh": {"yes": "达标", "no": "未达标", "reported": "仅报告", NO_DATA: "无数据"},
    "en": {"yes": "met", "no": "not met", "reported": "reported", NO_DATA: "no data"},
}


@dataclass(frozen=True)
class ReportRequest:
    """A report to write with a run (``circles report``; see :func:`write_report`).

    Attributes
    ----------
    lang : {"zh", "en"}
        Report language.
    attributes : str, optional
        CSV of community attributes joined on ``community_id``.
    inherited : bool
        Taken over from the previous run's manifest (not asked for by this run).
    """

    lang: str = "zh"
    attributes: str | None = None
    inherited: bool = False


_ALL_SCOPE: Final = {"zh": "全市（全部研究范围）", "en": "whole study area"}


@dataclass(frozen=True)
class Indicator:
    """One plan indicator: its labels, target and how it is measured.

    Attributes
    ----------
    id : str
    label_zh, label_en : str
    target_zh, target_en : str
        Target as the plan states it.
    categories : tuple of str
        Candidate categories, first present wins (e.g. ``elderly_day_care`` of the
        ``china_life_circle`` profile, else ``elderly_care`` of the default profile).
    """

    id: str
    label_zh: str
    label_en: str
    target_zh: str
    target_en: str
    categories: tuple[str, ...] = ()


INDICATORS: Final = (
    Indicator(
        "elderly_canteen_urban",
        "城市社区15分钟内有老年幸福食堂",
        "Urban communities with an elderly canteen (老年幸福食堂) within 15 minutes",
        "全覆盖",
        "all",
        ("elderly_canteen",),
    ),
    Indicator(
        "elderly_meal_point_rural",
        "村15分钟内有老年幸福餐桌",
        "Villages with an elderly meal point (老年幸福餐桌) within 15 minutes",
        "报告",
        "reported",
        ("elderly_canteen",),
    ),
    Indicator(
        "day_care_coverage",
        "社区日间照料机构覆盖率",
        "Communities covered by elderly day care (within 15 minutes)",
        "≥ 90%",
        ">= 90%",
        ("elderly_day_care", "elderly_care"),
    ),
    Indicator(
        "elderly_institution_per_subdistrict",
        "每个街道至少有1个综合养老服务机构",
        "Every sub-district (街道) has at least one comprehensive elderly service institution",
        "是",
        "yes",
        ("elderly_service_centre", "elderly_care"),
    ),
    Indicator(
        "fitness_circle",
        "15分钟健身圈覆盖的村和社区",
        "Villages and communities inside the 15-minute fitness circle",
        "100%",
        "100%",
        ("fitness",),
    ),
    Indicator(
        "emergency_shelter",
        "15分钟内有应急避难场所的社区",
        "Communities within 15 minutes of an emergency shelter",
        "报告",
        "reported",
        ("shelter",),
    ),
    Indicator(
        "service_facility_coverage_urban",
        "城市社区综合服务设施覆盖率",
        "Urban comprehensive service facility coverage",
        "100%",
        "100%",
        (SERVICE_CATEGORY,),
    ),
    Indicator(
        "service_facility_coverage_rural",
        "农村社区综合服务设施覆盖率",
        "Rural comprehensive service facility coverage",
        "100%",
        "100%",
        (SERVICE_CATEGORY,),
    ),
    Indicator(
        "service_area_per_100_households",
        "每百户居民拥有社区综合服务设施面积",
        "Comprehensive service facility area per 100 households",
        "≥ 30 m²",
        ">= 30 m2",
    ),
    Indicator(
        "activity_area_share",
        "居民活动区域面积占比",
        "Resident activity area share of the service facility area",
        "≥ 60%",
        ">= 60%",
    ),
    Indicator(
        "workers_per_10000_urban",
        "每万名城镇常住人口拥有社区工作者",
        "Community workers per 10,000 urban residents",
        "18人",
        "18",
    ),
)


# --------------------------------------------------------------------------- helpers


@dataclass
class _Ctx:
    table: pd.DataFrame
    facilities: gpd.GeoDataFrame | None
    fac_comm: np.ndarray | None  # community position of each facility (-1 outside)
    categories: tuple[str, ...]
    threshold: float
    level: str
    lang: str


@dataclass
class _Row:
    measured: str
    value: float
    met: str
    basis: str


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _no_data(why: str) -> _Row:
    return _Row(NO_DATA, float("nan"), NO_DATA, why)


def _pick_category(ctx: _Ctx, ind: Indicator) -> str | None:
    for c in ind.categories:
        if c in ctx.categories and f"{c}_share_{ctx.level}" in ctx.table:
            return c
    return None


def _fac_note(ctx: _Ctx, cat: str) -> str:
    if ctx.facilities is None or "category" not in ctx.facilities:
        return ""
    f = ctx.facilities
    n = int((f["category"] == cat).sum())
    if "status" in f:
        ok = int(((f["category"] == cat) & (f["status"] == "snapped")).sum())
        return f"; {ok} of {n} '{cat}' facilities on the network"
    return f"; {n} '{cat}' facilities"


def _reach(ctx: _Ctx, ind: Indicator, mask: np.ndarray, who: str, target: float | None) -> _Row:
    cat = _pick_category(ctx, ind)
    if cat is None:
        return _no_data(
            f"no 15-minute coverage of {' or '.join(ind.categories)} in the table (category "
            "not in the profile or not computed)"
        )
    share = ctx.table[f"{cat}_share_{ctx.level}"].to_numpy(float)
    sel = mask & ~np.isnan(share)
    n = int(sel.sum())
    skipped = int((mask & np.isnan(share)).sum())
    if n == 0:
        return _no_data(f"no {who} with residents in this scope")
    k = int((share[sel] >= ctx.threshold).sum())
    value = k / n
    met = "reported" if target is None else ("yes" if value >= target - 1e-12 else "no")
    res_basis = (
        str(ctx.table["residents_basis"].iloc[0]) if "residents_basis" in ctx.table else "residents"
    )
    basis = (
        f"{who} with >= {_pct(ctx.threshold)} of residents within {ctx.level} min of "
        f"'{cat}' (residents: {res_basis}){_fac_note(ctx, cat)}"
        + (f"; {skipped} without residents not counted" if skipped else "")
    )
    return _Row(f"{k} / {n} ({_pct(value)})", value, met, basis)


def _kind_mask(ctx: _Ctx, kind: str) -> np.ndarray | None:
    if "kind" not in ctx.table:
        return None
    return (ctx.table["kind"].astype(str).str.lower() == kind).to_numpy()


def _community_values(ctx: _Ctx, col: str) -> tuple[np.ndarray | None, str]:
    """Values of a community attribute, or summed facility attributes, with their source."""
    if col in ctx.table:
        return pd.to_numeric(ctx.table[col], errors="coerce").to_numpy(float), f"'{col}' column"
    fcol = FACILITY_COLUMNS.get(col)
    f = ctx.facilities
    if fcol is None or f is None or fcol not in f or ctx.fac_comm is None:
        return None, f"'{col}' column" + (f" or facility '{fcol}'" if fcol else "")
    sel = (f["category"] == SERVICE_CATEGORY).to_numpy() & (ctx.fac_comm >= 0)
    vals = pd.to_numeric(f[fcol], errors="coerce").to_numpy(float)
    sel &= ~np.isnan(vals)
    if not sel.any():
        return None, f"'{col}' column or facility '{fcol}'"
    out = np.full(len(ctx.table), np.nan)
    sums = np.bincount(ctx.fac_comm[sel], weights=vals[sel], minlength=len(ctx.table))
    has = np.bincount(ctx.fac_comm[sel], minlength=len(ctx.table)) > 0
    out[has] = sums[has]
    return out, f"facility '{fcol}' of '{SERVICE_CATEGORY}' summed per community"


# --------------------------------------------------------------------------- indicators


def _i_canteen_urban(ctx: _Ctx, ind: Indicator) -> _Row:
    m = _kind_mask(ctx, "urban")
    if m is None:
        return _no_data("community table has no 'kind' column (urban / rural)")
    return _reach(ctx, ind, m, "urban communities", 1.0)


def _i_meal_rural(ctx: _Ctx, ind: Indicator) -> _Row:
    m = _kind_mask(ctx, "rural")
    if m is None:
        return _no_data("community table has no 'kind' column (urban / rural)")
    return _reach(ctx, ind, m, "villages", None)


def _i_all(target: float | None) -> Callable[[_Ctx, Indicator], _Row]:
    def f(ctx: _Ctx, ind: Indicator) -> _Row:
        return _reach(ctx, ind, np.ones(len(ctx.table), bool), "communities", target)

    return f


def _i_institution(ctx: _Ctx, ind: Indicator) -> _Row:
    if "street" not in ctx.table:
        return _no_data("community table has no 'street' column (乡镇/街道)")
    if ctx.facilities is None or ctx.fac_comm is None:
        return _no_data("no facility table (locations of elderly service institutions)")
    cat = next((c for c in ind.categories if c in ctx.categories), None)
    if cat is None:
        return _no_data(f"category {' or '.join(ind.categories)} not in the profile")
    street = ctx.table["street"].astype(str).to_numpy()
    names = sorted(set(street) - {"", "nan", "None"})
    subdistricts = [s for s in names if s.endswith("街道")]
    which = "sub-districts (街道)"
    if not subdistricts:
        subdistricts, which = names, "streets (no name ends in 街道: all counted)"
    if not subdistricts:
        return _no_data("no street names in this scope")
    f = ctx.facilities
    sel = (f["category"] == cat).to_numpy() & (ctx.fac_comm >= 0)
    with_one = set(street[ctx.fac_comm[sel]])
    k = sum(s in with_one for s in subdistricts)
    n = len(subdistricts)
    missing = [s for s in subdistricts if s not in with_one]
    basis = f"{which} with at least one '{cat}' facility inside their communities" + (
        f"; without: {', '.join(missing[:10])}" if missing else ""
    )
    return _Row(f"{k} / {n}", k / n, "yes" if k == n else "no", basis)


def _i_service_coverage(kind: str) -> Callable[[_Ctx, Indicator], _Row]:
    def f(ctx: _Ctx, ind: Indicator) -> _Row:
        m = _kind_mask(ctx, kind)
        who = "urban communities" if kind == "urban" else "villages"
        if m is None:
            return _no_data("community table has no 'kind' column (urban / rural)")
        n = int(m.sum())
        if n == 0:
            return _no_data(f"no {who} in this scope")
        if "service_area_m2" in ctx.table:
            area = pd.to_numeric(ctx.table["service_area_m2"], errors="coerce").to_numpy(float)
            known = m & ~np.isnan(area)
            if not known.any():
                return _no_data(f"'service_area_m2' empty for all {who}")
            k = int((area[known] > 0).sum())
            nk = int(known.sum())
            basis = f"{who} with service_area_m2 > 0 ('service_area_m2' column)" + (
                f"; {n - nk} without a value not counted" if nk < n else ""
            )
            return _Row(f"{k} / {nk} ({_pct(k / nk)})", k / nk, "yes" if k == nk else "no", basis)
        if ctx.facilities is None or ctx.fac_comm is None or SERVICE_CATEGORY not in ctx.categories:
            return _no_data(f"no 'service_area_m2' column and no '{SERVICE_CATEGORY}' facilities")
        sel = (ctx.facilities["category"] == SERVICE_CATEGORY).to_numpy() & (ctx.fac_comm >= 0)
        has = np.bincount(ctx.fac_comm[sel], minlength=len(ctx.table)) > 0
        k = int((has & m).sum())
        basis = (
            f"{who} with a '{SERVICE_CATEGORY}' facility inside their polygon"
            f"{_fac_note(ctx, SERVICE_CATEGORY)}"
        )
        return _Row(f"{k} / {n} ({_pct(k / n)})", k / n, "yes" if k == n else "no", basis)

    return f


def _i_area_per_100(ctx: _Ctx, ind: Indicator) -> _Row:
    area, src = _community_values(ctx, "service_area_m2")
    if area is None:
        return _no_data(f"no {src}")
    if "households" not in ctx.table:
        return _no_data("community table has no 'households' column")
    hh = pd.to_numeric(ctx.table["households"], errors="coerce").to_numpy(float)
    ok = ~np.isnan(area) & ~np.isnan(hh) & (hh > 0)
    if not ok.any():
        return _no_data("no community with both households and service area")
    per = area[ok] / hh[ok] * 100.0
    k = int((per >= 30.0).sum())
    n = int(ok.sum())
    overall = float(area[ok].sum() / hh[ok].sum() * 100.0)
    basis = f"{src} and 'households'; {len(ctx.table) - n} communities without both not counted"
    return _Row(
        f"{k} / {n} communities >= 30 m²; overall {overall:.1f} m² per 100 households",
        overall,
        "yes" if k == n else "no",
        basis,
    )


def _i_activity_share(ctx: _Ctx, ind: Indicator) -> _Row:
    area, src = _community_values(ctx, "service_area_m2")
    act, src2 = _community_values(ctx, "activity_area_m2")
    if area is None or act is None:
        return _no_data(f"no {src if area is None else src2}")
    ok = ~np.isnan(area) & ~np.isnan(act) & (area > 0)
    if not ok.any():
        return _no_data("no community with both service and activity area")
    share = act[ok] / area[ok]
    k = int((share >= 0.6 - 1e-12).sum())
    n = int(ok.sum())
    overall = float(act[ok].sum() / area[ok].sum())
    basis = f"{src2} / {src}; {len(ctx.table) - n} communities without both not counted"
    return _Row(
        f"{k} / {n} communities >= 60%; overall {_pct(overall)}",
        overall,
        "yes" if k == n else "no",
        basis,
    )


def _i_workers(ctx: _Ctx, ind: Indicator) -> _Row:
    m = _kind_mask(ctx, "urban")
    if m is None:
        return _no_data("community table has no 'kind' column (urban / rural)")
    workers, src = _community_values(ctx, "community_workers")
    if workers is None:
        return _no_data(f"no {src}")
    if "population" not in ctx.table:
        return _no_data("community table has no 'population' column")
    pop = pd.to_numeric(ctx.table["population"], errors="coerce").to_numpy(float)
    ok = m & ~np.isnan(workers) & ~np.isnan(pop)
    if not ok.any() or pop[ok].sum() <= 0:
        return _no_data("no urban community with both workers and population")
    value = float(workers[ok].sum() / pop[ok].sum() * 10_000.0)
    basis = (
        f"{src} and 'population' of urban communities; {int(m.sum() - ok.sum())} urban "
        "communities without both not counted"
    )
    return _Row(f"{value:.1f}", value, "yes" if value >= 18.0 else "no", basis)


_MEASURES: Final[dict[str, Callable[[_Ctx, Indicator], _Row]]] = {
    "elderly_canteen_urban": _i_canteen_urban,
    "elderly_meal_point_rural": _i_meal_rural,
    "day_care_coverage": _i_all(0.9),
    "elderly_institution_per_subdistrict": _i_institution,
    "fitness_circle": _i_all(1.0),
    "emergency_shelter": _i_all(None),
    "service_facility_coverage_urban": _i_service_coverage("urban"),
    "service_facility_coverage_rural": _i_service_coverage("rural"),
    "service_area_per_100_households": _i_area_per_100,
    "activity_area_share": _i_activity_share,
    "workers_per_10000_urban": _i_workers,
}


def _facility_communities(
    communities: gpd.GeoDataFrame, facilities: gpd.GeoDataFrame
) -> np.ndarray:
    """Community position of each facility's point (-1 outside every community)."""
    import shapely

    out = np.full(len(facilities), -1, dtype=np.int64)
    if len(facilities) == 0 or len(communities) == 0:
        return out
    polys = np.asarray(communities.to_crs("EPSG:4326").geometry.to_numpy())
    geoms = facilities.to_crs("EPSG:4326").geometry
    pts = np.asarray(geoms.representative_point().to_numpy())
    valid = ~(shapely.is_missing(pts) | shapely.is_empty(pts))
    fi, ci = shapely.STRtree(polys).query(pts[valid], predicate="within")
    rows = np.flatnonzero(valid)[fi]
    order = np.lexsort((ci, rows))
    rows, ci = rows[order], ci[order]
    first = np.ones(rows.size, bool)
    first[1:] = rows[1:] != rows[:-1]
    out[rows[first]] = ci[first]
    return out


def _lev(level: float) -> str:
    return str(int(level)) if float(level).is_integer() else str(level)


def indicator_table(
    communities: pd.DataFrame,
    facilities: gpd.GeoDataFrame | None = None,
    *,
    categories: Sequence[str] | None = None,
    threshold: float = FLAG_THRESHOLD_SHARE,
    level_minutes: float = 15,
    lang: str = "zh",
) -> pd.DataFrame:
    """Measure the Yuxi plan indicators per county and for the whole table.

    Parameters
    ----------
    communities : pandas.DataFrame or geopandas.GeoDataFrame
        A coverage table (:func:`circles.coverage.coverage_table`) with the attribute
        columns of :data:`COMMUNITY_COLUMNS` that are available. A geometry is needed for
        indicators that place facilities in communities.
    facilities : geopandas.GeoDataFrame, optional
        Facilities with ``category`` (and ``status``, planner attribute columns).
    categories : sequence of str, optional
        Categories that were actually computed (default: every ``<c>_share_<level>``
        column). Pass :attr:`StudyResult.categories` so that always-flagged categories
        without facility data show as "no data".
    threshold : float, default 0.8
        Share of residents within the level for a community to count as reached.
    level_minutes : float, default 15
    lang : {"zh", "en"}
        Language of ``indicator``, ``target`` and ``scope`` labels.

    Returns
    -------
    pandas.DataFrame
        One row per scope and indicator: ``scope``, ``indicator_id``, ``indicator``,
        ``target``, ``measured``, ``value``, ``met``, ``met_label``, ``basis``.
    """
    if lang not in _MET_WORDS:
        raise ConfigError(f"lang must be 'zh' or 'en'; got {lang!r}")
    if not isinstance(communities, pd.DataFrame):
        raise InputDataError(
            "indicator_table() needs the community coverage table; got "
            f"{type(communities).__name__}"
        )
    if isinstance(threshold, bool) or not 0 <= float(threshold) <= 1:
        raise ConfigError(f"threshold must be a share between 0 and 1; got {threshold!r}")
    level = _lev(level_minutes)
    if categories is None:
        suffix = f"_share_{level}"
        categories = [c[: -len(suffix)] for c in communities.columns if str(c).endswith(suffix)]
    table = communities.reset_index(drop=True)
    fac_comm = None
    if facilities is not None:
        if not isinstance(facilities, gpd.GeoDataFrame) or "category" not in facilities:
            raise InputDataError("facilities must be a GeoDataFrame with a 'category' column")
        if isinstance(table, gpd.GeoDataFrame) and table.crs is not None:
            fac_comm = _facility_communities(table, facilities)
        else:
            logger.warning("community table has no geometry: facilities cannot be placed")
    scopes: list[tuple[str, np.ndarray]] = []
    if "county" in table:
        county = table["county"].astype(str)
        for name in dict.fromkeys(county.tolist()):
            scopes.append((name, (county == name).to_numpy()))
    scopes.append((_ALL_SCOPE[lang], np.ones(len(table), bool)))
    rows = []
    for scope, mask in scopes:
        idx = np.flatnonzero(mask)
        sub = table.iloc[idx].reset_index(drop=True)
        sub_fac = facilities
        sub_comm = None
        if fac_comm is not None and facilities is not None:
            remap = np.full(len(table), -1, dtype=np.int64)
            remap[idx] = np.arange(idx.size)
            sub_comm = np.where(fac_comm >= 0, remap[np.maximum(fac_comm, 0)], -1)
        ctx = _Ctx(sub, sub_fac, sub_comm, tuple(categories), float(threshold), level, lang)
        for ind in INDICATORS:
            r = _MEASURES[ind.id](ctx, ind)
            rows.append(
                {
                    "scope": scope,
                    "indicator_id": ind.id,
                    "indicator": ind.label_zh if lang == "zh" else ind.label_en,
                    "target": ind.target_zh if lang == "zh" else ind.target_en,
                    "measured": r.measured,
                    "value": r.value,
                    "met": r.met,
                    "met_label": _MET_WORDS[lang][r.met],
                    "basis": r.basis,
                }
            )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- writing


_CSS: Final = """
body{font-family:system-ui,"Noto Sans CJK SC","Microsoft YaHei",sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.9em}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f0f0f0}.yes{background:#e3f4e1}.no{background:#fbe3e1}
.nodata{background:#eee;color:#666}.reported{background:#eef3fb}.note{color:#555;font-size:0.9em}
"""


def _html_table(df: pd.DataFrame, *, row_class: Sequence[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = []
    for i, row in enumerate(df.itertuples(index=False)):
        cls = f' class="{html.escape(row_class[i])}"' if row_class is not None else ""
        cells = "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row)
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool | np.bool_):
        return str(bool(v))
    if isinstance(v, float):
        if np.isnan(v):
            return ""
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def _html_page(
    title: str,
    indicators: pd.DataFrame,
    checklist: pd.DataFrame | None,
    notes: Sequence[str],
    lang: str,
    *,
    summary: pd.DataFrame | None = None,
    robustness: tuple[pd.DataFrame, pd.DataFrame] | None = None,
    ledger: pd.DataFrame | None = None,
) -> str:
    t = {
        "zh": (
            "指标",
            "范围",
            "生活圈清单（每个社区）",
            "说明",
            "分区县汇总",
            "步行速度稳健性（各步速下判定是否一致）",
            "不稳健的判定（在步速区间内翻转）",
            "问题台账",
        ),
        "en": (
            "Indicators",
            "Scope",
            "Life-circle checklist (per community)",
            "Notes",
            "Summary",
            "Walking-speed robustness (is the flag the same at every speed of the band)",
            "Fragile flags (they flip within the speed band)",
            "Problem ledger",
        ),
    }[lang]
    cls_map = {"yes": "yes", "no": "no", "reported": "reported", NO_DATA: "nodata"}
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="{"zh-CN" if lang == "zh" else "en"}"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<h2>{t[0]}</h2>",
    ]
    cols = ["indicator", "target", "measured", "met_label", "basis"]
    colon = "：" if lang == "zh" else ": "
    for scope, grp in indicators.groupby("scope", sort=False):
        parts.append(f"<h3>{t[1]}{colon}{html.escape(str(scope))}</h3>")
        shown = tables.localise(grp[cols], lang)[0] if lang == "zh" else grp[cols]
        shown.columns = [tables.COLUMNS[c][0 if lang == "zh" else 1] for c in cols]
        parts.append(_html_table(shown, row_class=[cls_map[m] for m in grp["met"]]))
    if summary is not None and len(summary):
        parts.append(f"<h2>{t[4]}</h2>")
        parts.append(_html_table(summary))
    if robustness is not None:
        parts.append(f"<h2>{html.escape(t[5])}</h2>")
        parts.append(_html_table(robustness[0]))
        if len(robustness[1]):
            parts.append(f"<h3>{html.escape(t[6])}</h3>")
            parts.append(_html_table(robustness[1]))
    if ledger is not None and len(ledger):
        parts.append(f"<h2>{t[7]}</h2>")
        parts.append(_html_table(ledger))
    if checklist is not None and len(checklist):
        parts.append(f"<h2>{html.escape(t[2])}</h2>")
        parts.append(_html_table(checklist))
    if notes:
        parts.append(f"<h2>{t[3]}</h2><ul class='note'>")
        parts.extend(f"<li>{html.escape(n)}</li>" for n in notes)
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _join_attributes(table: pd.DataFrame, attributes: pd.DataFrame | None) -> pd.DataFrame:
    if attributes is None:
        return table
    if not isinstance(attributes, pd.DataFrame) or "community_id" not in attributes:
        raise InputDataError("attributes must be a DataFrame with a 'community_id' column")
    att = attributes.copy()
    att["community_id"] = att["community_id"].astype(str)
    if att["community_id"].duplicated().any():
        raise InputDataError("attributes: duplicate community_id values")
    att = att.drop(columns=[c for c in ("name", "geometry") if c in att])
    out = table.copy()
    key = out["community_id"].astype(str)
    unknown = int((~att["community_id"].isin(key)).sum())
    if unknown:
        logger.warning("%d attribute rows match no community_id of the table", unknown)
    merged = pd.DataFrame({"community_id": key}).merge(att, on="community_id", how="left")
    for c in att.columns:
        if c == "community_id":
            continue
        if c in out:
            logger.info("attribute column %r replaces the table's column", c)
        out[c] = merged[c].to_numpy()
    return out


def write_report(
    result_or_tables: Any,
    out_dir: str | os.PathLike[str],
    *,
    lang: str = "zh",
    attributes: pd.DataFrame | None = None,
    profile: Any = None,
    threshold: float | None = None,
    title: str | None = None,
) -> dict[str, Path]:
    """Write the indicator report (CSV, XLSX, HTML) and the life-circle checklist.

    Parameters
    ----------
    result_or_tables : StudyResult or mapping
        A :class:`circles.pipeline.StudyResult`, or a mapping with ``"communities"``
        (the coverage table, required), ``"facilities"`` and ``"categories"`` (optional).
    out_dir : path-like
        Folder of the outputs (created).
    lang : {"zh", "en"}, default "zh"
    attributes : pandas.DataFrame, optional
        Community attributes joined on ``community_id`` (columns of
        :data:`COMMUNITY_COLUMNS`), e.g. :func:`circles.yuxi.community_attributes` or the
        bureau's table.
    profile : Profile, optional
        Profile whose ``[[checklist]]`` is evaluated (default: the study's profile when a
        StudyResult is given); no checklist is written when it has none.
    threshold : float, optional
        Reach threshold (default: the study's flag threshold, else 0.8).
    title : str, optional
        HTML page title.

    Returns
    -------
    dict
        ``{"indicators_csv", "indicators_xlsx", "report_html"[, "checklist_csv",
        "checklist_items_csv"][, "robustness_csv", "fragile_csv"]}`` -> path (the
        robustness tables where the table has ``<cat>_robust`` columns).
    """
    from circles.categories import Profile, load_profile
    from circles.checklist import checklist_from_result, evaluate_checklist
    from circles.result import StudyResult

    if lang not in _MET_WORDS:
        raise ConfigError(f"lang must be 'zh' or 'en'; got {lang!r}")
    notes: list[str] = []
    if isinstance(result_or_tables, StudyResult):
        res = result_or_tables
        table = res.communities
        facilities: gpd.GeoDataFrame | None = res.facilities
        categories: Sequence[str] | None = res.categories
        thr = res.config.coverage.flag_threshold if threshold is None else threshold
        prof = load_profile(res.config.facilities.profile) if profile is None else profile
        name = res.config.study.name
        notes.append(f"residents: {res.summary.get('residents_basis', '')}")
        notes.append(f"walking speed: {res.config.walk.resolved_speed_m_s} m/s")
    elif isinstance(result_or_tables, Mapping):
        if "communities" not in result_or_tables:
            raise InputDataError("write_report(): the mapping needs a 'communities' table")
        res = None
        table = result_or_tables["communities"]
        facilities = result_or_tables.get("facilities")
        categories = result_or_tables.get("categories")
        thr = FLAG_THRESHOLD_SHARE if threshold is None else threshold
        prof = profile
        name = str(result_or_tables.get("name", "study"))
    else:
        raise InputDataError(
            "write_report() needs a StudyResult or a mapping with a 'communities' table; got "
            f"{type(result_or_tables).__name__}"
        )
    if prof is not None and not isinstance(prof, Profile):
        prof = load_profile(prof)
    table = _join_attributes(table, attributes)
    if "derived" in table and len(table):
        derived = sorted(set(table["derived"].astype(str)))
        notes.append("communities: " + ", ".join(derived))
    notes.append(
        f"a community counts as reached when >= {_pct(float(thr))} of its residents are "
        "within 15 minutes (the coverage flag threshold)"
    )
    ind = indicator_table(table, facilities, categories=categories, threshold=float(thr), lang=lang)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if categories is None:
        categories = [c[: -len("_share_15")] for c in table.columns if str(c).endswith("_share_15")]
    labels = {
        c: (res.labels.get(c, {}).get(lang) if res is not None else None) or c for c in categories
    }
    sheets: dict[str, pd.DataFrame] = {}
    layouts: dict[str, tables.SheetLayout] = {}
    paths: dict[str, Path] = {}

    def add(
        key: str,
        df: pd.DataFrame,
        csv_name: str | None,
        *,
        cats: Mapping[str, str] | None = None,
        items: Mapping[str, str] | None = None,
    ) -> None:
        shown, layout = tables.localise(df, lang, labels=cats, items=items)
        if lang == "zh" and "basis" in df:  # category ids named by their Chinese labels
            col = tables.COLUMNS["basis"][0]
            for c in sorted(labels, key=len, reverse=True):
                shown[col] = shown[col].str.replace(f"'{c}'", f"“{labels[c]}”", regex=False)
        name = tables.sheet_name(key, lang)
        sheets[name], layouts[name] = shown, layout
        if csv_name is not None:  # English CSVs keep the column ids scripts read
            csv = tables.csv_values(shown, layout) if lang == "zh" else df
            paths[f"{key}_csv"] = io.write_csv_atomic(csv, out / csv_name)

    add("indicators", ind, "indicators.csv")
    chk = None
    chk_view = None
    if prof is not None and prof.checklist:
        if res is not None and attributes is None:
            chk = checklist_from_result(res, profile=prof, threshold=float(thr))
        elif res is not None:
            base = checklist_from_result(res, profile=prof, threshold=float(thr))
            chk = type(base)(
                communities=_join_attributes(base.communities, attributes),
                items=base.items,
                threshold=base.threshold,
                profile=base.profile,
            )
        else:
            chk = evaluate_checklist(pd.DataFrame(table), prof, threshold=float(thr))
        miss = "missing_zh" if lang == "zh" else "missing_en"
        cols = ["community_id", "name", "completeness", miss]
        cols[2:2] = [c for c in ("county", "street", "kind") if c in chk.communities]
        chk_view = chk.communities[cols]
        notes.append(
            f"checklist: profile '{prof.name}', {len(prof.checklist)} items; completeness = "
            "share of items met within their own level"
        )
    ledger = tables.problem_ledger(
        res,
        table=table,
        checklist=chk.communities if chk is not None else None,
        lang=lang,
        threshold=float(thr),
    )
    add("ledger", ledger, "problem_ledger.csv", cats=labels)
    fac_comm = None
    if facilities is not None and isinstance(table, gpd.GeoDataFrame) and table.crs is not None:
        fac_comm = _facility_communities(table, facilities)
    summary = tables.area_summary(
        table,
        [c for c in categories if f"{c}_share_15" in table],
        facility_community=fac_comm,
        facilities=facilities,
        whole=_ALL_SCOPE[lang],
        threshold=float(thr),
    )
    add("summary", summary, "summary_by_area.csv", cats=labels)
    doc = res.summary.get("robustness") if res is not None else None
    bands = {c: d["band_m_s"] for c, d in doc["categories"].items()} if doc else None
    rob = tables.robustness_tables(table, list(categories), bands=bands)
    if rob is not None:
        add("robustness", rob[0], "robustness.csv", cats=labels)
        add("fragile", rob[1], "fragile_flags.csv", cats=labels)
    if chk is not None:
        assert prof is not None
        cat_labels = {c.id: c.label_zh if lang == "zh" else c.label_en for c in prof.categories}
        item_labels = {it.id: it.label_zh if lang == "zh" else it.label_en for it in prof.checklist}
        # a Chinese report keeps the Chinese texts only (the English ones are in the "en" one)
        english = ["missing_en", "label_en"] if lang == "zh" else []
        add(
            "checklist",
            chk.communities.drop(columns=english, errors="ignore"),
            None,
            items=item_labels,
        )
        add(
            "checklist_items",
            chk.items.drop(columns=english, errors="ignore"),
            None,
            cats=cat_labels,
        )
        for key, csv_name, raw in (
            ("checklist", "checklist.csv", chk.communities),
            ("checklist_items", "checklist_items.csv", chk.items),
        ):
            sheet = tables.sheet_name(key, lang)
            paths[f"{key}_csv"] = io.write_csv_atomic(
                tables.csv_values(sheets[sheet], layouts[sheet]) if lang == "zh" else raw,
                out / csv_name,
            )
    paths["indicators_xlsx"] = write_xlsx_atomic(sheets, out / "indicators.xlsx", layouts=layouts)
    page_title = title or (
        f"{name}：玉溪市十四五城乡社区服务体系建设规划指标"
        if lang == "zh"
        else f"{name}: Yuxi community service plan indicators"
    )
    if lang == "zh":
        notes = [tables.note_zh(n) for n in notes]
    shown_ind = ind.copy()
    if lang == "zh":
        for c in ("measured", "basis", "met_label"):
            shown_ind[c] = shown_ind[c].map(tables.text_zh)
        for c in sorted(labels, key=len, reverse=True):
            shown_ind["basis"] = shown_ind["basis"].str.replace(
                f"'{c}'", f"“{labels[c]}”", regex=False
            )
    summary_view = tables.formatted(*tables.localise(summary, lang, labels=labels))
    ledger_view = tables.formatted(*tables.localise(ledger, lang, labels=labels))
    paths["report_html"] = io.write_atomic_text(
        out / "report.html",
        _html_page(
            page_title,
            shown_ind,
            tables.formatted(*tables.localise(chk_view, lang)) if chk_view is not None else None,
            notes,
            lang,
            summary=summary_view,
            robustness=None
            if rob is None
            else (
                tables.formatted(*tables.localise(rob[0], lang, labels=labels)),
                tables.formatted(*tables.localise(rob[1], lang, labels=labels)),
            ),
            ledger=ledger_view,
        ),
    )
    return paths
