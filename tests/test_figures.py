"""Tests of circles.figures: report figures per category, their parts, Chinese fonts.

The embedded Helsinki default (always available) is run once; the figures' artists are
checked (title, legend naming the category and units, north arrow, metric scale bar,
source line), not only the files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from circles import fonts
from circles._errors import DataFileError
from circles.figures import GIDS, FigureText, _fonts, _nice_length, category_figure, save_figure
from circles.pipeline import StudyResult


@pytest.fixture(scope="module")
def helsinki(helsinki_zh_run) -> StudyResult:
    """Helsinki in Chinese, with figures of every category (small PNGs, fast)."""
    return helsinki_zh_run


def _by_gid(fig, gid: str) -> list:
    return [a for a in fig.findobj() if a.get_gid() == gid]


def _text(result: StudyResult, cat: str, lang: str) -> FigureText:
    return FigureText(
        study="Helsinki",
        label=result.labels[cat][lang],
        date="2025-06-01",
        speed_m_s=1.2,
        basis=str(result.summary["residents_basis"]),
        version="test",
    )


@pytest.mark.slow
def test_a_figure_for_every_category_in_the_transaction(helsinki):
    figs = {k: Path(p) for k, p in helsinki.outputs.items() if k.startswith("figure:")}
    assert sorted(figs) == sorted(f"figure:{c}.png" for c in helsinki.categories)
    for path in figs.values():
        assert path.parent.name == "figures"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(figs["figure:fitness.png"]) as img:
        # 180 mm x 150 mm at 50 dpi
        assert img.size == (round(180 / 25.4 * 50), round(150 / 25.4 * 50))
    man = helsinki.manifest
    assert man["figures"] == {"formats": ["png"], "dpi": 50, "categories": []}
    assert all(man["outputs"][k]["root"] == "maps" for k in figs)


@pytest.mark.slow
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_category_figure_has_its_parts(helsinki, lang):
    import matplotlib.patches

    levels = helsinki.config.walk.levels_minutes
    for cat in helsinki.categories:
        label = helsinki.labels[cat][lang]
        fig = category_figure(
            helsinki.communities,
            helsinki.edges,
            helsinki.facilities,
            category=cat,
            text=_text(helsinki, cat, lang),
            levels_minutes=levels,
            crs=helsinki.network.crs,
            lang=lang,
        )
        (title,) = _by_gid(fig, GIDS["title"])
        assert label in title.get_text()
        assert "15" in title.get_text()
        (legend,) = _by_gid(fig, GIDS["legend"])
        assert legend.get_title().get_text() == label
        entries = [t.get_text() for t in legend.get_texts()]
        assert any("%" in e for e in entries)  # the share's unit
        unit = "min" if lang == "en" else "分钟"
        assert sum(unit in e for e in entries) >= 4  # the streets' classes in minutes
        (north,) = _by_gid(fig, GIDS["north"])
        assert north.get_text() == ("N" if lang == "en" else "北")
        bars = [
            a for a in _by_gid(fig, GIDS["scale"]) if isinstance(a, matplotlib.patches.Rectangle)
        ]
        assert len(bars) == 4
        # the bar is a round number of metres (the axes are in the study's UTM metres)
        ax = fig.axes[0]
        span = np.diff(ax.get_xlim())[0]
        length = sum(b.get_width() for b in bars)
        assert length == pytest.approx(_nice_length(span))
        labels = [a.get_text() for a in _by_gid(fig, GIDS["scale"]) if hasattr(a, "get_text")]
        (label,) = labels  # one label over the bar: its length and unit
        units = {"m": 1, "km": 1000} if lang == "en" else {"米": 1, "千米": 1000}
        number, unit = label.split(" ")
        assert float(number) * units[unit] == pytest.approx(length)
        (source,) = _by_gid(fig, GIDS["source"])
        assert "OpenStreetMap" in source.get_text()
        assert "2025-06-01" in source.get_text()
        # streets are drawn: one line per piece of the edges layer
        n_lines = sum(len(c.get_segments()) for c in ax.collections if hasattr(c, "get_segments"))
        assert n_lines >= len(helsinki.edges)


def test_nice_scale_lengths():
    assert _nice_length(2400.0) == 500.0
    assert _nice_length(1700.0) == 200.0
    assert _nice_length(45_000.0) == 10_000.0
    assert _nice_length(3.0) == 1.0


def _zh_canteen_figure(helsinki):
    """The Chinese elderly-canteen figure of the Helsinki run."""
    return category_figure(
        helsinki.communities,
        helsinki.edges,
        helsinki.facilities,
        category="elderly_canteen",
        text=_text(helsinki, "elderly_canteen", "zh"),
        crs=helsinki.network.crs,
        lang="zh",
    )


@pytest.mark.slow
def test_chinese_figure_uses_a_cjk_font(helsinki, tmp_path):
    from fontTools.ttLib import TTFont
    from matplotlib import font_manager

    if fonts.find_cjk_font() is None:
        pytest.skip(fonts.NO_CJK_FONT)
    fig = _zh_canteen_figure(helsinki)
    # drawing it must not miss a glyph (matplotlib warns, and warnings are errors here)
    png = save_figure(fig, tmp_path / "zh.png", dpi=40)
    assert png.stat().st_size > 1000
    with _fonts("zh"):
        for gid in ("title", "subtitle", "source"):
            (text,) = _by_gid(fig, GIDS[gid])
            chars = fonts.cjk_characters(text.get_text())
            assert chars, gid
            path = font_manager.findfont(text.get_fontproperties(), fallback_to_default=False)
            entry = next(e for e in font_manager.fontManager.ttflist if e.fname == path)
            font = TTFont(str(path), fontNumber=int(entry.index or 0), lazy=True)
            try:
                cmap = font.getBestCmap()
            finally:
                font.close()
            assert all(ord(c) in cmap for c in chars), gid
    assert "未达标" in _by_gid(fig, GIDS["subtitle"])[0].get_text()
    # no English left from the data's vocabulary
    assert "street length" not in _by_gid(fig, GIDS["source"])[0].get_text()


def test_no_cjk_font_is_said_not_drawn_as_boxes(monkeypatch):
    monkeypatch.setenv("CIRCLES_CJK_FONT", "none")
    with pytest.raises(DataFileError, match=r"no CJK font found.*fonts-noto-cjk"):
        fonts.require_cjk_font()
    with pytest.raises(DataFileError, match="no CJK font found"), _fonts("zh"):
        pass
    monkeypatch.setenv("CIRCLES_CJK_FONT", "/nonexistent/font.otf")
    with pytest.raises(DataFileError, match="no such font file"):
        fonts.find_cjk_font()


@pytest.mark.slow
def test_unchanged_figures_are_kept(helsinki):
    from circles.pipeline import run

    before = {k: Path(p).stat().st_mtime_ns for k, p in helsinki.outputs.items() if "figure:" in k}
    again = run(helsinki.config)
    assert [k for k in again.manifest["outputs_changed"] if k.startswith("figure:")] == []
    after = {k: Path(p).stat().st_mtime_ns for k, p in again.outputs.items() if "figure:" in k}
    assert after == before


def _regular_only_font(fig, folder: Path) -> Path | None:
    """A CJK font with a regular face only: the PyPI font of ``circles[cjk]`` when it is
    installed, else a subset of the system's CJK font (the characters ``fig`` draws)
    under a family name of its own, which has no bold face."""
    try:
        import pylopdf_fonts_zh_cn

        return Path(pylopdf_fonts_zh_cn.sans_path())
    except ImportError:
        pass
    font = fonts.find_cjk_font()
    if font is None:
        return None
    from fontTools import subset
    from fontTools.ttLib import TTFont
    from matplotlib.text import Text

    chars = {c for t in fig.findobj(Text) for c in t.get_text()} | set(fonts.PROBE)
    tt = TTFont(font.path, fontNumber=font.index)
    sub = subset.Subsetter(subset.Options())
    sub.populate(text="".join(sorted(chars)))
    sub.subset(tt)
    for rec in tt["name"].names:
        if rec.nameID in (1, 4, 16):
            rec.string = "Circles Regular Only"
        elif rec.nameID == 6:
            rec.string = "CirclesRegularOnly"
    out = folder / "regular_only.otf"
    tt.save(str(out))
    return out


@pytest.mark.slow
def test_a_cjk_font_without_bold_draws_without_findfont_warnings(
    helsinki, tmp_path, monkeypatch, caplog
):
    from circles.figures import has_bold

    def draw():
        return _zh_canteen_figure(helsinki)

    if fonts.find_cjk_font() is None:
        pytest.skip(fonts.NO_CJK_FONT)
    path = _regular_only_font(draw(), tmp_path)
    if path is None:
        pytest.skip("no CJK font without a bold face (pip install 'circles[cjk]')")
    monkeypatch.setenv("CIRCLES_CJK_FONT", str(path))
    fonts._find.cache_clear()
    try:
        found = fonts.find_cjk_font()
        assert found is not None
        with _fonts("zh") as bold:
            assert not has_bold(found.family)
            assert bold == "normal"
        with caplog.at_level("WARNING", logger="matplotlib.font_manager"):
            fig = draw()
            save_figure(fig, tmp_path / "zh.png", dpi=30)
        assert not [r for r in caplog.records if "weight" in r.getMessage()]
        (title,) = _by_gid(fig, GIDS["title"])
        assert title.get_fontweight() == "normal"
    finally:
        fonts._find.cache_clear()
    # a font with a bold face keeps its bold titles
    with _fonts("en") as bold:
        assert bold == "bold"


def _pbf_with_timestamp(path: Path, stamp: int | None) -> Path:
    """A PBF file holding only a header block (osmosis_replication_timestamp ``stamp``)."""
    import struct
    import zlib

    def varint(n: int) -> bytes:
        out = b""
        while True:
            b, n = n & 0x7F, n >> 7
            out += bytes([b | (0x80 if n else 0)])
            if not n:
                return out

    def field(number: int, value: int | bytes) -> bytes:
        if isinstance(value, int):
            return varint(number << 3) + varint(value)
        return varint(number << 3 | 2) + varint(len(value)) + value

    header = field(4, b"OsmSchema-V0.6") + field(16, b"test")
    if stamp is not None:
        header += field(32, stamp)
    blob = field(2, len(header)) + field(3, zlib.compress(header))
    blob_header = field(1, b"OSMHeader") + field(3, len(blob))
    path.write_bytes(struct.pack(">I", len(blob_header)) + blob_header + blob)
    return path


def test_source_date_reads_the_extract_timestamp(tmp_path):
    import bz2
    import os

    from circles.sources import source_date

    stamp = 1438031641  # 2015-07-27T21:14:01Z, the shared Liechtenstein extract's
    assert source_date(_pbf_with_timestamp(tmp_path / "a.osm.pbf", stamp)) == (
        "2015-07-27",
        "extract",
    )
    bare = _pbf_with_timestamp(tmp_path / "b.osm.pbf", None)
    os.utime(bare, (1700000000, 1700000000))  # 2023-11-14
    assert source_date(bare) == ("2023-11-14", "file")
    xml = tmp_path / "c.osm.bz2"
    xml.write_bytes(
        bz2.compress(b'<?xml version="1.0"?>\n<osm version="0.6" timestamp="2024-05-01T20:00:00Z">')
    )
    assert source_date(xml) == ("2024-05-01", "extract")
    assert source_date(tmp_path / "missing.pbf") is None


@pytest.mark.slow
@pytest.mark.parametrize(
    ("lang", "kind", "words"),
    [
        ("en", "extract", "© OpenStreetMap contributors (ODbL 1.0), extract of 2015-07-27"),
        ("zh", "extract", "© OpenStreetMap 贡献者（ODbL 1.0），数据截至2015-07-27"),
        ("en", "file", "(ODbL 1.0), input file modified 2015-07-27"),
        ("zh", "file", "（ODbL 1.0），输入文件修改日期2015-07-27"),
    ],
)
def test_the_source_line_dates_the_data(helsinki, lang, kind, words):
    from dataclasses import replace

    if lang == "zh" and fonts.find_cjk_font() is None:
        pytest.skip(fonts.NO_CJK_FONT)
    text = replace(_text(helsinki, "fitness", lang), data_date=("2015-07-27", kind))
    fig = category_figure(
        helsinki.communities,
        helsinki.edges,
        helsinki.facilities,
        category="fitness",
        text=text,
        crs=helsinki.network.crs,
        lang=lang,
    )
    (source,) = _by_gid(fig, GIDS["source"])
    assert words in source.get_text()
    assert "2025-06-01" in source.get_text()  # and the run's date


def test_figures_once_made_are_kept_current(tmp_path):
    """After `circles figures`, later runs redraw the figures with the settings they were
    made with (like the report), so the figures on disk show the run the manifest
    records; with the figures folder removed, runs stop making them."""
    from dataclasses import replace

    from circles.config import default_config
    from circles.figures import figure_setting

    cfg = default_config()
    cfg = replace(cfg, study=replace(cfg.study, maps_dir=str(tmp_path)))
    assert not cfg.figures.enabled
    prev = {"figures": {"formats": ["png"], "dpi": 300, "categories": []}}
    folder = tmp_path / cfg.study.name / "figures"
    folder.mkdir(parents=True)
    (folder / "park.png").write_bytes(b"png")
    assert figure_setting(cfg, prev) == prev["figures"]
    assert figure_setting(cfg, {}) is None
    (folder / "park.png").unlink()
    assert figure_setting(cfg, prev) is None  # the planner removed them
    on = replace(cfg, figures=replace(cfg.figures, enabled=True, dpi=150))
    assert figure_setting(on, {})["dpi"] == 150
