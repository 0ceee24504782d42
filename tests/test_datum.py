"""The datum check (circles.datum) on the real Shenzhen Futian walking network.

Facility points are placed 3-30 m from random streets of the network (as a canteen
stands beside its street), in WGS84; ``prcoords`` (an independent implementation, not
circles.coords) converts them to GCJ-02 and BD-09, as Amap and Baidu would give them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import as_map_service, points_near_streets

from circles import datum
from circles._errors import ConfigError, InputDataError
from circles.facilities import street_distance

pytest.importorskip("prcoords")  # as_map_service converts with it

SHENZHEN = "china/shenzhen_futian_walk.graphml"

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def futian(shared_network):
    return shared_network(SHENZHEN)


def _read_as(declared: str, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What circles reads from file coordinates declared ``declared`` (to WGS84)."""
    from circles import coords

    return coords.to_wgs84(lon, lat, declared)


# (file's real datum, declared coord_system, the datum the check must find or None)
CASES = [
    ("gcj02", "wgs84", "gcj02"),  # Amap list read as WGS84: the most common error
    ("bd09", "gcj02", "bd09"),  # Baidu list declared Amap
    ("wgs84", "gcj02", "wgs84"),  # an OSM/GPS list declared GCJ-02
    ("bd09", "wgs84", "bd09"),
    ("gcj02", "gcj02", None),  # correct files: no warning
    ("wgs84", "wgs84", None),
    ("bd09", "bd09", None),
]


@pytest.mark.parametrize(("real", "declared", "found"), CASES)
def test_datum_fit_finds_the_datum_of_a_file(futian, real, declared, found) -> None:
    lon, lat = points_near_streets(futian, 30, seed=7)
    flon, flat = as_map_service(real, lon, lat)
    rlon, rlat = _read_as(declared, flon, flat)
    fit = datum.datum_fit(rlon, rlat, declared, street_distance(futian), source="canteens.csv")
    assert fit is not None
    assert fit.points == 30
    assert fit.better == found
    # the real datum's reading puts the points back where they were: 3-30 m from a street
    assert fit.median_m[real] <= 30.0
    if found is not None:
        assert fit.median_m[declared] >= datum.RATIO * fit.median_m[found]
        msg = fit.message()
        assert f'coord_system = "{found}"' in msg
        assert "canteens.csv" in msg
        assert f"{fit.median_m[found]:.0f} m" in msg
        assert f"{fit.median_m[declared]:.0f} m" in msg


def test_datum_check_modes(futian, caplog) -> None:
    lon, lat = points_near_streets(futian, 20, seed=3)
    glon, glat = as_map_service("gcj02", lon, lat)  # declared WGS84: read as is
    dist = street_distance(futian)
    with caplog.at_level(logging.WARNING, logger="circles.datum"):
        fit = datum.check(glon, glat, "wgs84", dist, source="a.csv", mode="warn")
    assert fit is not None
    assert fit.better == "gcj02"
    assert any('coord_system = "gcj02"' in r.getMessage() for r in caplog.records)
    with pytest.raises(InputDataError, match="strict"):
        datum.check(glon, glat, "wgs84", dist, source="a.csv", mode="strict")
    assert datum.check(glon, glat, "wgs84", dist, source="a.csv", mode="off") is None
    with pytest.raises(ConfigError, match="datum_check"):
        datum.check(glon, glat, "wgs84", dist, source="a.csv", mode="loud")


def test_no_verdict_on_few_points_or_outside_china(futian) -> None:
    lon, lat = points_near_streets(futian, 20, seed=5)
    glon, glat = as_map_service("gcj02", lon, lat)
    dist = street_distance(futian)
    few = datum.datum_fit(glon[:4], glat[:4], "wgs84", dist, source="a.csv")
    assert few is None
    # the same shapes moved to Europe: outside China every datum is WGS84
    assert datum.datum_fit(glon - 105.0, glat - 0.0, "wgs84", dist, source="a.csv") is None


def _study(tmp_path: Path, csv: Path, *, coord_system: str, mode: str = "warn") -> Path:
    net = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / SHENZHEN
    toml = tmp_path / f"study_{coord_system}_{mode}.toml"
    toml.write_text(
        f"""
[study]
name = "futian_{coord_system}_{mode}"
output_dir = "{(tmp_path / "out").as_posix()}"
maps_dir = "{(tmp_path / "maps").as_posix()}"
[network]
source = "{net.resolve().as_posix()}"
[communities]
source = "hexagons"
[facilities]
osm = false
categories = ["elderly_canteen"]
datum_check = "{mode}"
[[facilities.files]]
path = "{csv.as_posix()}"
category = "elderly_canteen"
coord_system = "{coord_system}"
[isochrones]
enabled = false
[map]
enabled = false
""",
        encoding="utf-8",
    )
    return toml


def test_run_warns_with_both_figures_and_the_fixed_file_is_right(futian, tmp_path, caplog) -> None:
    from circles.config import load_config
    from circles.pipeline import run

    lon, lat = points_near_streets(futian, 40, seed=11)
    glon, glat = as_map_service("gcj02", lon, lat)
    csv = tmp_path / "canteens_amap.csv"
    pd.DataFrame(
        {"编号": [f"C{i}" for i in range(40)], "名称": "老年幸福食堂", "经度": glon, "纬度": glat}
    ).to_csv(csv, index=False, encoding="utf-8")
    truth_csv = tmp_path / "canteens_wgs.csv"
    pd.DataFrame({"id": [f"C{i}" for i in range(40)], "lon": lon, "lat": lat}).to_csv(
        truth_csv, index=False
    )

    with caplog.at_level(logging.WARNING):
        wrong = run(load_config(_study(tmp_path, csv, coord_system="wgs84")), cache=False)
    warned = [r.getMessage() for r in caplog.records if "coord_system" in r.getMessage()]
    assert warned
    assert 'coord_system = "gcj02"' in warned[0]
    summary = json.loads(Path(wrong.outputs["summary_json"]).read_text(encoding="utf-8"))
    (doc,) = summary["datum_check"]
    assert doc["better"] == "gcj02"
    assert doc["declared"] == "wgs84"
    assert doc["points"] == 40
    assert doc["median_m"]["wgs84"] >= 2 * doc["median_m"]["gcj02"]

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        fixed = run(load_config(_study(tmp_path, csv, coord_system="gcj02")), cache=False)
    assert not [r for r in caplog.records if "coord_system" in r.getMessage()]
    truth = run(load_config(_study(tmp_path, truth_csv, coord_system="wgs84")), cache=False)
    share = "elderly_canteen_share_15"
    pd.testing.assert_series_equal(
        fixed.communities[share].reset_index(drop=True),
        truth.communities[share].reset_index(drop=True),
        atol=1e-9,
    )
    assert not np.allclose(wrong.communities[share].to_numpy(), truth.communities[share].to_numpy())

    with pytest.raises(InputDataError, match='coord_system = "gcj02"'):
        run(load_config(_study(tmp_path, csv, coord_system="wgs84", mode="strict")), cache=False)
