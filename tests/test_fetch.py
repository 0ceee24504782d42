"""Tests of circles.fetch against a local HTTP server that replays recorded answers.

The server (127.0.0.1, random port) answers Nominatim ``/nominatim/search`` and Overpass
``/api/interpreter`` requests with the JSON in ``tests/fixtures/`` (recorded from the
West-Oakland OSM extract; see ``tests/fixtures/README.md``). A socket guard refuses every
connection to a non-loopback address, so no test can reach the internet.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import geopandas as gpd
import osmnx as ox
import pandas as pd
import pytest
from shapely.geometry import Point, Polygon, box, shape

from circles._errors import ConfigError, FetchError
from circles.fetch import (
    DEFAULT_FEATURE_TAGS,
    WALK_WAY_TAGS,
    FetchResult,
    _features_table,
    default_raw_name,
    fetch_osm,
)

FIXTURES = Path(__file__).parent / "fixtures"
WALK_JSON = json.loads((FIXTURES / "overpass_walk.json").read_text(encoding="utf-8"))
FEATURES_JSON = json.loads((FIXTURES / "overpass_features.json").read_text(encoding="utf-8"))
NOMINATIM_JSON = json.loads((FIXTURES / "nominatim_search.json").read_text(encoding="utf-8"))

#: <bounds> of West-Oakland.osm.bz2, also the recorded Nominatim polygon.
WEST, SOUTH, EAST, NORTH = -122.30258, 37.80615, -122.29825, 37.80914
AREA = box(WEST, SOUTH, EAST, NORTH)
PLACE = "West Oakland, Oakland, California"

#: The 13 facilities of the recorded answer, all of which intersect AREA (checked by hand
#: against the OSM XML): (osm_type, osm_id) -> (key, value) of the matching tag.
EXPECTED_FEATURES = {
    ("node", 247472032): ("amenity", "parking"),
    ("node", 358851646): ("amenity", "place_of_worship"),
    ("node", 1747162566): ("amenity", "cafe"),
    ("node", 2405775321): ("shop", "convenience"),
    ("node", 3953117557): ("amenity", "place_of_worship"),
    ("node", 3974904876): ("shop", "bicycle"),
    ("way", 27204443): ("amenity", "school"),
    ("way", 52538635): ("amenity", "post_office"),
    ("way", 52538639): ("amenity", "post_office"),
    ("way", 121551547): ("amenity", "parking"),
    ("way", 220258194): ("leisure", "playground"),
    ("way", 220258195): ("leisure", "park"),
    ("way", 310613057): ("amenity", "parking"),
}

_OX_SETTINGS = (
    "overpass_url",
    "nominatim_url",
    "overpass_rate_limit",
    "use_cache",
    "cache_only_mode",
    "requests_timeout",
    "useful_tags_way",
)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def no_internet(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """Refuse (and record) every socket connection to a non-loopback address."""
    blocked: list[object] = []
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def allowed(address: object) -> bool:
        if isinstance(address, tuple):
            try:
                return ipaddress.ip_address(address[0]).is_loopback
            except ValueError:  # a host name: only resolved addresses are allowed
                return False
        return True  # AF_UNIX paths

    def connect(self: socket.socket, address: Any) -> None:
        if not allowed(address):
            blocked.append(address)
            raise ConnectionRefusedError(f"test guard: no internet ({address!r})")
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if not allowed(address):
            blocked.append(address)
            raise ConnectionRefusedError(f"test guard: no internet ({address!r})")
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    yield blocked
    assert blocked == [], f"a test tried to reach the internet: {blocked}"


@dataclass
class RecordedOSM:
    """State of the local server: what it answers and what it was asked."""

    url: str = ""
    #: "ok", "http500" (every request), "features500" (features query only),
    #: "no_features" (features query answered with no element).
    mode: str = "ok"
    log: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def overpass_url(self) -> str:
        return f"{self.url}/api"

    @property
    def nominatim_url(self) -> str:
        return f"{self.url}/nominatim"

    def paths(self) -> list[str]:
        return [entry["path"] for entry in self.log]


def _make_handler(state: RecordedOSM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            self._answer("GET", parts.path, parse_qs(parts.query))

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length).decode("utf-8")
            parts = urlsplit(self.path)
            params = parse_qs(parts.query)
            params.update(parse_qs(body))
            self._answer("POST", parts.path, params)

        def _answer(self, method: str, path: str, params: dict[str, list[str]]) -> None:
            query = params.get("data", params.get("q", [""]))[0]
            kind = "other"
            if path == "/nominatim/search":
                kind = "nominatim"
            elif path == "/api/interpreter" and 'way["highway"]' in query:
                kind = "network"
            elif path == "/api/interpreter" and any(
                f"['{key}']" in query or f'["{key}"]' in query for key in DEFAULT_FEATURE_TAGS
            ):
                kind = "features"
            with state.lock:
                state.log.append(
                    {
                        "method": method,
                        "path": path,
                        "kind": kind,
                        "query": query,
                        "host": self.headers.get("Host", ""),
                        # osmnx settings as seen while the fetch is running
                        "ox_overpass_url": ox.settings.overpass_url,
                        "ox_nominatim_url": ox.settings.nominatim_url,
                        "ox_use_cache": str(ox.settings.use_cache),
                    }
                )
            if state.mode == "http500" or (state.mode == "features500" and kind == "features"):
                self._send(500, b"<html><body>Internal Server Error</body></html>", "text/html")
            elif kind == "nominatim":
                self._send_json(NOMINATIM_JSON)
            elif kind == "network":
                self._send_json(WALK_JSON)
            elif kind == "features":
                if state.mode == "no_features":
                    self._send_json({"version": 0.6, "elements": []})
                else:
                    self._send_json(FEATURES_JSON)
            else:
                self._send(404, b"not recorded", "text/plain")

        def _send_json(self, obj: object) -> None:
            self._send(200, json.dumps(obj).encode("utf-8"), "application/json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@pytest.fixture
def osm_server() -> Iterator[RecordedOSM]:
    """A real HTTP server on 127.0.0.1 replaying the recorded OSM answers."""
    state = RecordedOSM()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(state))
    port = server.server_address[1]
    state.url = f"http://127.0.0.1:{port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def refused_url() -> str:
    """URL of a 127.0.0.1 port with nothing listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def ox_settings_before() -> Iterator[dict[str, object]]:
    """osmnx settings before the test, checked to be unchanged after it."""
    before = {key: getattr(ox.settings, key) for key in _OX_SETTINGS}
    before["useful_tags_way"] = list(ox.settings.useful_tags_way)
    getaddrinfo = socket.getaddrinfo  # osmnx's Overpass client replaces it
    yield before
    after = {key: getattr(ox.settings, key) for key in _OX_SETTINGS}
    assert after == before
    assert socket.getaddrinfo is getaddrinfo


