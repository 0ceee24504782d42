"""Tests of circles.styles: QGIS styles embedded in the GeoPackage.

Every stored style is read back and checked against the columns of the layer it styles
(:func:`circles.styles.check_qml`); when Debian's QGIS (``python3-qgis``) is installed,
QGIS itself opens the GeoPackage offscreen (tests/qgis/load_styles.py) and must apply
the default styles. `.ci/run` installs it (about 40 s), so CI runs both checks; without
QGIS the QGIS test skips with the command to install it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pyogrio
import pytest

from circles._errors import InputDataError
from circles.palette import SHARE_COLOURS
from circles.styles import _rgba, check_qml, communities_qml, edges_qml

SYSTEM_PYTHON = Path("/usr/bin/python3")
LOADER = Path(__file__).parent / "qgis" / "load_styles.py"


def _styles(gpkg: str) -> list[tuple]:
    con = sqlite3.connect(gpkg)
    try:
        return con.execute(
            "SELECT f_table_name, f_geometry_column, styleName, styleQML, useAsDefault "
            "FROM layer_styles"
        ).fetchall()
    finally:
        con.close()


@pytest.mark.slow
def test_every_style_parses_against_its_layer(helsinki_zh_run):
    res = helsinki_zh_run
    gpkg = res.outputs["gpkg"]
    rows = _styles(gpkg)
    layers = {name for name, _ in pyogrio.list_layers(gpkg)}
    assert "layer_styles" in layers  # registered as QGIS registers it
    con = sqlite3.connect(gpkg)
    kind = con.execute(
        "SELECT data_type FROM gpkg_contents WHERE table_name = 'layer_styles'"
    ).fetchone()
    con.close()
    assert kind == ("attributes",)
    cats = list(res.categories)
    by_layer: dict[str, list] = {}
    for table, geom, name, qml, default in rows:
        assert geom == "geom"
        fields = list(pyogrio.read_info(gpkg, layer=table)["fields"])
        got = check_qml(qml, fields=fields)
        assert got["renderer"] == "RuleRenderer"
        by_layer.setdefault(table, []).append((name, default, got))
    # a style per category for communities and streets; one for facilities and rings
    assert len(by_layer["communities"]) == len(by_layer["edges"]) == len(cats)
    assert len(by_layer["facilities"]) == 1
    assert {"isochrones", "service_areas"} <= set(by_layer)
    for table, styles in by_layer.items():
        assert sum(d for _, d, _ in styles) == 1, table  # one default each
    # the default is fitness (it has facilities in Helsinki), named in Chinese
    (default,) = [s for s in by_layer["communities"] if s[1]]
    assert default[0] == res.labels["fitness"]["zh"]
    rules = default[2]["rules"]
    assert [r[0] for r in rules][:5] == ["0–20%", "20–40%", "40–60%", "60–80%", "80–100%"]
    assert rules[0][1] == '"fitness_share_15" >= 0.0 AND "fitness_share_15" < 0.2'
    assert rules[4][1].endswith('"fitness_share_15" <= 1.0')  # 100% in the top class
    assert ("未达标", '"fitness_flag" = 1') in rules
    streets = next(s for s in by_layer["edges"] if s[1])[2]["rules"]
    assert [r[1] for r in streets] == [
        '"fitness_min" <= 5',
        '"fitness_min" <= 10 AND "fitness_min" > 5',
        '"fitness_min" <= 15 AND "fitness_min" > 10',
        "ELSE",
    ]


def test_the_map_classes_and_colours_are_the_styles():
    qml = communities_qml("fitness", top_level="15")
    for colour in SHARE_COLOURS:
        assert _rgba(colour, 0.65) in qml
    assert len(check_qml(qml, fields=["name", "fitness_share_15", "fitness_flag"])["rules"]) == 7


def test_check_qml_finds_what_qgis_could_not_use():
    good = edges_qml("fitness", levels_minutes=[5, 10, 15])
    with pytest.raises(InputDataError, match=r"unknown fields \['fitness_min'\]"):
        check_qml(good, fields=["clinic_min"])
    with pytest.raises(InputDataError, match="missing symbol"):
        check_qml(good.replace('symbol="1"', 'symbol="9"'))
    with pytest.raises(InputDataError, match="not well-formed"):
        check_qml(good[:-20])
    with pytest.raises(InputDataError, match="is not r,g,b,a"):
        check_qml(good.replace("26,150,65,255", "26,150,65"))
    with pytest.raises(InputDataError, match="layerGeometryType"):
        check_qml(good.replace("<layerGeometryType>1<", "<layerGeometryType>2<"))


def _qgis_available() -> bool:
    if not SYSTEM_PYTHON.exists():
        return False
    probe = subprocess.run(
        [str(SYSTEM_PYTHON), "-c", "import qgis.core"], capture_output=True, timeout=60
    )
    return probe.returncode == 0


@pytest.mark.slow
def test_qgis_opens_the_geopackage_styled(helsinki_zh_run, tmp_path):
    if not _qgis_available():
        pytest.skip("Debian's QGIS is absent: apt-get install python3-qgis to run this test")
    png = tmp_path / "qgis.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "HOME": str(tmp_path)}
    done = subprocess.run(
        [str(SYSTEM_PYTHON), str(LOADER), helsinki_zh_run.outputs["gpkg"], str(png)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    for layer in ("communities", "edges", "facilities", "isochrones", "service_areas"):
        assert got[layer]["valid"], layer
        assert got[layer]["renderer"] == "RuleRenderer", layer
    assert got["communities"]["rules"][-1] == "未达标"
    assert got["communities"]["labels"] is True
    assert got["communities"]["n_default"] == len(helsinki_zh_run.categories)
    assert got["edges"]["filters"][0] == '"fitness_min" <= 5'
    assert got["errors"] == []
    from PIL import Image

    with Image.open(png) as img:
        assert len(img.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 20


def test_write_styles_leaves_the_same_styles_untouched(tmp_path):
    """An update's in-place copy already holds the styles: writing the same ones again
    changes nothing (ids and times kept); other styles replace them."""
    import geopandas as gpd
    from shapely.geometry import box

    from circles.styles import study_styles, write_styles

    gpkg = tmp_path / "s.gpkg"
    gpd.GeoDataFrame({"community_id": ["a"]}, geometry=[box(0, 0, 1, 1)], crs=4326).to_file(
        gpkg, layer="communities", driver="GPKG", engine="pyogrio"
    )

    def styles(opening: str):
        return study_styles(
            ["fitness", "shelter"],
            {},
            levels_minutes=[5, 10, 15],
            lang="en",
            default_category=opening,
            layers=["communities"],
        )

    def table():
        with sqlite3.connect(gpkg) as con:
            return con.execute(
                'SELECT id, update_time, styleName, useAsDefault FROM "layer_styles" ORDER BY id'
            ).fetchall()

    write_styles(gpkg, styles("fitness"))
    first = table()
    with sqlite3.connect(gpkg) as con:  # mark the rows: a rewrite would drop the mark
        con.execute("UPDATE layer_styles SET update_time = 'marked'")
    write_styles(gpkg, styles("fitness"))
    assert [r[0] for r in table()] == [r[0] for r in first]
    assert {r[1] for r in table()} == {"marked"}
    write_styles(gpkg, styles("shelter"))  # another default: rewritten
    assert "marked" not in {r[1] for r in table()}
    assert [r[3] for r in table()] != [r[3] for r in first]
    assert pyogrio.list_layers(gpkg).tolist()  # still a GeoPackage GDAL reads
