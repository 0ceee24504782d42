"""A CJK font for Chinese figures and maps: found, checked, and subset for the web.

Chinese labels need a font that holds Chinese glyphs; without one matplotlib and the
browser draw boxes ("tofu"). :func:`find_cjk_font` looks, in order, for

1. the file named by ``CIRCLES_CJK_FONT`` (a path, or ``none`` to behave as a machine
   without CJK fonts, for tests);
2. a system font of :data:`CJK_FAMILIES` (Debian: ``apt-get install fonts-noto-cjk``);
3. Noto Sans SC from the PyPI package ``pylopdf-fonts-zh-cn`` (SIL Open Font License
   1.1; ``pip install "circles[cjk]"``),

and checks that the font really holds the glyphs of :data:`PROBE`. :func:`web_font_css`
subsets it with fontTools to just the characters a page uses and returns an
``@font-face`` rule with the subset inlined as a WOFF data: URI, so a self-contained
map shows its Chinese labels on a machine that has no CJK font at all.
"""

from __future__ import annotations

import base64
import functools
import io
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from circles._errors import DataFileError

logger = logging.getLogger(__name__)

__all__ = [
    "CJK_FAMILIES",
    "NO_CJK_FONT",
    "CjkFont",
    "cjk_characters",
    "embed_in_page",
    "find_cjk_font",
    "require_cjk_font",
    "web_font_css",
]

#: Font families that hold Simplified Chinese, in order of preference (sans-serif first).
CJK_FAMILIES: tuple[str, ...] = (
    "Noto Sans CJK SC",
    "Noto Sans SC",
    "Source Han Sans SC",
    "Source Han Sans CN",
    "WenQuanYi Micro Hei",
    "WenQuanYi Zen Hei",
    "Microsoft YaHei",
    "PingFang SC",
    "Hiragino Sans GB",
    "Heiti SC",
    "SimHei",
    "Noto Serif CJK SC",
    "AR PL UMing CN",
    "Droid Sans Fallback",
)

#: Characters a font must hold to count as a CJK font (分钟 步行 社区 覆盖率).
PROBE = "分钟步行社区覆盖率"

#: The CSS family name of the subset embedded in maps.
WEB_FAMILY = "circles-cjk"

#: What to do when no CJK font is found (said in every message about it).
NO_CJK_FONT = (
    "no CJK font found: Chinese text would be drawn as boxes. Install one: "
    '`apt-get install fonts-noto-cjk` (Debian/Ubuntu), or `pip install "circles[cjk]"` '
    "(Noto Sans SC, SIL Open Font License), or name a .ttf/.otf/.ttc file in the "
    "CIRCLES_CJK_FONT environment variable"
)


@dataclass(frozen=True)
class CjkFont:
    """A font file that holds Chinese glyphs.

    Attributes
    ----------
    path : str
        The font file (``.ttf``, ``.otf`` or a ``.ttc`` collection).
    index : int
        Face index in a collection (0 for single fonts).
    family : str
        Its family name (what matplotlib and CSS call it).
    source : str
        Where it was found: ``"environment"``, ``"system"`` or ``"pypi"``.
    """

    path: str
    index: int
    family: str
    source: str


def _covers(path: str, index: int, text: str = PROBE) -> bool:
    """Whether the font's character map holds every character of ``text``."""
    from fontTools.ttLib import TTFont

    try:
        font = TTFont(path, fontNumber=index, lazy=True)
        try:
            cmap = font.getBestCmap() or {}
        finally:
            font.close()
    except Exception as exc:  # fontTools raises many types for a bad file
        logger.info("cannot read font %s (%s)", path, exc)
        return False
    return all(ord(ch) in cmap for ch in text)


def _family(path: str, index: int) -> str:
    from fontTools.ttLib import TTFont

    font = TTFont(path, fontNumber=index, lazy=True)
    try:
        name = font["name"].getBestFamilyName()
    finally:
        font.close()
    return str(name or Path(path).stem)


def _system_font() -> CjkFont | None:
    from matplotlib import font_manager

    entries = [e for e in font_manager.fontManager.ttflist if e.name in CJK_FAMILIES]
    rank = {name: i for i, name in enumerate(CJK_FAMILIES)}
    # regular weight first, then by family preference
    entries.sort(key=lambda e: (rank[e.name], abs(int(e.weight) - 400), e.style != "normal"))
    for e in entries:
        index = int(getattr(e, "index", 0) or 0)
        if _covers(e.fname, index):
            return CjkFont(e.fname, index, e.name, "system")
    return None


def _pypi_font() -> CjkFont | None:
    try:
        import pylopdf_fonts_zh_cn
    except ImportError:
        return None
    path = str(pylopdf_fonts_zh_cn.sans_path())
    if Path(path).is_file() and _covers(path, 0):
        return CjkFont(path, 0, _family(path, 0), "pypi")
    return None


@functools.lru_cache(maxsize=4)
def _find(env: str | None) -> CjkFont | None:
    if env is not None and env.strip():
        if env.strip().lower() == "none":
            return None
        path = os.path.expanduser(env.strip())
        if not Path(path).is_file():
            raise DataFileError(f"CIRCLES_CJK_FONT={env}: no such font file")
        if not _covers(path, 0):
            raise DataFileError(f"CIRCLES_CJK_FONT={env}: the font holds no Chinese glyphs")
        return CjkFont(path, 0, _family(path, 0), "environment")
    return _system_font() or _pypi_font()