def _assert_local_only(server: RecordedOSM) -> None:
    assert server.log, "the fetch sent no request to the local server"
    for entry in server.log:
        assert entry["host"] == server.url.removeprefix("http://")
        assert entry["ox_overpass_url"] == server.overpass_url
        assert entry["ox_nominatim_url"] == server.nominatim_url
        assert entry["ox_use_cache"] == "False"


# --------------------------------------------------------------------------- fetches


def _check_saved(result: FetchResult, raw_dir: Path, name: str) -> None:
    assert result.graphml_path == raw_dir / f"{name}.graphml"
    assert result.features_path == raw_dir / f"{name}_features.gpkg"
    assert result.boundary_path == raw_dir / f"{name}_boundary.geojson"
    # exactly the three files: no temporary file or folder left behind
    assert sorted(p.name for p in raw_dir.iterdir()) == sorted(
        [f"{name}.graphml", f"{name}_boundary.geojson", f"{name}_features.gpkg"]
    )

    graph = ox.load_graphml(result.graphml_path)
    assert graph.number_of_nodes() == result.n_nodes > 0
    assert graph.number_of_edges() == result.n_edges > 0
    # the graph was truncated to the area (osmnx downloads a 500 m buffer)
    inside = [AREA.buffer(1e-9).contains(Point(d["x"], d["y"])) for _, d in graph.nodes(data=True)]
    assert all(inside)
    # the recorded way ids are the only ways of the graph
    recorded_ways = {e["id"] for e in WALK_JSON["elements"] if e["type"] == "way"}
    osmids: set[int] = set()
    for _, _, data in graph.edges(data=True):
        value = data["osmid"]
        osmids.update(value if isinstance(value, list) else [value])
    assert osmids <= recorded_ways
    # the extra walking tags were kept (osmnx's defaults drop "sidewalk")
    assert any("sidewalk" in data for _, _, data in graph.edges(data=True))
    assert {d["highway"] for _, _, d in graph.edges(data=True)} >= {"footway", "residential"}

    features = gpd.read_file(result.features_path)
    assert len(features) == result.n_features
    assert features.crs.to_epsg() == 4326
    assert {"osm_type", "osm_id", "geometry", "amenity", "shop", "name"} <= set(features.columns)
    found = {
        (t, int(i)): (key, row[key])
        for t, i, row in zip(
            features["osm_type"], features["osm_id"], features.to_dict("records"), strict=True
        )
        for key in ("amenity", "shop", "leisure")
        if isinstance(row[key], str)
    }
    assert found == EXPECTED_FEATURES
    school = features[features["osm_id"] == 27204443].iloc[0]
    assert school.geometry.geom_type == "Polygon"
    assert school["name"] == "Prescott School"
    cafe = features[features["osm_id"] == 1747162566].iloc[0]
    assert cafe["amenity"] == "cafe"
    assert cafe["addr:housenumber"] == "1612"
    assert cafe.geometry.equals_exact(Point(-122.2984609, 37.8062641), 1e-7)


