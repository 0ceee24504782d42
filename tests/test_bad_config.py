"""Bad study files and command lines (issue 12): one clear line, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from circles import cli
from circles._errors import ConfigError
from circles.config import config_from_dict, load_config

BASE = '[study]\nname = "li"\n[network]\nsource = "x.osm.pbf"\n'


def _write(tmp_path: Path, text: str, *, encoding: str = "utf-8") -> Path:
    p = tmp_path / "study.toml"
    p.write_bytes(text.encode(encoding))
    return p


# --------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("[walk]\nmax_minutes = nan\n", "walk.max_minutes"),
        ("[walk]\nmax_minutes = inf\n", "walk.max_minutes"),
        ("[walk]\nlevels_minutes = [5, nan, 15]\n", "walk.levels_minutes[1]"),
        ("[walk]\nlevels_minutes = [5, 10, inf]\n", "walk.levels_minutes[2]"),
        ("[walk]\nspeed_m_s = -inf\n", "walk.speed_m_s"),
        ("[coverage]\nflag_threshold = nan\n", "coverage.flag_threshold"),
    ],
)
def test_non_finite_numbers_are_refused_at_load(tmp_path: Path, extra: str, key: str) -> None:
    # refused before anything is read or computed, naming the key
    with pytest.raises(ConfigError, match="finite") as err:
        load_config(_write(tmp_path, BASE + extra))
    assert key in str(err.value)
    assert "study.toml" in str(err.value)


def test_non_finite_numbers_are_refused_from_python_too() -> None:
    with pytest.raises(ConfigError, match=r"walk\.max_minutes = nan"):
        config_from_dict(
            {"network": {"source": "x.osm.pbf"}, "walk": {"max_minutes": float("nan")}}
        )


# --------------------------------------------------------------------------- encodings


def test_a_config_saved_with_a_bom_loads(tmp_path: Path) -> None:
    text = BASE.replace('"li"', '"红塔区"')
    cfg = load_config(_write(tmp_path, text, encoding="utf-8-sig"))
    assert cfg.study.name == "红塔区"


@pytest.mark.parametrize("encoding", ["gbk", "gb18030", "utf-16"])
def test_a_config_not_in_utf8_names_the_fix(tmp_path: Path, encoding: str) -> None:
    text = BASE.replace('"li"', '"红塔区"')
    with pytest.raises(ConfigError, match="save the study file as UTF-8"):
        load_config(_write(tmp_path, text, encoding=encoding))


def test_a_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"invalid TOML.*line 3"):
        load_config(_write(tmp_path, '[study]\nname = "li"\nsource = \n'))


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    "name",
    ["..", ".", "", "  ", ".hidden", "a/b", "a\\b", "a\x00b", "a\tb", "a\nb", "CON", "nul.txt",
     "com1", "trailing.", " lead", "trail ", "a:b", "a*b", "what?"],
)  # fmt: skip
def test_unsafe_study_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="cannot be used as a folder name"):
        config_from_dict({"study": {"name": name}, "network": {"source": "x.osm.pbf"}})


@pytest.mark.parametrize(
    "name", ["红塔区", "红塔区 2025", "Hongta district", "yuxi_2025-v2", "玉溪.1"]
)
def test_chinese_names_and_spaces_are_allowed(name: str, tmp_path: Path) -> None:
    cfg = config_from_dict(
        {"study": {"name": name, "output_dir": str(tmp_path)}, "network": {"source": "x.pbf"}}
    )
    assert cfg.study.name == name
    # the outputs stay inside the output folder
    assert cfg.study_dir.resolve().parent == tmp_path.resolve()


@pytest.mark.parametrize("section", ["areas", "scenarios"])
def test_area_and_scenario_names_follow_the_same_rules(section: str) -> None:
    entry = {"name": "..", "boundary": "b.geojson"}
    if section == "scenarios":
        entry = {"name": "..", "updates": [{"path": "a.csv", "category": "clinic"}]}
    with pytest.raises(ConfigError, match=rf"{section}\[0\]\.name"):
        config_from_dict({"network": {"source": "x.osm.pbf"}, section: [entry]})


# --------------------------------------------------------------------------- command line


@pytest.mark.parametrize("workers", ["-1", "0", "two", "1.5"])
def test_batch_workers_must_be_at_least_one(workers: str, tmp_path: Path, capsys) -> None:
    toml = _write(tmp_path, BASE)
    with pytest.raises(SystemExit) as exc:
        cli.main(["batch", str(toml), "--workers", workers])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--workers" in err
    assert "Traceback" not in err


def test_a_missing_config_is_one_line(tmp_path: Path, capsys) -> None:
    assert cli.main(["run", str(tmp_path / "nope.toml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "nope.toml" in err
    assert "not found" in err


def test_a_folder_as_config_is_one_line(tmp_path: Path, capsys) -> None:
    assert cli.main(["run", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


def _raising(exc: BaseException):
    def run(*args, **kwargs):
        raise exc

    return run


@pytest.mark.parametrize(
    ("exc", "code", "says"),
    [
        (RuntimeError("boom in a stage"), 1, "unexpected error: RuntimeError: boom in a stage"),
        (KeyboardInterrupt(), 130, "interrupted"),
        (PermissionError(13, "Permission denied", "/data/out.gpkg"), 2, "/data/out.gpkg"),
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), 2, "UTF-8"),
    ],
)
def test_failures_are_one_line_and_v_shows_the_traceback(
    tmp_path: Path, monkeypatch, capsys, exc: BaseException, code: int, says: str
) -> None:
    import circles.pipeline

    toml = _write(tmp_path, BASE)
    monkeypatch.setattr(circles.pipeline, "run", _raising(exc))
    assert cli.main(["run", str(toml)]) == code
    err = capsys.readouterr().err
    assert says in err
    assert "Traceback" not in err
    if code == 1:
        assert "-v" in err
    if not isinstance(exc, KeyboardInterrupt):
        with pytest.raises(type(exc)):
            cli.main(["-v", "run", str(toml)])
