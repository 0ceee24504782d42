"""Tests of circles.coords (WGS-84 / GCJ-02 / BD-09) against prcoords as the oracle."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import prcoords
import pytest
import shapely
from pyproj import Geod

from circles import coords
from circles._errors import ConfigError, InputDataError

GEOD = Geod(ellps="WGS84")
DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
HONGTA_GCJ02 = DATA_DIR / "yuxi" / "hongta_amap_gcj02.geojson"

# Real places outside prcoords' China box: conversions must leave them unchanged.
OUTSIDE_CHINA = {
    "Helsinki": (24.9384, 60.1699),
    "Vaduz, Liechtenstein": (9.5209, 47.1410),
    "Porto": (-8.6110, 41.1496),
    "Sydney": (151.2093, -33.8688),
    "west of the box (Kashgar meridian 71.9E)": (71.9, 39.0),
    "north of the box (55.9N)": (120.0, 55.9),
}


@pytest.fixture(scope="module")
def china_points() -> tuple[np.ndarray, np.ndarray]:
    """A 0.5-degree grid over China's extent (lon 73..135, lat 18..53) plus random points."""
    glon, glat = np.meshgrid(np.arange(73.0, 135.01, 0.5), np.arange(18.0, 53.01, 0.5))
    rng = np.random.default_rng(20240607)
    rlon = rng.uniform(73.0, 135.0, 2000)
    rlat = rng.uniform(18.0, 53.0, 2000)
    return np.concatenate([glon.ravel(), rlon]), np.concatenate([glat.ravel(), rlat])


