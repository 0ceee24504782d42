"""Chinese words for the values circles writes into its tables.

The stages describe what their numbers rest on in English (``residents_basis``,
``derived``, facility ``status`` and ``source``). Maps, figures and reports in Chinese
show those values through :func:`value_zh`, so a Chinese page has no English left in it
except names from the data (a community called "Vaduz" stays "Vaduz") and file names.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

__all__ = ["in_lang", "value_zh"]

_EXACT: dict[str, str] = {
    "street length (no population data)": "街道长度（无人口数据）",
    "street_length": "街道长度",
    "OSM residential buildings (floor area x levels)": "OSM居住建筑（面积×层数）",
    "hexagon grid": "六边形网格",
    "boundary file": "边界文件",
    "service zone from centre points": "由中心点推算的服务区（非官方边界）",
    "snapped": "已接入步行网络",
    "unreachable": "距步行网络过远",
    "island": "位于孤立路段",
    "osm": "OSM",
    "reported": "仅报告",
    "yes": "是",
    "no": "否",
    "urban": "城市社区",
    "rural": "农村（村）",
    "True": "是",
    "False": "否",
    "residents": "居民",
    "buildings": "建筑",
    # life-circle checklists (circles.categories, circles.checklist)
    "required": "应配建",
    "recommended": "宜配建",
    "verified": "已核实",
    "unverified": "未核实",
    "conflicting": "来源不一致",
    "exact": "精确（按节点步行时间合并各类别）",
    "lower bound (best single category; union needs node minutes)": (
        "下限（取单一类别最大值；合并各类别需节点步行时间）"
    ),
    "no data": "无数据",
    "(no residents: not evaluated)": "（无居民，未评估）",
}

_PATTERNS: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...] = (
    (re.compile(r"^population raster (?P<f>.+)$"), lambda m: f"人口栅格 {m['f']}"),
    (
        re.compile(r"^community population \((?P<c>[^)]*)\) spread over street length$"),
        lambda m: f"社区人口（{m['c']}）按街道长度分配",
    ),
    (
        re.compile(r"^OSM boundary admin_level=(?P<n>\d+)$"),
        lambda m: f"OSM行政边界（admin_level={m['n']}）",
    ),
    (re.compile(r"^osm:(?P<f>.+)$"), lambda m: f"OSM（{m['f']}）"),
    (re.compile(r"^Hexagon (?P<n>\d+)$"), lambda m: f"六边形{m['n']}"),
)


def value_zh(value: Any) -> Any:
    """A table value in Chinese when circles wrote it in English; others as they are.

    Examples
    --------
    >>> value_zh("street length (no population data)")
    '街道长度（无人口数据）'
    >>> value_zh("population raster worldpop.tif")
    '人口栅格 worldpop.tif'
    >>> value_zh("红塔区")
    '红塔区'
    """
    if isinstance(value, bool):
        return "是" if value else "否"
    if not isinstance(value, str):
        return value
    hit = _EXACT.get(value)
    if hit is not None:
        return hit
    for pattern, repl in _PATTERNS:
        m = pattern.match(value)
        if m is not None:
            return repl(m)
    return value


def in_lang(value: Any, lang: str) -> Any:
    """``value`` in ``lang``: :func:`value_zh` for ``"zh"``, unchanged otherwise."""
    return value_zh(value) if lang == "zh" else value