def test_fetch_by_polygon_writes_three_offline_files(
    osm_server: RecordedOSM, tmp_path: Path, ox_settings_before: dict[str, object]
) -> None:
    raw_dir = tmp_path / "raw"
    result = fetch_osm(
        polygon=AREA,
        name="west_oakland",
        raw_dir=raw_dir,
        overpass_url=osm_server.overpass_url,
        nominatim_url=osm_server.nominatim_url,
        timeout_s=29.2,
    )
    _check_saved(result, raw_dir, "west_oakland")
    # one network query, one features query, no geocoding and no /status request
    assert [(e["method"], e["path"], e["kind"]) for e in osm_server.log] == [
        ("POST", "/api/interpreter", "network"),
        ("POST", "/api/interpreter", "features"),
    ]
    assert osm_server.log[0]["query"].startswith("[out:json][timeout:30];")
    _assert_local_only(osm_server)
    boundary = gpd.read_file(result.boundary_path)
    assert boundary.geometry.iloc[0].equals_exact(AREA, 1e-12)
    assert boundary["name"].iloc[0] == "west_oakland"


def test_fetch_by_place_geocodes_with_local_nominatim(
    osm_server: RecordedOSM, tmp_path: Path, ox_settings_before: dict[str, object]
) -> None:
    result = fetch_osm(
        place=PLACE,
        name=default_raw_name(PLACE),
        raw_dir=tmp_path,
        overpass_url=osm_server.overpass_url,
        nominatim_url=osm_server.nominatim_url,
    )
    _check_saved(result, tmp_path, "west_oakland_oakland_california")
    assert [e["kind"] for e in osm_server.log] == ["nominatim", "network", "features"]
    assert osm_server.log[0]["method"] == "GET"
    assert osm_server.log[0]["query"] == PLACE
    _assert_local_only(osm_server)
    boundary = gpd.read_file(result.boundary_path)
    assert boundary.geometry.iloc[0].equals(shape(NOMINATIM_JSON[0]["geojson"]))
    assert boundary["place"].iloc[0] == PLACE


def test_area_without_features_saves_an_empty_layer(
    osm_server: RecordedOSM, tmp_path: Path
) -> None:
    osm_server.mode = "no_features"
    result = fetch_osm(
        polygon=AREA, name="wo", raw_dir=tmp_path, overpass_url=osm_server.overpass_url
    )
    assert result.n_features == 0
    assert result.n_nodes > 0
    features = gpd.read_file(result.features_path)
    assert len(features) == 0
    assert {"osm_type", "osm_id"} <= set(features.columns)


# --------------------------------------------------------------------------- failures


