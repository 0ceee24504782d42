"""Study configuration: unknown keys named, types checked, values validated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from circles._errors import ConfigError, DataFileError
from circles.config import HELSINKI, config_from_dict, default_config, load_config
from circles.facilities import FacilityFile

GOOD = """
[study]
name = "li"
output_dir = "out"

[network]
source = "extract.osm.pbf"

[communities]
source = "osm"
admin_level = 8
parent = "Liechtenstein"
exclude = ["Fläsch"]

[facilities]
profile = "default"
osm = false
categories = ["clinic", "elderly_canteen"]

[[facilities.files]]
path = "lists/canteens.csv"
category = "elderly_canteen"
coord_system = "gcj02"

[[facilities.files]]
path = "/abs/clinics.xlsx"
sheet = 2

[walk]
speed_m_s = 1.1
max_snap_m = 150
max_minutes = 30
levels_minutes = [5, 10, 15]

[coverage]
flag_threshold = 0.75
always_flag = ["elderly_canteen"]
"""


def _cfg(**sections: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {"network": {"source": "x.osm.pbf"}}
    data.update(sections)
    return data


def test_load_a_good_file(tmp_path: Path) -> None:
    path = tmp_path / "study.toml"
    path.write_text(GOOD, encoding="utf-8")
    cfg = load_config(path)
    assert cfg.study.name == "li"
    assert cfg.communities.exclude == ("Fläsch",)
    assert cfg.facilities.osm is False
    assert cfg.facilities.files == (
        FacilityFile(path="lists/canteens.csv", category="elderly_canteen", coord_system="gcj02"),
        FacilityFile(path="/abs/clinics.xlsx", sheet=2),
    )
    assert cfg.walk.resolved_speed_m_s == 1.1
    assert cfg.walk.levels_minutes == (5, 10, 15)
    assert cfg.coverage.always_flag == ("elderly_canteen",)
    # relative paths resolve against the configuration's folder
    assert cfg.resolve(cfg.network.source) == str(tmp_path.resolve() / "extract.osm.pbf")
    assert cfg.resolve("/abs/clinics.xlsx") == "/abs/clinics.xlsx"
    # the output folder is <output_dir>/<name>; a relative one is taken from the working folder
    assert cfg.out_dir == Path("out") / "li"


def test_defaults() -> None:
    cfg = default_config()
    assert cfg.network.source == HELSINKI
    assert cfg.resolve(HELSINKI) == HELSINKI
    assert cfg.communities.source == "hexagons"
    assert cfg.walk.resolved_speed_m_s == 1.2
    assert cfg.walk.levels_minutes == (5, 10, 15)
    assert cfg.coverage.always_flag == ("elderly_canteen", "fitness", "shelter")
    assert config_from_dict(_cfg(walk={"profile": "elderly"})).walk.resolved_speed_m_s == 0.9


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"netwrok": {"source": "x"}}, "unknown section or key 'netwrok'"),
        (_cfg(walk={"sped": 1.0}), r"unknown key walk\.sped; allowed keys in \[walk\]"),
        (_cfg(study={"name": "a", "outdir": "o"}), r"unknown key study\.outdir"),
        (
            _cfg(facilities={"files": [{"path": "a.csv", "categroy": "clinic"}]}),
            r"unknown key facilities\.files\[0\]\.categroy",
        ),
        (
            _cfg(facilities={"files": [{"path": "a.csv"}, {"path": "b.csv", "lat": "y"}]}),
            r"unknown key facilities\.files\[1\]\.lat",
        ),
    ],
)
def test_unknown_keys_are_named(data: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        config_from_dict(data)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (_cfg(walk={"max_minutes": "lots"}), r"walk\.max_minutes must be a number"),
        (_cfg(walk={"speed_m_s": True}), r"walk\.speed_m_s must be a number"),
        (_cfg(network={"source": "x", "keep_largest": "yes"}), "must be true or false"),
        (_cfg(communities={"admin_level": 8.5}), r"communities\.admin_level must be an integer"),
        (_cfg(study={"name": 7}), r"study\.name must be a string"),
        (_cfg(walk=[1, 2]), "walk must be a table"),
        (_cfg(facilities={"files": {"path": "a.csv"}}), r"array of tables"),
        (_cfg(facilities={"files": [{"category": "clinic"}]}), r"facilities\.files\[0\].*path"),
        (_cfg(walk={"levels_minutes": ["5", "x"]}), r"walk\.levels_minutes"),
        (_cfg(walk={"levels_minutes": 15}), r"walk\.levels_minutes"),
        (_cfg(coverage={"always_flag": "fitness"}), r"coverage\.always_flag"),
    ],
)
def test_bad_types(data: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        config_from_dict(data)


def test_sheet_may_be_a_name_or_a_number() -> None:
    for sheet in ("Canteens", 0):
        cfg = config_from_dict(_cfg(facilities={"files": [{"path": "a.xlsx", "sheet": sheet}]}))
        assert cfg.facilities.files[0].sheet == sheet
    with pytest.raises(ConfigError, match=r"facilities\.files\[0\]\.sheet"):
        config_from_dict(_cfg(facilities={"files": [{"path": "a.xlsx", "sheet": 1.5}]}))


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (_cfg(walk={"levels_minutes": [5, 15, 10]}), "positive and increasing"),
        (_cfg(walk={"levels_minutes": [5, 5, 15]}), "positive and increasing"),
        (_cfg(walk={"levels_minutes": [0, 10]}), "positive and increasing"),
        (_cfg(walk={"levels_minutes": []}), "positive and increasing"),
        (_cfg(walk={"max_minutes": 10}), r"max_minutes \(10\) must be >= the largest level"),
        (_cfg(walk={"profile": "sprint"}), r"walk\.profile 'sprint' is not a walking profile"),
        (_cfg(walk={"speed_m_s": 12.0}), "is not a walking speed"),
        (_cfg(coverage={"flag_threshold": 80}), "share between 0 and 1"),
        ({"study": {"name": "x"}}, "exactly one of `source`"),
        ({"network": {"source": "a.pbf", "place": "Vaduz"}}, "exactly one of `source`"),
        (_cfg(study={"name": "a/b"}), "slash"),
        (_cfg(study={"lang": "fr"}), "'en' or 'zh'"),
    ],
)
def test_bad_values(data: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        config_from_dict(data)


def test_place_instead_of_source() -> None:
    cfg = config_from_dict({"network": {"place": "Vaduz, Liechtenstein"}})
    assert cfg.network.place == "Vaduz, Liechtenstein"
    assert cfg.network.source is None


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="study configuration not found"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[study\nname = 1", encoding="utf-8")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(bad)
    typo = tmp_path / "typo.toml"
    typo.write_text('[network]\nsource = "a.pbf"\n[walk]\nspeeed = 1\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"unknown key walk\.speeed"):
        load_config(typo)
