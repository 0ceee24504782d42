"""Static figures for a written report: one per category, PNG (300 dpi) and PDF/SVG.

Each figure shows, in the study's metric CRS (so that the scale bar is true and north is
up): communities shaded by the share of residents within the largest level (the same
classes and colours as the HTML map and the QGIS styles, :mod:`circles.palette`), the
streets coloured by walking minutes to the category's nearest facility (the ``edges``
layer, :mod:`circles.streets`: the streets themselves are the base map, no tiles and no
internet), the category's facilities, and the flagged communities outlined in red
dashes; with a title (study, category, date), a legend naming the category and its
units, a north arrow, a metric scale bar and the data source (© OpenStreetMap
contributors), in English or Chinese.

Chinese figures need a CJK font (:func:`circles.fonts.require_cjk_font`); when there is
none, :func:`category_figure` stops with a message saying how to install one instead of
drawing boxes.

This module draws only what it is given: every number was computed upstream.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np

from circles._errors import InputDataError
from circles.fonts import require_cjk_font
from circles.palette import (
    CATEGORY_COLOURS,
    FLAG_COLOUR,
    NO_DATA_COLOUR,
    SHARE_BREAKS,
    SHARE_COLOURS,
    UNREACHABLE_COLOUR,
    level_colours,
)
from circles.streets import level_classes
from circles.vocabulary import in_lang

logger = logging.getLogger(__name__)

__all__ = ["FIGURE_FORMATS", "FigureText", "category_figure", "save_figure"]

#: Formats :func:`save_figure` writes (PNG raster; PDF and SVG vector).
FIGURE_FORMATS = ("png", "pdf", "svg")

#: Figure size in inches: 180 mm wide (a report page's text width) by 150 mm.
FIGSIZE_IN = (180 / 25.4, 150 / 25.4)

#: Artist ids (``Artist.get_gid()``): tests and SVG readers find the parts by them.
GIDS = {
    "title": "circles-title",
    "subtitle": "circles-subtitle",
    "legend": "circles-legend",
    "north": "circles-north-arrow",
    "scale": "circles-scale-bar",
    "source": "circles-source",
}

_TEXT: Mapping[str, Mapping[str, str]] = {
    "en": {
        "title": "{study}: {label} within a {m}-minute walk",
        "subtitle": "{n} communities, {k} flagged (fewer than {thr:.0f}% of residents "
        "within {m} min) · {date}",
        "share": "Residents within {m} min (%)",
        "no_data": "no residents / no data",
        "streets": "Streets: walking minutes",
        "within": "≤ {hi:g} min",
        "between": "{lo:g}–{hi:g} min",
        "beyond": "> {lo:g} min or out of reach",
        "facilities_head": "Facilities and flags",
        "facilities": "{label} ({n})",
        "off_network": "not on the walking network ({n})",
        "flagged": "flagged community (below {thr:.0f}%)",
        "north": "N",
        "source": "Data: © OpenStreetMap contributors (ODbL 1.0){data}{extra}. Walking at "
        "{speed:g} m/s; residents: {basis}. Made with circles {version}, {date}.",
        "metres": "m",
        "km": "km",
        "data_extract": ", extract of {d}",
        "data_file": ", input file modified {d}",
    },
    "zh": {
        "title": "{study}：{label}{m}分钟步行可达",
        "subtitle": "共{n}个社区，{k}个未达标（{m}分钟内居民不足{thr:.0f}%）· {date}",
        "share": "{m}分钟内可达居民比例（%）",
        "no_data": "无居民 / 无数据",
        "streets": "街道：步行时间（分钟）",
        "within": "≤ {hi:g} 分钟",
        "between": "{lo:g}–{hi:g} 分钟",
        "beyond": "> {lo:g} 分钟或不可达",
        "facilities_head": "设施与未达标社区",
        "facilities": "{label}（{n}处）",
        "off_network": "未接入步行网络（{n}处）",
        "flagged": "未达标社区（低于{thr:.0f}%）",
        "north": "北",
        "source": "数据：© OpenStreetMap 贡献者（ODbL 1.0）{data}{extra}。"
        "步行速度 {speed:g} 米/秒；居民依据：{basis}。circles {version} 制图，{date}。",
        "metres": "米",
        "km": "千米",
        "data_extract": "，数据截至{d}",
        "data_file": "，输入文件修改日期{d}",
    },
}


@dataclass(frozen=True)
class FigureText:
    """What a figure says besides its data.

    Attributes
    ----------
    study : str
        Study name (title).
    label : str
        The category's label in the figure's language.
    date : str
        Date of the run (``YYYY-MM-DD``).
    speed_m_s : float
        Walking speed, m/s (source line).
    basis : str
        What residents rest on (``residents_basis``).
    version : str
        circles version.
    extra_source : str
        More data sources (e.g. the bureau's facility list), appended to OSM's.
    data_date : tuple of str, optional
        The OSM data's date and what it is (:func:`circles.sources.source_date`):
        ``("2024-05-01", "extract")`` the extract's own timestamp, ``(..., "file")`` the
        input file's modification date; None: not shown.
    """

    study: str
    label: str
    date: str
    speed_m_s: float
    basis: str
    version: str
    extra_source: str = ""
    data_date: tuple[str, str] | None = None


def has_bold(family: str) -> bool:
    """Whether matplotlib knows a bold (weight >= 600) face of font ``family``.

    The PyPI CJK font (``circles[cjk]``) has a regular face only; asking it for bold makes
    matplotlib log "findfont: Failed to find font weight bold" for every text drawn.

    Parameters
    ----------
    family : str
        A font family name as matplotlib knows it (``CjkFont.family``).
    """
    from matplotlib import font_manager

    def weight(w: Any) -> int:
        if isinstance(w, int | float):
            return int(w)
        return int(font_manager.weight_dict.get(str(w), 400))

    return any(
        f.name == family and weight(f.weight) >= 600 for f in font_manager.fontManager.ttflist
    )


@contextlib.contextmanager
def _fonts(lang: str) -> Iterator[str]:
    """matplotlib settings for the figure's language (a CJK font for Chinese); yields
    the weight of emphasised text: ``"bold"``, or ``"normal"`` for a CJK font without a
    bold face."""
    import matplotlib

    families = ["DejaVu Sans"]
    bold = "bold"
    if lang == "zh":
        font = require_cjk_font()
        from matplotlib import font_manager

        if font.source != "system":
            font_manager.fontManager.addfont(font.path)
        families = [font.family, "DejaVu Sans"]
        if not has_bold(font.family):
            bold = "normal"
    with matplotlib.rc_context(
        {
            "font.family": "sans-serif",
            "font.sans-serif": families,
            "axes.unicode_minus": False,
            "pdf.fonttype": 42 if lang == "en" else 3,
            "svg.fonttype": "path",
        }
    ):
        yield bold


def _nice_length(span_m: float) -> float:
    """A round scale-bar length (1, 2 or 5 x 10^k metres) of at most a quarter of
    ``span_m``."""
    target = max(span_m / 4.0, 1.0)
    exp = math.floor(math.log10(target))
    for mult in (5, 2, 1):
        if mult * 10**exp <= target:
            return float(mult * 10**exp)
    return float(10**exp)


def _scale_bar(ax: Any, text: Mapping[str, str]) -> None:
    """A metric scale bar in the lower left corner (data units are metres)."""
    from matplotlib.patches import Rectangle

    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    length = _nice_length(x1 - x0)
    height = (y1 - y0) * 0.012
    left, bottom = x0 + (x1 - x0) * 0.04, y0 + (y1 - y0) * 0.04
    km = length >= 1000
    unit = text["km"] if km else text["metres"]
    for i in range(4):
        ax.add_patch(
            Rectangle(
                (left + i * length / 4, bottom),
                length / 4,
                height,
                facecolor="#222" if i % 2 == 0 else "white",
                edgecolor="#222",
                linewidth=0.6,
                zorder=10,
                gid=GIDS["scale"],
            )
        )
    value = length / (1000 if km else 1)
    ax.text(
        left + length / 2,
        bottom + height * 1.6,
        f"{value:g} {unit}",
        ha="center",
        va="bottom",
        fontsize=7,
        zorder=10,
        gid=GIDS["scale"],
    )


def _north_arrow(ax: Any, text: Mapping[str, str], *, bold: str = "bold") -> None:
    ax.annotate(
        text["north"],
        xy=(0.95, 0.95),
        xytext=(0.95, 0.84),
        xycoords="axes fraction",
        textcoords="axes fraction",
        ha="center",
        va="center",
        fontsize=10,
        fontweight=bold,
        arrowprops={"facecolor": "#222", "edgecolor": "#222", "width": 3, "headwidth": 10},
        zorder=11,
        gid=GIDS["north"],
    )


def category_figure(
    communities: gpd.GeoDataFrame,
    edges: gpd.GeoDataFrame | None,
    facilities: gpd.GeoDataFrame,
    *,
    category: str,
    text: FigureText,
    levels_minutes: Sequence[float] = (5, 10, 15),
    flag_threshold: float = 0.8,
    crs: Any = None,
    lang: str = "en",
    colour_index: int = 0,
) -> Any:
    """One category's report figure (a :class:`matplotlib.figure.Figure`).

    Parameters
    ----------
    communities : geopandas.GeoDataFrame
        With ``<category>_share_<last level>`` (0-1) and ``<category>_flag``.
    edges : geopandas.GeoDataFrame, optional
        The ``edges`` layer (``<category>_min``); None draws no streets.
    facilities : geopandas.GeoDataFrame
        With ``category`` and ``status``; only the category's rows are drawn.
    category : str
    text : FigureText
    levels_minutes : sequence of float
        The study's levels (minutes).
    flag_threshold : float
        Share below which a community is flagged (for the legend text).
    crs : optional
        Metric CRS to draw in (default: the communities' estimated UTM zone).
    lang : {"en", "zh"}
    colour_index : int
        Position of the category (its facility colour, as on the map).

    Raises
    ------
    InputDataError
        Missing columns or an unknown language.
    DataFileError
        ``lang="zh"`` and no CJK font is installed (the message says how to get one).
    """
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    if lang not in _TEXT:
        raise InputDataError(f"lang must be one of {sorted(_TEXT)}, got {lang!r}")
    levels = [float(x) for x in levels_minutes]
    top = f"{levels[-1]:g}"
    share_col, flag_col = f"{category}_share_{top}", f"{category}_flag"
    missing = [c for c in (share_col, flag_col) if c not in communities]
    if missing:
        raise InputDataError(f"communities lack column(s) {missing} for the figure")
    t = _TEXT[lang]
    metric = crs if crs is not None else communities.estimate_utm_crs()
    comm = communities.to_crs(metric)
    with _fonts(lang) as bold:
        fig = Figure(figsize=FIGSIZE_IN, layout=None)
        ax = fig.add_axes((0.02, 0.10, 0.62, 0.78))
        ax.set_aspect("equal")
        ax.set_axis_off()
        share = comm[share_col].to_numpy(dtype=float)
        cls = np.digitize(np.clip(share, 0, 1), SHARE_BREAKS[1:-1])
        fills = np.where(np.isnan(share), NO_DATA_COLOUR, np.asarray(SHARE_COLOURS)[cls])
        comm.plot(ax=ax, color=list(fills), alpha=0.55, edgecolor="none", zorder=1)
        comm.boundary.plot(ax=ax, color="#555", linewidth=0.5, zorder=3)
        colours = level_colours(len(levels))
        if edges is not None and len(edges) and f"{category}_min" in edges:
            lines = edges.to_crs(metric)
            ecls = level_classes(lines[f"{category}_min"], levels)
            coords = np.asarray(
                [np.asarray(g.coords)[[0, -1]] for g in lines.geometry.to_numpy()], dtype=float
            )
            for k in range(len(levels), -1, -1):  # near classes drawn on top
                sel = ecls == k
                if sel.any():
                    ax.add_collection(
                        LineCollection(
                            list(coords[sel]),
                            colors=colours[k],
                            linewidths=0.8 if k < len(levels) else 0.6,
                            zorder=2 + (len(levels) - k) * 0.01,
                            capstyle="round",
                        )
                    )
        flagged = comm[comm[flag_col].eq(True).to_numpy(dtype=bool)]
        if len(flagged):
            flagged.boundary.plot(
                ax=ax, color=FLAG_COLOUR, linewidth=1.6, linestyle=(0, (4, 2)), zorder=4
            )
        fac = facilities[facilities["category"].astype(str) == category].to_crs(metric)
        on = fac["status"].astype(str).eq("snapped").to_numpy()
        colour = CATEGORY_COLOURS[colour_index % len(CATEGORY_COLOURS)]
        if on.any():
            pts = fac[on].geometry.representative_point()
            ax.scatter(pts.x, pts.y, s=14, c=colour, edgecolors="#222", linewidths=0.5, zorder=5)
        if (~on).any():
            pts = fac[~on].geometry.representative_point()
            ax.scatter(pts.x, pts.y, s=10, c=UNREACHABLE_COLOUR, edgecolors="#222", linewidths=0.4)
        x0, y0, x1, y1 = comm.total_bounds
        pad = 0.03 * max(x1 - x0, y1 - y0)
        ax.set_xlim(x0 - pad, x1 + pad)
        ax.set_ylim(y0 - pad, y1 + pad)

        thr = 100 * float(flag_threshold)
        fmt = {"label": text.label, "m": top, "thr": thr}
        handles: list[Any] = []
        labels: list[str] = []
        header: list[int] = []

        def head(title: str) -> None:
            header.append(len(labels))
            handles.append(Patch(visible=False))
            labels.append(title)

        head(t["share"].format(**fmt))
        for lo, hi, c in zip(SHARE_BREAKS[:-1], SHARE_BREAKS[1:], SHARE_COLOURS, strict=True):
            handles.append(Patch(facecolor=c, alpha=0.55, edgecolor="#555", linewidth=0.4))
            labels.append(f"{100 * lo:.0f}–{100 * hi:.0f}%")
        handles.append(Patch(facecolor=NO_DATA_COLOUR, alpha=0.55, edgecolor="#555", linewidth=0.4))
        labels.append(t["no_data"])
        if edges is not None:
            head(t["streets"].format(**fmt))
            bounds = [0.0, *levels]
            for k, c in enumerate(colours):
                handles.append(Line2D([], [], color=c, linewidth=2))
                if k == 0:
                    labels.append(t["within"].format(hi=bounds[1]))
                elif k < len(levels):
                    labels.append(t["between"].format(lo=bounds[k], hi=bounds[k + 1]))
                else:
                    labels.append(t["beyond"].format(lo=bounds[-1]))
        head(t["facilities_head"])
        handles.append(
            Line2D([], [], marker="o", linestyle="", markerfacecolor=colour, markeredgecolor="#222")
        )
        labels.append(t["facilities"].format(label=text.label, n=int(on.sum())))
        if (~on).any():
            handles.append(
                Line2D(
                    [],
                    [],
                    marker="o",
                    linestyle="",
                    markerfacecolor=UNREACHABLE_COLOUR,
                    markeredgecolor="#222",
                )
            )
            labels.append(t["off_network"].format(n=int((~on).sum())))
        handles.append(Line2D([], [], color=FLAG_COLOUR, linewidth=1.6, linestyle=(0, (4, 2))))
        labels.append(t["flagged"].format(thr=thr))
        legend = fig.legend(
            handles,
            labels,
            loc="upper left",
            bbox_to_anchor=(0.655, 0.88),
            frameon=False,
            fontsize=7,
            title=text.label,
            title_fontsize=9,
            alignment="left",
            handlelength=1.6,
        )
        legend.set_gid(GIDS["legend"])
        for i in header:
            legend.get_texts()[i].set_fontweight(bold)
        _north_arrow(ax, t, bold=bold)
        _scale_bar(ax, t)
        n_flag = int(comm[flag_col].eq(True).sum())
        fig.text(
            0.02,
            0.955,
            t["title"].format(study=text.study, **fmt),
            fontsize=12,
            fontweight=bold,
            va="top",
            gid=GIDS["title"],
        )
        fig.text(
            0.02,
            0.915,
            t["subtitle"].format(n=len(comm), k=n_flag, date=text.date, **fmt),
            fontsize=8,
            va="top",
            color="#444",
            gid=GIDS["subtitle"],
        )
        extra = f"; {text.extra_source}" if text.extra_source else ""
        fig.text(
            0.02,
            0.03,
            t["source"].format(
                data=(
                    t[f"data_{text.data_date[1]}"].format(d=text.data_date[0])
                    if text.data_date is not None
                    else ""
                ),
                extra=extra,
                speed=text.speed_m_s,
                basis=in_lang(text.basis, lang),
                version=text.version,
                date=text.date,
            ),
            fontsize=6,
            color="#444",
            va="bottom",
            wrap=True,
            gid=GIDS["source"],
        )
        fig.set_label(lang)
    return fig


def save_figure(fig: Any, path: str | Path, *, dpi: int = 300) -> Path:
    """Write a figure to ``path`` (its suffix picks PNG, PDF or SVG) at ``dpi``.

    The caller gives a staged path (:class:`circles.transaction.Transaction`), so the
    file becomes visible only with the run's other outputs.
    """
    out = Path(path)
    fmt = out.suffix.lstrip(".").lower()
    if fmt not in FIGURE_FORMATS:
        raise InputDataError(f"figure format must be one of {FIGURE_FORMATS}, got {fmt!r}")
    with _fonts(str(fig.get_label() or "en")):
        fig.savefig(out, dpi=dpi, format=fmt, facecolor="white", metadata=_metadata(fmt))
    return out


def _metadata(fmt: str) -> dict[str, Any] | None:
    """File metadata without creation dates, so the same figure gives the same bytes."""
    if fmt == "pdf":
        return {"CreationDate": None, "Creator": "circles"}
    if fmt == "svg":
        return {"Date": None, "Creator": "circles"}
    return {"Software": "circles"}


def write_figures(
    result: Any,
    folder: str | Path,
    *,
    formats: Sequence[str] = ("png", "pdf"),
    dpi: int = 300,
    categories: Sequence[str] = (),
    date: str | None = None,
) -> dict[str, Path]:
    """Every category's figure of a study, written into ``folder``.

    Parameters
    ----------
    result : circles.pipeline.StudyResult
        A run's result (its communities, ``edges`` layer, facilities and labels).
    folder : path-like
        Where ``<category>.<format>`` files go (a staged folder during a run).
    formats : sequence of {"png", "pdf", "svg"}
    dpi : int
        PNG resolution (dots per inch).
    categories : sequence of str, optional
        Categories to draw (default: all of the run's).
    date : str, optional
        Date shown on the figures (default: today, UTC).

    Returns
    -------
    dict
        ``"<category>.<format>"`` -> path written.
    """
    from circles import __version__
    from circles.result import utc_now
    from circles.sources import source_date

    cfg = result.config
    lang = cfg.study.lang
    cats = list(categories) or list(result.categories)
    unknown = [c for c in cats if c not in result.categories]
    if unknown:
        raise InputDataError(f"figures: {unknown} are not categories of this run")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    day = date or utc_now()[:10]
    data_date = source_date(result.network.source) if result.network.source else None
    sources = result.facilities["source"].dropna().astype(str)
    files = sorted({Path(s).name for s in sources if not s.startswith("osm")})
    extra = ", ".join(files[:3]) + (" ..." if len(files) > 3 else "")
    written: dict[str, Path] = {}
    for cat in cats:
        label = result.labels.get(cat, {}).get(lang) or cat
        fig = category_figure(
            result.communities,
            result.edges,
            result.facilities,
            category=cat,
            text=FigureText(
                study=cfg.study.name,
                label=label,
                date=day,
                speed_m_s=float(
                    cfg.walk.walk_profile(
                        result.summary.get("walking_profiles", {}).get(cat, {}).get("profile")
                        or cfg.walk.profile
                    ).speed_m_s
                ),
                basis=str(result.summary.get("residents_basis", "")),
                version=__version__,
                extra_source=extra,
                data_date=data_date,
            ),
            levels_minutes=cfg.walk.levels_minutes,
            flag_threshold=cfg.coverage.flag_threshold,
            crs=result.network.crs,
            lang=lang,
            colour_index=list(result.categories).index(cat),
        )
        for fmt in formats:
            name = f"{cat}.{fmt}"
            written[name] = save_figure(fig, out / name, dpi=dpi)
        logger.info("figure %s: %s", cat, ", ".join(formats))
    return written


def figure_content(
    result: Any, setting: dict[str, Any], digests: dict[str, Any], category: str
) -> str:
    """Content digest of one category's figures: what they draw (the category's
    community columns, its minutes and facilities), in which language and form."""
    from circles import __version__
    from circles.cache import digest, frame_digest
    from circles.result import finite_or_nan

    cfg = result.config
    comm = result.communities
    cols = [c for c in comm.columns if c.startswith(f"{category}_")]
    table = finite_or_nan(comm[["community_id", "name", *cols, comm.geometry.name]])
    return digest(
        "figure",
        category,
        frame_digest(table),
        digests["access"].get(category),
        digests.get("network"),
        setting["formats"],
        setting["dpi"],
        result.labels.get(category),
        cfg.study.lang,
        cfg.study.name,
        list(cfg.walk.levels_minutes),
        cfg.coverage.flag_threshold,
        result.summary.get("residents_basis"),
        list(result.categories).index(category),
        __version__,
    )


def figure_setting(cfg: Any, prev: dict[str, Any]) -> dict[str, Any] | None:
    """The figures to make: ``[figures]`` when enabled, else the previous run's.

    Like the report, figures once made (by ``circles figures``) are kept current by the
    later runs of the study, with the settings they were made with: the set on disk
    always shows the data of the run that ``manifest.json`` records (a run that stopped
    making them would leave figures of older data beside newer tables). Remove the
    figures folder and the next run stops making them.
    """
    f = cfg.figures
    if f.enabled:
        return {"formats": list(f.formats), "dpi": int(f.dpi), "categories": list(f.categories)}
    old = prev.get("figures")
    if isinstance(old, dict) and {"formats", "dpi", "categories"} <= set(old):
        folder = Path(str(cfg.map_dir)) / "figures"
        if folder.is_dir() and any(folder.iterdir()):
            return {k: old[k] for k in ("formats", "dpi", "categories")}
    return None