def test_http_500_raises_fetch_error_and_writes_nothing(
    osm_server: RecordedOSM, tmp_path: Path, ox_settings_before: dict[str, object]
) -> None:
    osm_server.mode = "http500"
    raw_dir = tmp_path / "raw"
    with pytest.raises(
        FetchError,
        match=r"walking network from http://127\.0\.0\.1:\d+/api/interpreter.*internet",
    ):
        fetch_osm(polygon=AREA, name="wo", raw_dir=raw_dir, overpass_url=osm_server.overpass_url)
    assert not raw_dir.exists() or list(raw_dir.iterdir()) == []
    _assert_local_only_overpass(osm_server)


def _assert_local_only_overpass(server: RecordedOSM) -> None:
    assert server.paths() == ["/api/interpreter"]
    assert server.log[0]["ox_overpass_url"] == server.overpass_url


def test_nominatim_500_names_the_search_url(osm_server: RecordedOSM, tmp_path: Path) -> None:
    osm_server.mode = "http500"
    with pytest.raises(FetchError, match=r"boundary of .*/nominatim/search.*saved \.graphml"):
        fetch_osm(
            place=PLACE,
            name="wo",
            raw_dir=tmp_path,
            overpass_url=osm_server.overpass_url,
            nominatim_url=osm_server.nominatim_url,
        )
    assert osm_server.paths() == ["/nominatim/search"]
    assert list(tmp_path.iterdir()) == []


def test_features_failure_after_network_leaves_no_graphml(
    osm_server: RecordedOSM, tmp_path: Path, ox_settings_before: dict[str, object]
) -> None:
    osm_server.mode = "features500"
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    (raw_dir / "keep.txt").write_text("unrelated", encoding="utf-8")
    with pytest.raises(FetchError, match=r"facility features from http://127\.0\.0\.1"):
        fetch_osm(polygon=AREA, name="wo", raw_dir=raw_dir, overpass_url=osm_server.overpass_url)
    assert [e["kind"] for e in osm_server.log] == ["network", "features"]
    assert sorted(p.name for p in raw_dir.iterdir()) == ["keep.txt"]


def test_connection_refused_raises_fetch_error(
    refused_url: str, tmp_path: Path, ox_settings_before: dict[str, object]
) -> None:
    with pytest.raises(
        FetchError, match=rf"from {refused_url}/api/interpreter: .*downloads OSM data only once"
    ):
        fetch_osm(polygon=AREA, name="wo", raw_dir=tmp_path, overpass_url=f"{refused_url}/api")
    assert list(tmp_path.iterdir()) == []


def test_an_existing_file_is_replaced_only_on_success(
    osm_server: RecordedOSM, tmp_path: Path
) -> None:
    old = tmp_path / "wo.graphml"
    old.write_text("previous download", encoding="utf-8")
    osm_server.mode = "features500"
    with pytest.raises(FetchError, match="facility features"):
        fetch_osm(polygon=AREA, name="wo", raw_dir=tmp_path, overpass_url=osm_server.overpass_url)
    assert old.read_text(encoding="utf-8") == "previous download"
    osm_server.mode = "ok"
    result = fetch_osm(
        polygon=AREA, name="wo", raw_dir=tmp_path, overpass_url=osm_server.overpass_url
    )
    assert ox.load_graphml(result.graphml_path).number_of_nodes() == result.n_nodes


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "exactly one of place= .* or polygon="),
        ({"place": PLACE, "polygon": AREA}, "exactly one of place="),
        ({"place": "  "}, "place must be a non-empty string"),
        ({"polygon": Point(0, 0)}, "shapely Polygon or MultiPolygon, got Point"),
        ({"polygon": box(500_000, 4_000_000, 501_000, 4_001_000)}, "not longitude/latitude"),
        (
            {"polygon": Polygon([(0, 0), (1, 1), (1, 0), (0, 1)])},
            "not a valid geometry",
        ),
        ({"polygon": AREA, "name": "a/b"}, "plain file-name stem"),
        ({"polygon": AREA, "name": ""}, "name must be a non-empty string"),
        ({"polygon": AREA, "tags": {}}, "tags must be a non-empty mapping"),
        ({"polygon": AREA, "tags": {"amenity": False}}, r"tags\['amenity'\] = False"),
        ({"polygon": AREA, "overpass_url": "overpass.example"}, "overpass_url must be an http"),
        ({"polygon": AREA, "timeout_s": 0}, "timeout_s must be a positive number"),
    ],
)
def test_invalid_arguments_raise_config_error(
    kwargs: dict[str, Any], match: str, tmp_path: Path
) -> None:
    kwargs = {"name": "wo", "raw_dir": tmp_path / "raw", **kwargs}
    with pytest.raises(ConfigError, match=match):
        fetch_osm(**kwargs)
    assert not (tmp_path / "raw").exists()


