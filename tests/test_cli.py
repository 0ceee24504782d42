"""The ``circles`` command line: the embedded default run, errors, version."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from circles import __version__
from circles.cli import main


@pytest.mark.slow
def test_default_run_is_helsinki_with_hexagons(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # anything written relative to the working folder stays here
    maps = tmp_path / "maps"
    assert main(["run", "--output-dir", str(tmp_path), "--maps-dir", str(maps)]) == 0
    captured = capsys.readouterr()
    out = captured.out
    # the printed summary says what stands in for missing data
    assert "study: helsinki_default" in out
    assert "(hexagon grid)" in out
    assert "residents: street length (no population data)" in out
    assert "elderly_canteen" in out
    assert "* always reported" in out
    assert "reading walking network" in captured.err  # progress goes to stderr
    # a readable summary (no Python dict) and no warning a user could not act on
    assert "{" not in out
    assert re.search(r"facilities: \d+ on the walking network", out)
    assert "WARNING" not in captured.err
    assert "inlining xstatic" not in captured.err
    wrote = [line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("wrote ")]
    assert len(wrote) >= 4
    assert all(Path(p).is_relative_to(tmp_path) for p in wrote)
    folder = tmp_path / "helsinki_default"
    for name in ("circles.gpkg", "coverage.csv", "facility_rejects.csv", "summary.json"):
        assert (folder / name).is_file()
        assert f"{folder / name}" in out  # "wrote ...: <path>"
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    assert summary["communities_derived"] == "hexagon grid"
    assert summary["residents_basis"] == "street length (no population data)"
    assert summary["network"]["crs"] == "EPSG:32635"
    assert summary["network"]["nodes"] > 5000
    assert summary["communities"] > 5
    cov = pd.read_csv(folder / "coverage.csv", encoding="utf-8-sig")
    assert (cov["residents_basis"] == "street length (no population data)").all()
    assert cov["community_id"].str.startswith("hex_").all()
    # OSM has fitness places in central Helsinki: most street length is within 15 min
    fit = cov[cov["category"] == "fitness"]
    assert (fit["share_15_min"] * fit["residents"]).sum() / fit["residents"].sum() > 0.5


def test_errors_are_reported_not_raised(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(tmp_path / "missing.toml")]) == 2
    assert "circles: error:" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text('[network]\nsource = "a.osm.pbf"\n[walk]\nsped = 1.0\n', encoding="utf-8")
    assert main(["run", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "unknown key walk.sped" in err
    missing_data = tmp_path / "nodata.toml"
    missing_data.write_text('[network]\nsource = "nowhere.osm.pbf"\n', encoding="utf-8")
    assert main(["run", str(missing_data)]) == 2
    assert "nowhere.osm.pbf: file not found" in capsys.readouterr().err


def test_version_and_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit, match="0"):
        main(["--version"])
    assert __version__ in capsys.readouterr().out
    with pytest.raises(SystemExit, match="2"):
        main([])
    assert "usage: circles" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["run", "figures", "report"])
def test_the_embedded_default_needs_no_config(command: str) -> None:
    """``circles run``, ``figures`` and ``report`` take the embedded default study when no
    TOML is given (the README's quick start runs them bare)."""
    from circles.cli import _build_parser, _config

    args = _build_parser().parse_args([command])
    assert args.config is None
    assert _config(args).study.name == "helsinki_default"
