"""The report's tables in the bureau's language: headers, units, formats, the ledger.

:mod:`circles.report` measures the indicators; this module turns its tables into what a
Chinese planning office files:

- :func:`localise`: every header in Chinese with its unit (``15分钟覆盖率（%）``), every
  value circles wrote in English in Chinese (:func:`text_zh`: the indicators' measured
  values and what they rest on, "no data", "yes"/"no", residents bases), plus a
  :class:`SheetLayout` for the XLSX writer: number formats (percentages, minutes,
  metres), column widths that fit, a frozen header and a hidden second header row of
  the English column ids (for scripts: ``pd.read_excel(path, header=1)``);
- :func:`problem_ledger`: the 城市体检 problem ledger (问题台账), one row per community
  and category: county, township/street, community, urban or rural, category, 15-minute
  share, median and 90th-percentile minutes, the nearest facility by walking distance
  from the community's centre and that distance, the flag and the life-circle
  checklist items it misses;
- :func:`area_summary`: per county and for the whole city, per category: communities,
  flagged communities, the share of communities reached and of residents within 15
  minutes;
- :func:`robustness_tables`: per category, how many flags are robust or fragile over
  the walking-speed band, and the fragile communities with the speed at which their
  flag flips;
- :func:`analysis_columns`: the per-category robustness, choice and equity columns of
  the communities table in long form (for ``coverage.csv``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from circles import io
from circles.result import finite_or_nan, level_key
from circles.vocabulary import value_zh

if TYPE_CHECKING:
    from circles.result import StudyResult

__all__ = [
    "COLUMNS",
    "SheetLayout",
    "analysis_columns",
    "area_summary",
    "column_header",
    "csv_values",
    "formatted",
    "localise",
    "note_zh",
    "problem_ledger",
    "robustness_tables",
    "text_zh",
    "write_laid_out",
    "write_xlsx_atomic",
]

#: Number formats (Excel) by kind of value.
FORMATS = {
    "pct": "0.0%",
    "min": "0.0",
    "m": "#,##0",
    "int": "0",
    "num": "0.0",
    "speed": "0.00",
}

#: Column id -> (Chinese header, English header, format kind or None).
COLUMNS: dict[str, tuple[str, str, str | None]] = {
    # indicators
    "scope": ("范围", "scope", None),
    "indicator_id": ("指标编号", "indicator id", None),
    "indicator": ("指标", "indicator", None),
    "target": ("目标值", "target", None),
    "measured": ("实测", "measured", None),
    "value": ("数值", "value", "num"),
    "met": ("达标（代码）", "met (code)", None),
    "met_label": ("是否达标", "met", None),
    "basis": ("计算依据", "basis", None),
    # communities, checklist, ledger
    "community_id": ("社区编号", "community id", None),
    "name": ("社区（村）", "community", None),
    "county": ("区县", "county", None),
    "street": ("乡镇（街道）", "township / sub-district", None),
    "kind": ("城乡类型", "urban or rural", None),
    "category": ("设施类别", "category", None),
    "category_id": ("类别编号", "category id", None),
    "share_15": ("15分钟可达居民比例（%）", "residents within 15 min (%)", "pct"),
    "median_min": ("步行时间中位数（分钟）", "median walk (min)", "min"),
    "p90_min": ("步行时间90分位（分钟）", "90th percentile walk (min)", "min"),
    "nearest": ("最近设施（社区中心步行）", "nearest facility (walk from the centre)", None),
    "nearest_m": ("最近设施步行距离（米）", "walk to the nearest facility (m)", "m"),
    "flag": ("是否未达标", "flagged", None),
    "missing": ("生活圈清单缺项", "life-circle items missing", None),
    "residents": ("居民数", "residents", "num"),
    "residents_basis": ("居民计算依据", "residents basis", None),
    "completeness": ("清单完整度（%）", "checklist completeness (%)", "pct"),
    "completeness_5": ("5分钟清单完整度（%）", "5-minute completeness (%)", "pct"),
    "completeness_10": ("10分钟清单完整度（%）", "10-minute completeness (%)", "pct"),
    "completeness_15": ("15分钟清单完整度（%）", "15-minute completeness (%)", "pct"),
    "missing_zh": ("缺项", "items missing (Chinese)", None),
    "missing_en": ("缺项（英文）", "items missing", None),
    # summary
    "communities": ("社区数", "communities", "int"),
    "flagged": ("未达标社区数", "flagged communities", "int"),
    "reached_share": ("达标社区比例（%）", "communities reached (%)", "pct"),
    "residents_share_15": ("15分钟可达居民比例（%）", "residents within 15 min (%)", "pct"),
    "facilities": ("设施数（接入步行网络）", "facilities on the network", "int"),
    # walking-speed robustness
    "band_m_s": ("步行速度区间（米/秒）", "walking-speed band (m/s)", None),
    "robust_flagged": ("稳健未达标社区数", "robustly flagged", "int"),
    "robust_not_flagged": ("稳健达标社区数", "robustly not flagged", "int"),
    "fragile": ("不稳健判定数（随步速翻转）", "fragile (flips within the band)", "int"),
    "flip_m_s": ("判定翻转步速（米/秒）", "flips at (m/s)", "speed"),
    # life-circle checklist (circles.checklist)
    "derived": ("社区边界来源", "community boundaries from", None),
    "items_total": ("清单项目数", "checklist items", "int"),
    "items_met": ("满足项目数", "items met", "int"),
    "items_no_data": ("无数据项目数", "items without data", "int"),
    "item": ("项目编号", "item id", None),
    "label_zh": ("项目", "item (Chinese)", None),
    "label_en": ("项目（英文）", "item", None),
    "level_minutes": ("所属层级（分钟）", "level (min)", "int"),
    "categories": ("设施类别", "categories", None),
    "provision": ("配建要求", "provision", None),
    "status": ("来源核实状态", "source checked", None),
    "source": ("依据", "source", None),
    "share_basis": ("比例计算方式", "share basis", None),
    "met_at_level": ("本层级内是否满足", "met within its level", None),
    "met_level": ("满足的最小层级（分钟）", "smallest level met (min)", "min"),
    "threshold": ("达标阈值（%）", "threshold (%)", "pct"),
}

#: Generated column ids: pattern -> (Chinese, English, format kind); ``{L}`` the level,
#: ``{item}`` the checklist item's label.
_PATTERN_COLUMNS: tuple[tuple[re.Pattern[str], tuple[str, str, str | None]], ...] = (
    (re.compile(r"share_(?P<L>[\d.]+)"), ("{L}分钟可达居民比例（%）", "within {L} min (%)", "pct")),
    (re.compile(r"met_(?P<L>[\d.]+)"), ("{L}分钟内是否满足", "met within {L} min", None)),
    (
        re.compile(r"(?P<item>\w+)_met_level"),
        ("{item}：满足的最小层级（分钟）", "{item}: smallest level met (min)", "min"),
    ),
)

#: Sheet names (Excel allows 31 characters).
SHEETS = {
    "indicators": ("指标", "indicators"),
    "ledger": ("问题台账", "problem ledger"),
    "summary": ("汇总", "summary"),
    "checklist": ("生活圈清单", "checklist"),
    "checklist_items": ("清单项目", "checklist items"),
    "robustness": ("步速稳健性", "robustness"),
    "fragile": ("不稳健判定", "fragile flags"),
}


@dataclass
class SheetLayout:
    """How :func:`circles.report.write_xlsx_atomic` lays out one sheet.

    Attributes
    ----------
    ids : list of str, optional
        English column ids written as a hidden second header row.
    formats : dict
        Column position -> Excel number format.
    widths : dict
        Column position -> width in characters.
    freeze : str
        The top-left cell of the unfrozen part (``"A2"``: the header row frozen).
    """

    ids: list[str] | None = None
    formats: dict[int, str] = field(default_factory=dict)
    widths: dict[int, float] = field(default_factory=dict)
    freeze: str = "A2"


# --------------------------------------------------------------------------- words

_W = r"[\w.]+"
_WHO = {
    "urban communities": "城市社区",
    "villages": "村",
    "communities": "社区",
    "sub-districts (街道)": "街道",
    "streets (no name ends in 街道: all counted)": "乡镇/街道（无以“街道”结尾的名称：全部计入）",
    "urban community": "城市社区",
}
_WHO_RE = "|".join(re.escape(k) for k in sorted(_WHO, key=len, reverse=True))


def _who(m: re.Match[str], group: str = "who") -> str:
    return _WHO.get(m[group], m[group])


#: Phrase translations of the indicators' ``measured`` and ``basis`` texts, in order.
_PHRASES: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = tuple(
    (re.compile(p), r)
    for p, r in (
        (r"^no data$", "无数据"),
        (
            r"no 15-minute coverage of (?P<c>.+?) in the table \(category not in the profile "
            r"or not computed\)",
            lambda m: (
                f"表中无{m['c'].replace(' or ', '或')}的15分钟覆盖数据（配置中无此类别或未计算）"
            ),
        ),
        (r"community table has no '(?P<c>\w+)' column", lambda m: f"社区表缺少'{m['c']}'列"),
        (r" \(urban / rural\)", "（城市/农村）"),
        (r" \(乡镇/街道\)", "（乡镇/街道）"),
        (
            r"no facility table \(locations of elderly service institutions\)",
            "无设施表（养老服务机构位置）",
        ),
        (
            r"category (?P<c>.+?) not in the profile",
            lambda m: f"配置中无类别{m['c'].replace(' or ', '或')}",
        ),
        (r"no street names in this scope", "本范围内无乡镇/街道名称"),
        (
            rf"no (?P<who>{_WHO_RE}) with residents in this scope",
            lambda m: f"本范围内无有居民的{_who(m)}",
        ),
        (
            rf"^(?P<who>{_WHO_RE}) with >= (?P<p>[\d.]+%) of residents within (?P<l>[\d.]+) min "
            rf"of '(?P<c>{_W})'",
            lambda m: f"{_who(m)}：{m['l']}分钟内可达'{m['c']}'的居民≥{m['p']}",
        ),
        (r" \(residents: (?P<b>.+?)\)(?=;|$)", lambda m: f"（居民：{value_zh(m['b'])}）"),
        (
            rf"; (?P<k>\d+) of (?P<n>\d+) '(?P<c>{_W})' facilities on the network",
            lambda m: f"；'{m['c']}'设施{m['n']}处，其中{m['k']}处接入步行网络",
        ),
        (rf"; (?P<n>\d+) '(?P<c>{_W})' facilities", lambda m: f"；'{m['c']}'设施{m['n']}处"),
        (r"; (?P<n>\d+) without residents not counted", lambda m: f"；{m['n']}个无居民的未计入"),
        (
            rf"^(?P<who>{_WHO_RE}) with at least one '(?P<c>{_W})' facility inside their "
            r"communities",
            lambda m: f"{_who(m)}：辖区社区内至少有一处'{m['c']}'设施",
        ),
        (r"; without: ", "；缺少："),
        (
            rf"^(?P<who>{_WHO_RE}) with service_area_m2 > 0 \('service_area_m2' column\)",
            lambda m: f"{_who(m)}：service_area_m2 > 0（'service_area_m2'列）",
        ),
        (r"; (?P<n>\d+) without a value not counted", lambda m: f"；{m['n']}个无数值的未计入"),
        (
            rf"'service_area_m2' empty for all (?P<who>{_WHO_RE})",
            lambda m: f"所有{_who(m)}的'service_area_m2'均为空",
        ),
        (
            rf"no 'service_area_m2' column and no '(?P<c>{_W})' facilities",
            lambda m: f"无'service_area_m2'列，也无'{m['c']}'设施",
        ),
        (
            rf"^(?P<who>{_WHO_RE}) with a '(?P<c>{_W})' facility inside their polygon",
            lambda m: f"{_who(m)}：边界内有'{m['c']}'设施",
        ),
        (rf"no (?P<who>{_WHO_RE}) in this scope", lambda m: f"本范围内无{_who(m)}"),
        (
            rf"facility '(?P<f>{_W})' of '(?P<c>{_W})' summed per community",
            lambda m: f"按社区汇总的'{m['c']}'设施'{m['f']}'",
        ),
        (rf" or facility '(?P<f>{_W})'", lambda m: f"或设施'{m['f']}'"),
        (rf"'(?P<c>{_W})' column", lambda m: f"'{m['c']}'列"),
        (r" and 'households'", "与'households'"),
        (r" and 'population' of urban communities", "与城市社区的'population'"),
        (
            r"; (?P<n>\d+) urban communities without both not counted",
            lambda m: f"；{m['n']}个两者不全的城市社区未计入",
        ),
        (
            r"; (?P<n>\d+) communities without both not counted",
            lambda m: f"；{m['n']}个两者不全的社区未计入",
        ),
        (r"no community with both households and service area", "无同时有户数和服务面积的社区"),
        (r"no community with both service and activity area", "无同时有服务面积和活动面积的社区"),
        (
            r"no urban community with both workers and population",
            "无同时有社区工作者和人口数据的城市社区",
        ),
        (
            r"^(?P<k>\d+) / (?P<n>\d+) communities >= 30 m²; overall (?P<v>[\d.]+) m² per 100 "
            r"households$",
            lambda m: f"{m['k']} / {m['n']}个社区≥30平方米；总体每百户{m['v']}平方米",
        ),
        (
            r"^(?P<k>\d+) / (?P<n>\d+) communities >= 60%; overall (?P<v>[\d.]+%)$",
            lambda m: f"{m['k']} / {m['n']}个社区≥60%；总体{m['v']}",
        ),
        (r"^no (?P<x>'.+)$", lambda m: f"无{m['x']}"),
        (r" / ", " / "),
    )
)


def text_zh(text: Any) -> Any:
    """A report text circles wrote in English, in Chinese (others unchanged).

    Examples
    --------
    >>> text_zh("community table has no 'kind' column (urban / rural)")
    "社区表缺少'kind'列（城市/农村）"
    """
    if not isinstance(text, str):
        return value_zh(text)
    out = value_zh(text)
    if out != text:
        return out
    for pattern, repl in _PHRASES:
        out = pattern.sub(repl, out)
    return out


# --------------------------------------------------------------------------- layout


def _width(series: pd.Series, header: str) -> float:
    """Characters a column needs (CJK characters count twice), at most 60."""

    def w(s: str) -> int:
        return sum(2 if ord(ch) > 0x2E80 else 1 for ch in s)

    cells = series.head(500).map(lambda v: "" if v is None else str(v))
    longest = max([w(header), *map(w, cells.tolist())], default=4)
    return float(min(60, max(6, longest + 2)))


def column_header(
    column: str, lang: str, *, items: Mapping[str, str] | None = None
) -> tuple[str, str | None]:
    """The header of column id ``column`` in ``lang`` and its format kind.

    Parameters
    ----------
    column : str
        A column id of :data:`COLUMNS`, or a generated one (``share_5``, ``met_10``,
        ``<item>_met_level``, ``<category>_share_15``); others keep their name.
    lang : {"zh", "en"}
    items : mapping, optional
        Checklist item id -> label in ``lang`` (for ``<item>_met_level``).

    Returns
    -------
    header : str
    kind : str or None
        A key of :data:`FORMATS`.

    Examples
    --------
    >>> column_header("share_5", "zh")
    ('5分钟可达居民比例（%）', 'pct')
    """
    known = COLUMNS.get(column)
    if known is not None:
        return (known[0] if lang == "zh" else known[1]), known[2]
    for pattern, (zh, en, kind) in _PATTERN_COLUMNS:
        m = pattern.fullmatch(column)
        if m is not None:
            words = m.groupdict()
            if "item" in words:
                words["item"] = (items or {}).get(words["item"], words["item"])
            return (zh if lang == "zh" else en).format(**words), kind
    if re.fullmatch(r"share_[\d.]+_min|[\w]+_share_[\d.]+", column):
        return column, "pct"
    return column, None


def localise(
    df: pd.DataFrame,
    lang: str,
    *,
    labels: Mapping[str, str] | None = None,
    items: Mapping[str, str] | None = None,
) -> tuple[pd.DataFrame, SheetLayout]:
    """``df`` with headers (and, in Chinese, values) in ``lang``, and its XLSX layout.

    Parameters
    ----------
    df : pandas.DataFrame
        A table with ids of :data:`COLUMNS` or generated ids (:func:`column_header`);
        others keep their names.
    lang : {"zh", "en"}
    labels : mapping, optional
        Category id -> label in ``lang`` (for a ``category`` column, and the `` / ``
        separated ids of a checklist's ``categories`` column).
    items : mapping, optional
        Checklist item id -> label in ``lang`` (for ``<item>_met_level`` headers).

    Returns
    -------
    table : pandas.DataFrame
    layout : SheetLayout
    """
    out = df.copy()
    if lang == "zh":
        for col in out.columns:
            dtype = out[col].dtype
            if (
                pd.api.types.is_object_dtype(dtype)
                or pd.api.types.is_string_dtype(dtype)
                or pd.api.types.is_bool_dtype(dtype)
            ):
                out[col] = out[col].map(text_zh).astype(object)
    if labels is not None and "category" in out:
        out["category"] = out["category"].map(lambda c: labels.get(c, c))
    if labels is not None and "categories" in out:
        sep = "、" if lang == "zh" else " / "
        out["categories"] = out["categories"].map(
            lambda v: (
                sep.join(labels.get(c, c) for c in v.split(" / ")) if isinstance(v, str) else v
            )
        )
    ids = [str(c) for c in df.columns]
    headers = []
    formats: dict[int, str] = {}
    for i, c in enumerate(ids):
        header, kind = column_header(c, lang, items=items)
        headers.append(header)
        if kind is not None:
            formats[i] = FORMATS[kind]
    out.columns = headers
    widths = {i: _width(out.iloc[:, i], h) for i, h in enumerate(headers)}
    return out, SheetLayout(ids=ids, formats=formats, widths=widths, freeze="A3")


def formatted(table: pd.DataFrame, layout: SheetLayout) -> pd.DataFrame:
    """``table`` (from :func:`localise`) with percentages and minutes written out as
    text, the way the XLSX shows them (for the HTML report)."""
    out = table.copy()
    for i, fmt in layout.formats.items():
        col = out.columns[i]
        values = pd.to_numeric(out[col], errors="coerce")
        if fmt == FORMATS["pct"]:
            out[col] = [("" if np.isnan(v) else f"{100 * v:.1f}%") for v in values]
        elif fmt in (FORMATS["min"], FORMATS["num"]):
            out[col] = [("" if np.isnan(v) else f"{v:.1f}") for v in values]
        elif fmt == FORMATS["speed"]:
            out[col] = [("" if np.isnan(v) else f"{v:.2f}") for v in values]
    return out


def csv_values(table: pd.DataFrame, layout: SheetLayout) -> pd.DataFrame:
    """``table`` (from :func:`localise`) with the numbers its headers promise, for CSV.

    A CSV has no number formats: a "（%）" column holds percentages (0-100, one
    decimal) rather than the fractions the XLSX formats as ``0.0%``, and minutes are
    rounded to one decimal as the XLSX shows them. Other columns are unchanged.

    Examples
    --------
    >>> df = pd.DataFrame({"share_15": [1.0, 0.12345], "median_min": [5.2064, 1]})
    >>> t, lay = localise(df, "zh")
    >>> csv_values(t, lay).to_dict("list")
    {'15分钟可达居民比例（%）': [100.0, 12.3], '步行时间中位数（分钟）': [5.2, 1.0]}
    """
    out = table.copy()
    for i, fmt in layout.formats.items():
        if fmt not in (FORMATS["pct"], FORMATS["min"]):
            continue
        values = pd.to_numeric(out.iloc[:, i], errors="coerce").astype(float)
        if fmt == FORMATS["pct"]:
            values = values * 100.0
        out.isetitem(i, values.round(1).to_numpy())  # by position: headers may repeat
    return out


def sheet_name(key: str, lang: str) -> str:
    """The sheet's name in ``lang``."""
    zh, en = SHEETS[key]
    return zh if lang == "zh" else en


# --------------------------------------------------------------------------- tables


def _centre_nodes(result: Any) -> np.ndarray:
    """The network node nearest to each community's representative point (-1: none)."""
    from scipy.spatial import cKDTree

    net = result.network
    comm = result.communities
    if len(comm) == 0 or net.n_nodes == 0:
        return np.full(len(comm), -1, dtype=np.int64)
    pts = comm.to_crs(net.crs).geometry.representative_point()
    tree = cKDTree(np.column_stack([net.x, net.y]))
    _, idx = tree.query(np.column_stack([pts.x.to_numpy(), pts.y.to_numpy()]))
    return np.asarray(idx, dtype=np.int64)


def nearest_facilities(result: Any, category: str) -> tuple[list[Any], np.ndarray]:
    """The nearest facility of ``category`` by walking distance from each community's
    centre node (its name or id), and that distance in metres (NaN: none reachable).
    """
    from circles.access import AccessGraph, SnappedArrays, nearest_seconds

    net = result.network
    n = len(result.communities)
    centres = _centre_nodes(result)
    snapped = SnappedArrays(result.facilities)
    edge, frac, acc_m = snapped(category, 1.0)  # "seconds" at 1 m/s: metres
    if edge.size == 0 or n == 0:
        return [None] * n, np.full(n, np.nan)
    graph = AccessGraph.from_network(net, net.length_m)
    metres, nearest = nearest_seconds(graph, edge, frac, acc_m)
    fac = result.facilities
    ok = (fac["status"] == "snapped").to_numpy() & (fac["category"] == category).to_numpy()
    rows = fac[ok]
    names = rows["name"].where(rows["name"].notna(), rows["facility_id"]).astype(str).to_numpy()
    at = nearest[centres]
    dist = metres[centres]
    out_names = [
        names[k] if k >= 0 and np.isfinite(d) else None for k, d in zip(at, dist, strict=True)
    ]
    return out_names, np.where(np.isfinite(dist), dist, np.nan)


def problem_ledger(
    result: Any,
    *,
    table: pd.DataFrame,
    checklist: pd.DataFrame | None,
    lang: str,
    threshold: float = 0.8,
) -> pd.DataFrame:
    """The 问题台账: one row per community and category (see the module docstring).

    Parameters
    ----------
    result : StudyResult, optional
        The run (its network and facilities give the nearest facility); None leaves
        those columns empty.
    table : pandas.DataFrame
        The communities' coverage table with the attribute columns joined.
    checklist : pandas.DataFrame, optional
        The life-circle checklist per community (``missing_zh``/``missing_en``).
    lang : {"zh", "en"}
    """
    categories = list(result.categories) if result is not None else []
    if not categories:
        categories = [c[: -len("_share_15")] for c in table.columns if str(c).endswith("_share_15")]
    top = "15"
    if result is not None:
        lev = float(result.config.walk.levels_minutes[-1])
        top = str(int(lev)) if lev.is_integer() else str(lev)
    missing = None
    if checklist is not None and "community_id" in checklist:
        col = "missing_zh" if lang == "zh" else "missing_en"
        missing = dict(zip(checklist["community_id"].astype(str), checklist[col], strict=True))
    frames = []
    base = pd.DataFrame(
        {
            "county": table.get("county"),
            "street": table.get("street"),
            "community_id": table["community_id"].astype(str),
            "name": table["name"],
            "kind": table.get("kind"),
        }
    )
    for cat in categories:
        f = base.copy()
        f["category"] = cat
        f["share_15"] = table[f"{cat}_share_{top}"].to_numpy(dtype=float)
        for col in ("median_min", "p90_min"):
            values = table.get(f"{cat}_{col}")
            f[col] = (
                np.nan
                if values is None
                else pd.to_numeric(values, errors="coerce").replace([np.inf], np.nan).to_numpy()
            )
        if result is not None:
            names, dist = nearest_facilities(result, cat)
            f["nearest"] = names
            f["nearest_m"] = np.round(dist)
        else:
            f["nearest"] = None
            f["nearest_m"] = np.nan
        flag = table.get(f"{cat}_flag")
        f["flag"] = (
            np.nan_to_num(f["share_15"].to_numpy(float), nan=0.0) < threshold
            if flag is None
            else flag.eq(True).to_numpy()
        )
        if missing is not None:
            f["missing"] = f["community_id"].map(missing)
        frames.append(f)
    # every column of the ledger's form stays, empty where the data are not known
    return pd.concat(frames, ignore_index=True) if frames else base.iloc[:0]


def area_summary(
    table: pd.DataFrame,
    categories: Sequence[str],
    *,
    facility_community: np.ndarray | None,
    facilities: pd.DataFrame | None,
    whole: str,
    top: str = "15",
    threshold: float = 0.8,
) -> pd.DataFrame:
    """Per county (``county`` column) and for the whole area, per category: communities,
    flagged ones, the share reached (not flagged) and the residents within ``top`` min."""
    scopes: list[tuple[str, np.ndarray]] = []
    if "county" in table:
        county = table["county"].astype(str).to_numpy()
        scopes += [(c, county == c) for c in dict.fromkeys(county.tolist())]
    scopes.append((whole, np.ones(len(table), bool)))
    residents = table["residents"].to_numpy(float) if "residents" in table else None
    rows = []
    for scope, mask in scopes:
        for cat in categories:
            share = table[f"{cat}_share_{top}"].to_numpy(float)[mask]
            flag_col = table.get(f"{cat}_flag")
            if flag_col is None:  # a table without flags: flagged below the threshold
                flags = np.nan_to_num(share, nan=0.0) < threshold
            else:
                flags = flag_col.eq(True).to_numpy()[mask]
            row: dict[str, Any] = {
                "scope": scope,
                "category": cat,
                "communities": int(mask.sum()),
                "flagged": int(flags.sum()),
                "reached_share": float((~flags).mean()) if mask.any() else np.nan,
            }
            if residents is not None:
                r = residents[mask]
                ok = np.isfinite(share) & np.isfinite(r)
                row["residents_share_15"] = (
                    float((share[ok] * r[ok]).sum() / r[ok].sum()) if r[ok].sum() > 0 else np.nan
                )
            if facilities is not None and facility_community is not None:
                sel = (facilities["category"] == cat).to_numpy() & (
                    facilities["status"] == "snapped"
                ).to_numpy()
                inside = facility_community[sel]
                row["facilities"] = int(np.isin(inside, np.flatnonzero(mask)).sum())
            rows.append(row)
    return pd.DataFrame(rows)


def robustness_tables(
    table: pd.DataFrame,
    categories: Sequence[str],
    *,
    bands: Mapping[str, Sequence[float]] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """The report's robustness tables (None when the table has no ``<cat>_robust``).

    Parameters
    ----------
    table : pandas.DataFrame
        The communities table with ``<cat>_flag``, ``<cat>_robust`` and
        ``<cat>_flip_m_s`` (:mod:`circles.robustness`).
    categories : sequence of str
    bands : mapping, optional
        Category -> ``[slowest, fastest]`` walking speed of its band (m/s), from the
        ``robustness`` section of ``summary.json``.

    Returns
    -------
    counts : pandas.DataFrame
        Per category: communities, flags robust and flagged, robust and not flagged,
        fragile (``band_m_s`` when ``bands`` is given).
    fragile : pandas.DataFrame
        The fragile communities: id, name, category, the flag at the study's speed and
        ``flip_m_s``, the slowest speed (m/s) at which the community is no longer
        flagged; by category, then flip speed.
    """
    cats = [c for c in categories if f"{c}_robust" in table and f"{c}_flag" in table]
    if not cats:
        return None
    rows: list[dict[str, Any]] = []
    parts: list[pd.DataFrame] = []
    for cat in cats:
        robust = table[f"{cat}_robust"].eq(True).to_numpy()
        flag = table[f"{cat}_flag"].eq(True).to_numpy()
        row: dict[str, Any] = {"category": cat, "communities": len(table)}
        if bands is not None and cat in bands:
            lo, hi = (float(v) for v in bands[cat])
            row["band_m_s"] = f"{lo:g}–{hi:g}"
        row["robust_flagged"] = int((robust & flag).sum())
        row["robust_not_flagged"] = int((robust & ~flag).sum())
        row["fragile"] = int((~robust).sum())
        rows.append(row)
        sel = ~robust
        part = pd.DataFrame(
            {
                "community_id": table["community_id"].to_numpy()[sel],
                "name": table["name"].to_numpy()[sel],
                "category": cat,
                "flag": flag[sel],
                "flip_m_s": pd.to_numeric(table[f"{cat}_flip_m_s"]).to_numpy(float)[sel],
            }
        )
        parts.append(part.sort_values("flip_m_s", kind="stable"))
    fragile = pd.concat(parts, ignore_index=True)
    return pd.DataFrame(rows), fragile


def analysis_columns(
    table: pd.DataFrame, categories: Sequence[str], level_key: str
) -> dict[str, np.ndarray]:
    """The per-category analysis columns of the communities table, stacked category by
    category (one row per community and category, as ``coverage.csv``).

    The columns, named without the category prefix, where some category has them:
    robustness (``share_<L>_slow``, ``share_<L>_fast`` (shares), ``robust``,
    ``flip_m_s`` (m/s)), choice (``mean<N>_min`` (minutes), ``gravity``) and equity
    (``share_<L>_all``, ``share_<L>_elderly`` (shares), ``gini_min``, ``fca`` (capacity
    per resident)). A category without a column has NaN there (None for ``robust``).

    Parameters
    ----------
    table : pandas.DataFrame
        The communities table.
    categories : sequence of str
    level_key : str
        The last walking level as in the column names (``"15"``).

    Returns
    -------
    dict
        Column name (without the category prefix) -> values, ``len(categories) x
        len(table)`` long, category after category.
    """
    lk = re.escape(level_key)
    patterns = [
        rf"share_{lk}_slow",
        rf"share_{lk}_fast",
        "robust",
        "flip_m_s",
        r"mean\d+_min",
        "gravity",
        rf"share_{lk}_all",
        rf"share_{lk}_elderly",
        "gini_min",
        "fca",
    ]
    found: dict[str, dict[str, str]] = {}  # suffix -> category -> column
    for pat in patterns:
        for cat in categories:
            for col in table.columns:
                col = str(col)
                if col.startswith(f"{cat}_") and re.fullmatch(pat, col[len(cat) + 1 :]):
                    found.setdefault(col[len(cat) + 1 :], {})[cat] = col
    n = len(table)
    out: dict[str, np.ndarray] = {}
    for suffix, by_cat in found.items():
        boolean = suffix == "robust"
        parts = []
        for cat in categories:
            if cat in by_cat:
                v = table[by_cat[cat]].to_numpy()
                parts.append(v.astype(object) if boolean else pd.to_numeric(v).astype(float))
            else:
                parts.append(
                    np.full(n, None if boolean else np.nan, dtype=object if boolean else float)
                )
        stacked = np.concatenate(parts) if parts else np.zeros(0)
        if boolean and all(c in by_cat for c in categories):
            stacked = stacked.astype(bool)
        out[suffix] = stacked
    return out


def write_laid_out(writer: Any, name: str, df: pd.DataFrame, layout: Any) -> None:
    """One sheet: the headers, the hidden English ids, the data; formats and widths."""
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    first = 3 if layout.ids else 2
    df.to_excel(writer, sheet_name=name, index=False, header=False, startrow=first - 1)
    ws = writer.sheets[name]
    bold = Font(bold=True)
    fill = PatternFill("solid", fgColor="EEEEEE")
    for j, header in enumerate(df.columns, start=1):
        cell = ws.cell(row=1, column=j, value=str(header))
        cell.font, cell.fill = bold, fill
        cell.alignment = Alignment(wrap_text=True, vertical="top")
        if layout.ids:
            ws.cell(row=2, column=j, value=layout.ids[j - 1])
    if layout.ids:
        ws.row_dimensions[2].hidden = True
    for j in range(1, len(df.columns) + 1):
        letter = get_column_letter(j)
        ws.column_dimensions[letter].width = layout.widths.get(j - 1, 12)
        fmt = layout.formats.get(j - 1)
        if fmt:
            for (cell,) in ws.iter_rows(min_row=first, min_col=j, max_col=j):
                cell.number_format = fmt
    ws.freeze_panes = f"A{first}"
    ws.auto_filter.ref = f"A1:{get_column_letter(max(1, len(df.columns)))}1"


def note_zh(note: str) -> str:
    """A report note in Chinese."""
    for pattern, repl in (
        (r"^residents: (.+)$", lambda m: f"居民计算依据：{value_zh(m[1])}"),
        (r"^walking speed: ([\d.]+) m/s$", lambda m: f"步行速度：{m[1]} 米/秒"),
        (
            r"^communities: (.+)$",
            lambda m: "社区来源：" + "、".join(str(value_zh(x)) for x in m[1].split(", ")),
        ),
        (
            r"^a community counts as reached when >= ([\d.]+%) of its residents are within 15 "
            r"minutes \(the coverage flag threshold\)$",
            lambda m: f"社区15分钟内可达居民比例≥{m[1]}即视为覆盖（与未达标判定阈值相同）",
        ),
        (
            r"^checklist: profile '(.+)', (\d+) items; completeness = share of items met within "
            r"their own level$",
            lambda m: f"生活圈清单：配置'{m[1]}'，共{m[2]}项；完整度 = 在各自层级内满足的项目比例",
        ),
    ):
        hit = re.match(pattern, note)
        if hit is not None:
            return repl(hit)
    return note


def write_xlsx_atomic(
    sheets: Mapping[str, pd.DataFrame],
    path: str | os.PathLike[str],
    *,
    layouts: Mapping[str, Any] | None = None,
) -> Path:
    """Write several sheets into one XLSX file atomically (temp file, then rename).

    ``layouts`` maps a sheet name to its :class:`SheetLayout`
    (number formats, widths, a frozen header and a hidden row of English column ids).
    """
    tmp, final = io.atomic_path(path)
    try:
        with pd.ExcelWriter(tmp, engine="openpyxl") as writer:
            for name, df in sheets.items():
                layout = (layouts or {}).get(name)
                if layout is None:
                    df.to_excel(writer, sheet_name=name[:31], index=False)
                else:
                    write_laid_out(writer, name[:31], df, layout)
                io.neutralise_sheet(writer.sheets[name[:31]])  # text cells, never formulas
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final


def coverage_long(result: StudyResult) -> pd.DataFrame:
    """``coverage.csv``: one row per community and category (the robustness, choice and
    equity columns follow where the run has them: :func:`analysis_columns`)."""
    t = pd.DataFrame(result.communities.drop(columns=result.communities.geometry.name))
    levels = result.config.walk.levels_minutes
    cats = list(result.categories)
    n = len(t)

    def stack(suffix: str) -> np.ndarray:
        if not cats:
            return np.zeros(0)
        return np.concatenate([t[f"{c}_{suffix}"].to_numpy() for c in cats])

    cols: dict[str, Any] = {
        "community_id": np.tile(t["community_id"].to_numpy(), len(cats)),
        "name": np.tile(t["name"].to_numpy(), len(cats)),
        "category": np.repeat(np.asarray(cats, dtype=object), n),
        "residents": np.tile(t["residents"].to_numpy(), len(cats)),
        "residents_basis": np.tile(t["residents_basis"].to_numpy(), len(cats)),
    }
    for lev in levels:
        k = level_key(lev)
        cols[f"share_{k}_min"] = stack(f"share_{k}")
    cols["median_min"] = stack("median_min")
    cols["p90_min"] = stack("p90_min")
    cols["flag"] = stack("flag")
    # robustness, choice and equity columns where the run has them
    cols.update(analysis_columns(t, cats, level_key(levels[-1])))
    return finite_or_nan(pd.DataFrame(cols))