def find_cjk_font() -> CjkFont | None:
    """The CJK font to use (see the module docstring), or None when there is none.

    Raises
    ------
    DataFileError
        ``CIRCLES_CJK_FONT`` names a missing file or a font without Chinese glyphs.
    """
    found = _find(os.environ.get("CIRCLES_CJK_FONT"))
    if found is not None:
        logger.info("CJK font: %s (%s, %s)", found.family, found.path, found.source)
    return found


def require_cjk_font() -> CjkFont:
    """:func:`find_cjk_font`, or an error saying how to install one.

    Raises
    ------
    DataFileError
        No CJK font is installed (the message says how to get one).
    """
    found = find_cjk_font()
    if found is None:
        raise DataFileError(NO_CJK_FONT)
    return found


def cjk_characters(text: str) -> str:
    """The distinct characters of ``text`` that need a CJK font (sorted): CJK
    ideographs and radicals, CJK punctuation, full-width forms.

    Characters a page writes as JavaScript escapes (``\\u5e95``, as folium's JSON does
    for layer names) or as HTML character references (``&#x5e95;``, ``&#24213;``) count
    too: the browser shows them as the characters.
    """
    import html

    found = set(_CJK_RE.findall(text))  # one C-speed pass (a Python loop per character
    # took 1-2 s on a 7 MB county map)
    for hexa in re.findall(r"\\u([0-9a-fA-F]{4})", text):
        found.add(chr(int(hexa, 16)))
    for ref in re.findall(r"&#(?:x[0-9a-fA-F]+|[0-9]+);", text):
        found.add(html.unescape(ref))
    return "".join(sorted(ch for ch in found if len(ch) == 1 and _is_cjk(ord(ch))))


#: The ranges of :func:`_is_cjk` as one regular expression.
_CJK_RE = re.compile("[\u2e80-\u9fff\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef\U00020000-\U0002fa1f]")


def _is_cjk(cp: int) -> bool:
    return (
        0x2E80 <= cp <= 0x9FFF  # radicals, punctuation, kana, CJK unified ideographs
        or 0xF900 <= cp <= 0xFAFF  # compatibility ideographs
        or 0xFE30 <= cp <= 0xFE4F  # compatibility forms
        or 0xFF00 <= cp <= 0xFFEF  # full-width forms (，（）：)
        or 0x20000 <= cp <= 0x2FA1F  # extension B and beyond
    )


def web_font_css(font: CjkFont, characters: Iterable[str]) -> tuple[str, int]:
    """An ``@font-face`` rule for :data:`WEB_FAMILY` holding just ``characters``.

    Parameters
    ----------
    font : CjkFont
    characters : iterable of str
        The characters the page shows (e.g. :func:`cjk_characters` of the page).

    Returns
    -------
    css : str
        The rule, with the subset as a WOFF (zlib) data: URI.
    size : int
        Bytes of the subset font file.
    """
    from fontTools import subset

    text = "".join(sorted(set("".join(characters))))
    options = subset.Options()
    options.flavor = "woff"
    options.layout_features = ["*"]
    options.name_IDs = ["*"]
    options.notdef_outline = True
    options.hinting = False
    options.desubroutinize = False
    from fontTools.ttLib import TTFont

    tt = TTFont(font.path, fontNumber=font.index)
    try:
        sub = subset.Subsetter(options)
        sub.populate(text=text)
        sub.subset(tt)
        buf = io.BytesIO()
        tt.flavor = "woff"
        tt.save(buf)
    finally:
        tt.close()
    data = buf.getvalue()
    uri = "data:font/woff;base64," + base64.b64encode(data).decode("ascii")
    css = (
        f"@font-face{{font-family:'{WEB_FAMILY}';src:url({uri}) format('woff');"
        "font-weight:100 900;font-style:normal;font-display:block}"
    )
    return css, len(data)


#: Text of the page in the embedded CJK font first (its subset holds only CJK glyphs,
#: so Latin text falls through to the usual sans-serif fonts).
_FONT_RULE = (
    "body,.leaflet-container,.circles-panel{{font-family:'{family}',"
    "'Helvetica Neue',Arial,Helvetica,sans-serif}}"
)


def embed_in_page(page: str) -> str:
    """``page`` with a subset of a CJK font for its Chinese characters, if it has any."""
    chars = cjk_characters(page)
    if not chars:
        return page
    font = find_cjk_font()
    if font is None:
        logger.warning("%s; the map's Chinese labels rely on the reader's fonts", NO_CJK_FONT)
        return page
    css, size = web_font_css(font, chars)
    logger.info(
        "embedded %d characters of %s (%.0f kB) for the Chinese labels",
        len(chars),
        font.family,
        size / 1e3,
    )
    style = f"<style>{css}{_FONT_RULE.format(family=WEB_FAMILY)}</style>"
    at = page.find("</head>")
    return page[:at] + style + page[at:] if at >= 0 else style + page