def _oracle(
    func: Callable[..., tuple[float, float]], lon: np.ndarray, lat: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Apply a prcoords point function ((lat, lon) -> Coords(lat, lon)) to arrays."""
    out = np.array([func((la, lo)) for lo, la in zip(lon, lat, strict=True)])
    return out[:, 1], out[:, 0]


def _dist_m(lon1, lat1, lon2, lat2) -> np.ndarray:
    return np.asarray(GEOD.inv(lon1, lat1, lon2, lat2)[2])


# ----------------------------------------------------------------- forward vs prcoords


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (coords.wgs84_to_gcj02, prcoords.wgs_gcj),
        (coords.gcj02_to_bd09, prcoords.gcj_bd),
        (coords.wgs84_to_bd09, prcoords.wgs_bd),
        # the one-step closed-form inverses are prcoords' gcj_wgs and bd_gcj exactly
        (lambda lo, la: coords.gcj02_to_wgs84(lo, la, exact=False), prcoords.gcj_wgs),
        (lambda lo, la: coords.bd09_to_gcj02(lo, la, exact=False), prcoords.bd_gcj),
    ],
    ids=["wgs->gcj", "gcj->bd", "wgs->bd", "gcj->wgs rough", "bd->gcj rough"],
)
def test_matches_prcoords(ours, theirs, china_points):
    lon, lat = china_points
    exp_lon, exp_lat = _oracle(theirs, lon, lat)
    got_lon, got_lat = ours(lon, lat)
    # the conversion really moves points (hundreds of metres), so 1e-9 is meaningful
    assert np.abs(got_lon - lon).max() > 1e-3
    np.testing.assert_allclose(got_lon, exp_lon, rtol=0, atol=1e-9)
    np.testing.assert_allclose(got_lat, exp_lat, rtol=0, atol=1e-9)


# Published test vectors of other implementations (independent of prcoords):
# googollee/eviltransform's test suite (wgs lat, wgs lon, gcj lat, gcj lon) ...
EVILTRANSFORM_WGS_GCJ = [
    (31.1774276, 121.5272106, 31.17530398364597, 121.531541859215),  # Shanghai
    (22.543847, 113.912316, 22.540796131694766, 113.9171764808363),  # Shenzhen
    (39.911954, 116.377817, 39.91334545536069, 116.38404722455657),  # Beijing
]


def test_published_vectors():
    wlat, wlon, glat, glon = np.array(EVILTRANSFORM_WGS_GCJ).T
    got_lon, got_lat = coords.wgs84_to_gcj02(wlon, wlat)
    np.testing.assert_allclose(got_lon, glon, rtol=0, atol=1e-9)
    np.testing.assert_allclose(got_lat, glat, rtol=0, atol=1e-9)
    back_lon, back_lat = coords.gcj02_to_wgs84(glon, glat)
    assert _dist_m(back_lon, back_lat, wlon, wlat).max() < 1e-3
    # ... and hujiulong/gcoord's unit tests (5 decimals), at (123E, 45N)
    bd_lon, bd_lat = coords.gcj02_to_bd09(123.0, 45.0)
    assert float(bd_lon) == pytest.approx(123.00636499, abs=5e-6)
    assert float(bd_lat) == pytest.approx(45.00636899, abs=5e-6)
    w_lon, w_lat = coords.gcj02_to_wgs84(123.0, 45.0)
    assert float(w_lon) == pytest.approx(122.99395597, abs=5e-6)
    assert float(w_lat) == pytest.approx(44.99804071, abs=5e-6)


# ------------------------------------------------------------------------ inverses


@pytest.mark.parametrize(
    ("forward", "inverse"),
    [
        (coords.wgs84_to_gcj02, coords.gcj02_to_wgs84),
        (coords.wgs84_to_bd09, coords.bd09_to_wgs84),
        (coords.gcj02_to_bd09, coords.bd09_to_gcj02),
    ],
    ids=["gcj", "bd", "bd-gcj"],
)
def test_exact_inverse_round_trip(forward, inverse, china_points):
    lon, lat = china_points
    back_lon, back_lat = inverse(*forward(lon, lat))
    err_m = _dist_m(lon, lat, back_lon, back_lat)
    # required: well under 0.5 m; the iteration actually reaches far below a millimetre
    assert err_m.max() < 1e-3
    # and the other way round: forward(inverse(p)) == p
    again_lon, again_lat = forward(*inverse(lon, lat))
    assert _dist_m(lon, lat, again_lon, again_lat).max() < 1e-3


def test_inverse_of_a_point_does_not_depend_on_its_batch(china_points):
    lon, lat = china_points
    for inverse in (coords.gcj02_to_wgs84, coords.bd09_to_wgs84, coords.bd09_to_gcj02):
        batch_lon, batch_lat = inverse(lon, lat)
        for i in (0, 17, len(lon) - 1):
            alone_lon, alone_lat = inverse(lon[i], lat[i])
            assert float(alone_lon) == batch_lon[i]
            assert float(alone_lat) == batch_lat[i]


def test_rough_inverse_is_metres_off_so_exact_matters(china_points):
    lon, lat = china_points
    rough = coords.gcj02_to_wgs84(*coords.wgs84_to_gcj02(lon, lat), exact=False)
    err_m = _dist_m(lon, lat, *rough)
    assert 0.5 < err_m.max() < 10.0


def test_exact_inverse_agrees_with_prcoords_iteration(china_points):
    lon, lat = china_points
    lon, lat = lon[::5], lat[::5]
    # prcoords stops iterating at 1e-5 degrees of residual, so compare loosely
    for ours, theirs in [
        (coords.gcj02_to_wgs84, prcoords.gcj_wgs_bored),
        (coords.bd09_to_wgs84, prcoords.bd_wgs_bored),
        (coords.bd09_to_gcj02, prcoords.bd_gcj_bored),
    ]:
        exp_lon, exp_lat = _oracle(theirs, lon, lat)
        got_lon, got_lat = ours(lon, lat)
        assert _dist_m(got_lon, got_lat, exp_lon, exp_lat).max() < 0.05


# -------------------------------------------------------------------- outside China


ALL_FUNCTIONS = [
    coords.wgs84_to_gcj02,
    coords.gcj02_to_wgs84,
    coords.gcj02_to_bd09,
    coords.bd09_to_gcj02,
    coords.wgs84_to_bd09,
    coords.bd09_to_wgs84,
    lambda lo, la: coords.to_wgs84(lo, la, "gcj02"),
    lambda lo, la: coords.to_wgs84(lo, la, "bd09"),
    lambda lo, la: coords.from_wgs84(lo, la, "gcj02"),
    lambda lo, la: coords.from_wgs84(lo, la, "bd09"),
]


@pytest.mark.parametrize("func", ALL_FUNCTIONS)
def test_points_outside_china_unchanged(func):
    lon = np.array([p[0] for p in OUTSIDE_CHINA.values()])
    lat = np.array([p[1] for p in OUTSIDE_CHINA.values()])
    got_lon, got_lat = func(lon, lat)
    np.testing.assert_array_equal(got_lon, lon)
    np.testing.assert_array_equal(got_lat, lat)


def test_box_edges_match_prcoords():
    # just inside and just outside prcoords' box on each side
    lon = np.array([72.0045, 72.0035, 137.8345, 137.835, 100.0, 100.0, 100.0, 100.0])
    lat = np.array([30.0, 30.0, 30.0, 30.0, 0.8295, 0.829, 55.827, 55.8275])
    inside = np.array([True, False, True, False, True, False, True, False])
    np.testing.assert_array_equal(coords.in_china_bbox(lon, lat), inside)
    got_lon, got_lat = coords.wgs84_to_gcj02(lon, lat)
    with pytest.warns(UserWarning, match="Non-Chinese coords"):
        exp_lon, exp_lat = _oracle(prcoords.wgs_gcj, lon, lat)
    np.testing.assert_allclose(got_lon, exp_lon, rtol=0, atol=1e-9)
    np.testing.assert_allclose(got_lat, exp_lat, rtol=0, atol=1e-9)
    assert np.all(got_lon[~inside] == lon[~inside])
    assert np.all(got_lon[inside] != lon[inside])


def test_mixed_points_nan_and_no_mutation():
    lon = np.array([102.54, 24.9384, np.nan, 102.54])
    lat = np.array([24.35, 60.1699, 24.35, np.nan])
    lon_in, lat_in = lon.copy(), lat.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from NaN
        got_lon, got_lat = coords.gcj02_to_wgs84(lon, lat)
    exp = prcoords.gcj_wgs_bored((24.35, 102.54))
    assert _dist_m(got_lon[0], got_lat[0], exp.lon, exp.lat) < 0.05
    assert (got_lon[1], got_lat[1]) == (24.9384, 60.1699)
    assert np.isnan(got_lon[2])
    assert got_lat[2] == 24.35
    assert got_lon[3] == 102.54
    assert np.isnan(got_lat[3])
    np.testing.assert_array_equal(lon, lon_in)
    np.testing.assert_array_equal(lat, lat_in)


def test_scalars_lists_and_shapes():
    lon, lat = coords.wgs84_to_gcj02(102.5, 24.35)
    assert lon.shape == ()
    assert lon.dtype == np.float64
    exp = prcoords.wgs_gcj((24.35, 102.5))
    assert float(lon) == pytest.approx(exp.lon, abs=1e-12)
    assert float(lat) == pytest.approx(exp.lat, abs=1e-12)
    lon2, lat2 = coords.gcj02_to_wgs84([[102, 103], [104, 105]], 30)  # ints, broadcast
    assert lon2.shape == lat2.shape == (2, 2)
    assert lon2.dtype == np.float64
    assert float(lon2[1, 1]) == pytest.approx(float(coords.gcj02_to_wgs84(105, 30)[0]))
    empty = coords.bd09_to_wgs84(np.array([]), np.array([]))
    assert empty[0].shape == (0,)


# ----------------------------------------------------------------------- dispatchers


def test_dispatchers(china_points):
    lon, lat = china_points
    for name, fwd, inv in [
        ("gcj02", coords.wgs84_to_gcj02, coords.gcj02_to_wgs84),
        ("bd09", coords.wgs84_to_bd09, coords.bd09_to_wgs84),
    ]:
        np.testing.assert_array_equal(coords.from_wgs84(lon, lat, name)[0], fwd(lon, lat)[0])
        np.testing.assert_array_equal(coords.to_wgs84(lon, lat, name)[1], inv(lon, lat)[1])
    same = coords.to_wgs84(lon, lat, "wgs84")
    np.testing.assert_array_equal(same[0], lon)
    assert same[0] is not lon
    # planners write the names the way the map services do
    np.testing.assert_array_equal(
        coords.to_wgs84(lon, lat, "GCJ-02")[0], coords.gcj02_to_wgs84(lon, lat)[0]
    )
    np.testing.assert_array_equal(
        coords.from_wgs84(lon, lat, "BD_09")[1], coords.wgs84_to_bd09(lon, lat)[1]
    )


@pytest.mark.parametrize("bad", ["utm", "cgcs2000", "", None, 4326])
def test_invalid_coord_system(bad):
    with pytest.raises(ConfigError, match=r"use one of wgs84, gcj02, bd09"):
        coords.to_wgs84(102.5, 24.3, bad)
    with pytest.raises(ConfigError, match=r"unknown coordinate system"):
        coords.from_wgs84(102.5, 24.3, bad)
    gs = gpd.GeoSeries(shapely.points([102.5], [24.3]), crs=4326)
    with pytest.raises(ConfigError, match=r"wgs84, gcj02, bd09"):
        coords.geometry_to_wgs84(gs, bad)


def test_invalid_inputs():
    with pytest.raises(InputDataError, match=r"swapped"):
        coords.gcj02_to_wgs84([24.35], [102.54])
    with pytest.raises(InputDataError, match=r"same shape"):
        coords.wgs84_to_gcj02([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(InputDataError, match=r"must be numbers"):
        coords.to_wgs84(["102.5E"], [24.3], "gcj02")


# ------------------------------------------------------------------------ geometries


def _sample_gdf() -> gpd.GeoDataFrame:
    geoms = [
        shapely.Point(102.54, 24.35),
        shapely.LineString([(102.5, 24.3), (102.6, 24.4), (102.7, 24.35)]),
        shapely.Polygon(
            [(102.5, 24.3), (102.6, 24.3), (102.6, 24.4), (102.5, 24.3)],
            holes=[[(102.55, 24.31), (102.58, 24.31), (102.58, 24.34), (102.55, 24.31)]],
        ),
        shapely.MultiPolygon(
            [shapely.box(102.5, 24.3, 102.51, 24.31), shapely.box(9, 47, 9.1, 47.1)]
        ),
        shapely.GeometryCollection([shapely.Point(121.47, 31.23), shapely.Point(24.94, 60.17)]),
        shapely.Point(102.54, 24.35, 1630.0),
        None,
        shapely.Polygon(),
    ]
    return gpd.GeoDataFrame(
        {"name": list("abcdefgh"), "n": range(8)},
        geometry=geoms,
        crs="EPSG:4326",
        index=pd.Index([10, 11, 12, 13, 14, 15, 16, 17], name="fid"),
    )


@pytest.mark.parametrize("system", ["gcj02", "bd09"])
def test_geometry_to_wgs84_all_types(system):
    gdf = _sample_gdf()
    before = gdf.copy()
    out = coords.geometry_to_wgs84(gdf, system)
    assert isinstance(out, gpd.GeoDataFrame)
    assert out is not gdf
    # input untouched
    assert gdf.geometry.geom_equals_exact(before.geometry, tolerance=0).iloc[:6].all()
    # same frame, converted geometry
    assert out.crs.equals("EPSG:4326")
    assert list(out.columns) == list(gdf.columns)
    assert out.index.equals(gdf.index)
    assert list(out.geom_type.iloc[:6]) == list(gdf.geom_type.iloc[:6])
    assert out.geometry.iloc[6] is None
    assert out.geometry.iloc[7].is_empty
    # every vertex converted exactly as the point function does (z kept)
    src = shapely.get_coordinates(gdf.geometry.values[:6])
    got = shapely.get_coordinates(out.geometry.values[:6])
    exp_lon, exp_lat = coords.to_wgs84(src[:, 0], src[:, 1], system)
    np.testing.assert_array_equal(got[:, 0], exp_lon)
    np.testing.assert_array_equal(got[:, 1], exp_lat)
    assert shapely.get_coordinates(out.geometry.iloc[5], include_z=True)[0, 2] == 1630.0
    # Chinese vertices moved, the Liechtenstein and Helsinki parts did not
    assert out.geometry.iloc[3].geoms[1].equals_exact(gdf.geometry.iloc[3].geoms[1], 0)
    assert not out.geometry.iloc[3].geoms[0].equals_exact(gdf.geometry.iloc[3].geoms[0], 1e-4)
    assert list(out.geometry.iloc[4].geoms[1].coords) == [(24.94, 60.17)]
    assert out.geometry.iloc[0].distance(gdf.geometry.iloc[0]) > 1e-3


def test_geometry_round_trip_geoseries():
    gs = _sample_gdf().geometry.iloc[:6]
    for system in coords.COORD_SYSTEMS:
        there = coords.geometry_from_wgs84(gs, system)
        assert isinstance(there, gpd.GeoSeries)
        back = coords.geometry_to_wgs84(there, system)
        assert back.index.equals(gs.index)
        assert bool(back.geom_equals_exact(gs, tolerance=1e-10).all())


def test_geometry_requires_epsg4326_geo_objects():
    gs = gpd.GeoSeries(shapely.points([102.5], [24.3]))
    with pytest.raises(InputDataError, match=r"EPSG:4326.*set_crs\(4326\)"):
        coords.geometry_to_wgs84(gs, "gcj02")
    with pytest.raises(InputDataError, match=r"EPSG:4326"):
        coords.geometry_from_wgs84(gs.set_crs(4326).to_crs(32648), "gcj02")
    with pytest.raises(InputDataError, match=r"GeoSeries or GeoDataFrame"):
        coords.geometry_to_wgs84(shapely.points([102.5], [24.3]), "gcj02")


# ------------------------------------------------------------------------ real data


@pytest.mark.shared_data
def test_hongta_district_polygon_shift():
    if not HONGTA_GCJ02.exists():
        pytest.skip(f"shared data not found: {HONGTA_GCJ02}")
    gcj = gpd.read_file(HONGTA_GCJ02, engine="pyogrio")
    assert gcj.crs.equals("EPSG:4326")
    wgs = coords.geometry_to_wgs84(gcj, "gcj02")
    c0 = shapely.centroid(gcj.geometry.values[0])
    c1 = shapely.centroid(wgs.geometry.values[0])
    az_deg, _, dist_m = GEOD.inv(c0.x, c0.y, c1.x, c1.y)
    east_m = dist_m * np.sin(np.radians(az_deg))
    north_m = dist_m * np.cos(np.radians(az_deg))
    # measured: 140.0 m west, 320.7 m north (GCJ-02 lies that far east and south)
    assert -160.0 < east_m < -100.0
    assert 300.0 < north_m < 380.0
    # every vertex agrees with prcoords' own iterative inverse
    xy = shapely.get_coordinates(gcj.geometry.values)
    exp_lon, exp_lat = _oracle(prcoords.gcj_wgs_bored, xy[:, 0], xy[:, 1])
    got = shapely.get_coordinates(wgs.geometry.values)
    assert _dist_m(got[:, 0], got[:, 1], exp_lon, exp_lat).max() < 0.05
