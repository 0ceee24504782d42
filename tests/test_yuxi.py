"""Tests of circles.yuxi: the packaged Yuxi division lists and the urban/rural rule."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SHARED

from circles import yuxi
from circles._errors import DataFileError, InputDataError


def test_counts_match_the_source() -> None:
    assert len(yuxi.areas()) == 9
    assert len(yuxi.streets()) == 76
    v = yuxi.villages()
    assert len(v) == 718
    assert v["code"].is_unique
    assert v["code"].str.fullmatch(r"\d{12}").all()
    # every village joins a township and a county
    assert v["street"].notna().all()
    assert v["county"].notna().all()
    assert v["kind"].value_counts().to_dict() == {"rural": 424, "urban": 294}


def test_hongta() -> None:
    h = yuxi.villages(county="红塔区")
    assert len(h) == 105
    assert (h["county_code"] == "530402").all()
    assert yuxi.villages(county="530402")["code"].tolist() == h["code"].tolist()
    first = h.iloc[0]
    assert (first["code"], first["name"], first["short_name"]) == (
        "530402001001",
        "荷花社区居民委员会",
        "荷花社区",
    )
    assert (first["kind"], first["kind_zh"], first["street"]) == (
        "urban",
        "社区居民委员会",
        "玉兴街道",
    )
    with pytest.raises(InputDataError, match="no county '昆明市' in Yuxi"):
        yuxi.villages(county="昆明市")


def test_kind_rule_code_and_name() -> None:
    codes = ["530402001001", "530402100201", "530427100200", "530402001250", "x", "x"]
    names = [
        "荷花社区居民委员会",
        "大营村民委员会",
        "丕且莫村委会",
        "某社区居民委员会",
        "某村委会",
        "某地",
    ]
    kinds = yuxi.kind_of(codes, names)
    # last two: the code is not a 12-digit code, so the name decides (or nothing does)
    assert kinds.tolist() == ["urban", "rural", "rural", "unknown", "rural", "unknown"]
    # 新平县's villages are named 村委会, not 村民委员会, and are still rural
    xp = yuxi.villages(county="新平彝族傣族自治县")
    assert (xp.loc[xp["name"].str.endswith("村委会"), "kind"] == "rural").all()


def test_street_types() -> None:
    s = yuxi.streets()
    assert s.loc[s["street"] == "玉兴街道", "street_type"].item() == "sub-district"
    assert set(s["street_type"]) == {"sub-district", "town", "township"}


def test_community_attributes() -> None:
    a = yuxi.community_attributes(county="红塔区")
    assert list(a.columns) == ["community_id", "name", "county", "street", "kind"]
    assert len(a) == 105


def test_shared_files() -> None:
    centres = SHARED / "yuxi" / "yuxi_township_centroids_osm.csv"
    boundary = SHARED / "yuxi" / "hongta_amap_gcj02.geojson"
    if not centres.exists() or not boundary.exists():
        pytest.skip("../shared/data/yuxi not present (optional data)")
    t = yuxi.township_centres(centres)
    assert len(t) == 76
    # every township centre names a township of the packaged list
    assert set(t["county"] + t["street"]) <= set(yuxi.streets().pipe(lambda s: s.county + s.street))
    b = yuxi.read_boundary(boundary)
    raw = yuxi.read_boundary(boundary, coord_system="wgs84")
    # GCJ-02 -> WGS84 moves Hongta west and north (the conversion itself: test_coords.py)
    dx = b.total_bounds[0] - raw.total_bounds[0]
    dy = b.total_bounds[1] - raw.total_bounds[1]
    assert dx < 0
    assert dy > 0
    assert np.isclose(dx * 101_000, -130, atol=40)
    assert np.isclose(dy * 111_000, 340, atol=40)


def test_missing_files(tmp_path) -> None:
    with pytest.raises(DataFileError, match="township centre file not found"):
        yuxi.township_centres(tmp_path / "none.csv")
    with pytest.raises(DataFileError, match="boundary file not found"):
        yuxi.read_boundary(tmp_path / "none.geojson")