def test_without_url_arguments_osmnx_settings_are_used(
    osm_server: RecordedOSM, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With no URL argument fetch_osm uses osmnx's own settings (here: the local server).
    monkeypatch.setattr(ox.settings, "overpass_url", osm_server.overpass_url)
    monkeypatch.setattr(ox.settings, "overpass_rate_limit", False)
    result = fetch_osm(polygon=AREA, name="wo", raw_dir=tmp_path)
    assert result.n_nodes > 0
    assert ox.settings.overpass_url == osm_server.overpass_url
    assert all(tag not in ox.settings.useful_tags_way for tag in ("foot", "oneway:foot"))
    assert set(WALK_WAY_TAGS) >= {"foot", "access", "oneway:foot", "sidewalk", "area"}


def test_the_socket_guard_refuses_non_loopback_addresses(no_internet: list[object]) -> None:
    with pytest.raises(ConnectionRefusedError, match="test guard: no internet"):
        socket.create_connection(("192.0.2.1", 80), timeout=1)  # TEST-NET-1, never routed
    assert no_internet == [("192.0.2.1", 80)]
    no_internet.clear()


# --------------------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("place", "expected"),
    [
        ("Vaduz, Liechtenstein", "vaduz_liechtenstein"),
        ("红塔区, 玉溪市, 云南省, 中国", "红塔区_玉溪市_云南省_中国"),
        ("红塔区，玉溪市、云南省", "红塔区_玉溪市_云南省"),
        ("  St. Gallen / Sankt-Gallen  ", "st_gallen_sankt-gallen"),
        ("a\\b", "a_b"),
    ],
)
def test_default_raw_name(place: str, expected: str) -> None:
    assert default_raw_name(place) == expected
    assert default_raw_name(place) == default_raw_name(place)


def test_default_raw_name_long_names_stay_distinct() -> None:
    a = default_raw_name("x" * 200 + " a")
    b = default_raw_name("x" * 200 + " b")
    assert a != b
    assert len(a) == len(b) == 80
    assert a.startswith("x" * 69 + "_")


def test_default_raw_name_rejects_names_without_letters() -> None:
    with pytest.raises(ConfigError, match="no letter or digit"):
        default_raw_name(" , / ")


def test_features_table_is_storable_in_geopackage(tmp_path: Path) -> None:
    index = pd.MultiIndex.from_tuples(
        [("node", 1), ("way", 2), ("relation", 3)], names=["element", "id"]
    )
    gdf = gpd.GeoDataFrame(
        {
            "amenity": ["cafe", None, "school"],
            "NAME": ["A", "B", "C"],
            "name": ["a", "b", "c"],
            "osm_id": ["x", None, None],
            "nodes": [None, [10, 11, 12], None],
            "fid": ["f", None, None],
        },
        geometry=[Point(0, 0), box(0, 0, 1, 1), box(2, 2, 3, 3)],
        index=index,
        crs="EPSG:4326",
    )
    table = _features_table(gdf)
    path = tmp_path / "f.gpkg"
    table.to_file(path, driver="GPKG")
    back = gpd.read_file(path)
    assert back["osm_type"].tolist() == ["node", "way", "relation"]
    assert back["osm_id"].tolist() == [1, 2, 3]
    assert back["tag_osm_id"].tolist()[0] == "x"
    assert back["nodes"].tolist()[1] == "[10, 11, 12]"
    assert back["NAME"].tolist() == ["A", "B", "C"]
    assert back["tag_name"].tolist() == ["a", "b", "c"]
    assert back["tag_fid"].tolist()[0] == "f"
