"""Facility updates: a bureau's new facility list applied to the facilities of a study.

An update file is read like any planner facility file (CSV, XLSX, GeoJSON, GeoPackage,
Shapefile; same column options). An optional ``action`` column says what each row does:
``add`` (the default when the column is absent or the cell empty) adds a new facility,
``replace`` replaces every facility with the same id (its new row is added at the end),
``remove`` removes every facility with that id (coordinates are not needed). An ``add``
of an existing id, or a ``replace``/``remove`` of an unknown id, lands in the rejects
file with its reason.

Updates come from ``[[facilities.updates]]`` and from the study's ledger
(``<output_dir>/<study>/updates/ledger.json``, written by ``circles update``: see
:mod:`circles.update`); every run applies them in order (:func:`apply_updates`), after
the study's own facilities, reusing the cached state after the longest known prefix.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from circles import io
from circles._errors import CirclesError, ConfigError, DataFileError, InputDataError, LedgerError
from circles.cache import FRAMES, Cache, Keyed, digest, sha256_file
from circles.config import StudyConfig, WalkSection
from circles.facilities import (
    FacilityFile,
    datum_fits,
    empty_facilities,
    read_facility_file,
    read_table,
    reject_reasons,
    report_datum,
    snap_at_points,
    study_area_cached,
)
from circles.facility_files import resolve_columns
from circles.network import WalkNetwork
from circles.result import Facilities, RunContext, normalise_rejects, utc_now
from circles.settings import WGS84

logger = logging.getLogger(__name__)

#: The column of an update file that says what each row does.
ACTION_COLUMN = "action"
#: Allowed actions (empty cells mean ``add``).
ACTIONS = ("add", "replace", "remove")

_REJECT_COLUMNS = ["source", "row", "facility_id", "reason"]


def ledger_path(cfg: StudyConfig) -> Path:
    """``<output_dir>/<study>/[<area>/]updates/ledger.json``."""
    return cfg.out_dir / "updates" / "ledger.json"


def read_ledger(cfg: StudyConfig) -> list[dict[str, Any]]:
    """The recorded updates of a study, oldest first (empty when none)."""
    p = ledger_path(cfg)
    if not p.exists():
        return []
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataFileError(f"{p}: unreadable update ledger ({exc}); fix or remove it") from exc
    if not isinstance(data, list):
        raise DataFileError(f"{p}: the update ledger must be a JSON list")
    return data


def update_entries(cfg: StudyConfig) -> list[dict[str, Any]]:
    """Update files to apply, in order: ``[[facilities.updates]]``, then the ledger.

    Each entry: ``spec`` (a :class:`FacilityFile` with a resolved path), ``label`` (for
    messages), ``source`` (the ``source`` value of its facilities and rejects: the path
    the update came from).
    """
    out: list[dict[str, Any]] = []
    for s in cfg.facilities.updates:
        path = cfg.resolve(s.path) or s.path
        out.append({"spec": replace(s, path=path), "label": str(path), "source": str(path)})
    book = ledger_path(cfg)
    for n, e in enumerate(read_ledger(cfg), 1):
        where = f"update {n} of {book}"
        try:
            where += f" ({e['file']}, from {e['original']})"
            copy = book.parent / e["file"]
            spec = FacilityFile(**{**e["spec"], "path": str(copy)})
        except (KeyError, TypeError) as exc:
            raise LedgerError(
                f"{where}: not a valid ledger entry ({type(exc).__name__}: {exc}); "
                + revert_hint(n),
                number=n,
                reason=str(exc),
            ) from exc
        if not copy.is_file():
            why = f"its recorded copy {copy} is missing"
            raise LedgerError(
                f"{where}: {why}; put it back or " + revert_hint(n), number=n, reason=why
            )
        out.append(
            {
                "spec": spec,
                "label": e["file"],
                "source": e["original"],
                "number": n,
                "where": where,
                "sha256": e.get("sha256"),
            }
        )
    return out


def revert_hint(number: int) -> str:
    """The advice that ends the message of a recorded update that cannot be applied."""
    return f"remove the update with `circles update STUDY.toml --revert {number}`"


def _actions(raw: pd.DataFrame, src: str) -> np.ndarray:
    if ACTION_COLUMN not in raw.columns:
        return np.full(len(raw), "add", dtype=object)
    a = raw[ACTION_COLUMN].astype("string").str.strip().str.lower().fillna("")
    return np.where(a.to_numpy(dtype=object) == "", "add", a.to_numpy(dtype=object))


def read_update(
    spec: FacilityFile,
    *,
    categories: Iterable[str],
    area: Any = None,
    source: str | None = None,
) -> tuple[gpd.GeoDataFrame, np.ndarray, pd.DataFrame]:
    """Read an update file.

    A file of removals only needs no coordinate or category columns: only rows with
    action ``add`` or ``replace`` are read as facilities.

    Returns
    -------
    rows : geopandas.GeoDataFrame
        Rows to add or replace (not yet snapped), with an ``action`` and a ``row``
        (1-based) column.
    remove_ids : numpy.ndarray
        Ids to remove (str).
    rejects : pandas.DataFrame
        Unusable rows with their reasons (every row of the file is in exactly one of
        ``rows``, ``remove_ids`` and ``rejects``).

    Raises
    ------
    InputDataError
        Rows with action ``remove`` and no id column; rows to add or replace and no
        coordinate or category column (see :func:`circles.facilities.read_facility_file`).
    """
    src = source or str(spec.path)
    raw = read_table(spec)
    n = len(raw)
    actions = _actions(pd.DataFrame(raw), src)
    # the id column as the facility-file reader finds it (编号, ID, ...: HEADERS)
    id_col = resolve_columns(pd.DataFrame(raw), spec, spatial=True).get("id", spec.id_column)
    ids = (
        raw[id_col].astype("string").str.strip().fillna("").to_numpy(dtype=object)
        if id_col in raw.columns
        else np.full(n, "", dtype=object)
    )
    is_remove = actions == "remove"
    if is_remove.any() and id_col not in raw.columns:
        raise InputDataError(f"{src}: rows with action=remove need an {id_col!r} column")
    unknown = ~np.isin(actions, ACTIONS)
    if (~is_remove & ~unknown).any():
        fac, rej = read_facility_file(spec, categories=categories, area=area, table=raw)
        rejected_pos = set((rej["row"].astype(int) - 1).tolist()) if len(rej) else set()
        ok_pos = np.array([i for i in range(n) if i not in rejected_pos], dtype=np.int64)
    else:
        # nothing to place (removals only, or no rows): no coordinates or categories needed
        fac, rej = empty_facilities(), pd.DataFrame(columns=_REJECT_COLUMNS)
        ok_pos = np.zeros(0, dtype=np.int64)
    fac = fac.copy()
    fac["action"] = actions[ok_pos] if len(ok_pos) else np.zeros(0, dtype=object)
    fac["row"] = ok_pos + 1
    # removals need only an id; whatever else is wrong with the row does not matter
    remove_pos = np.flatnonzero(is_remove & (ids != ""))
    remove_ids = np.asarray([str(ids[i]) for i in remove_pos], dtype=object)
    keep_rej = np.ones(len(rej), bool)
    if len(rej):
        rpos = rej["row"].astype(int).to_numpy() - 1
        keep_rej = ~is_remove[rpos] & ~unknown[rpos]
    rej = rej.loc[keep_rej].copy()
    extra = []
    for i in np.flatnonzero(unknown | (is_remove & (ids == ""))):
        why = (
            "remove: missing id"
            if is_remove[i]
            else f"unknown action {actions[i]!r} (use add, replace or remove)"
        )
        extra.append(
            {"source": src, "row": i + 1, "facility_id": str(ids[i]) or None, "reason": why}
        )
    rows = fac[fac["action"].isin(["add", "replace"])].reset_index(drop=True)
    rej = pd.concat(
        [rej, pd.DataFrame(extra, columns=_REJECT_COLUMNS)] if extra else [rej],
        ignore_index=True,
    )
    rej["source"] = src
    if len(rows):
        rows["source"] = src
    return rows, remove_ids, rej


def check_update(
    spec: FacilityFile, *, categories: Iterable[str], source: str | None = None
) -> dict[str, Any]:
    """Read an update file completely and say whether it can be recorded.

    Parameters
    ----------
    spec : FacilityFile
        The update file (path resolved).
    categories : iterable of str
        The categories of the study's profile.
    source : str, optional
        The file's name in messages (default: its path).

    Returns
    -------
    dict
        Row counts: ``rows``, ``add``, ``replace``, ``remove`` and ``rejected``, and
        ``rejects`` (the rejected rows: ``row``, ``facility_id``, ``reason``).

    Raises
    ------
    DataFileError
        The file cannot be read.
    InputDataError, ConfigError
        The file has no data rows, none of its rows can be used (the first reasons are
        listed), or it lacks a column its rows need.
    """
    src = source or str(spec.path)
    rows, remove_ids, rej = read_update(spec, categories=categories, source=src)
    n = len(rows) + len(remove_ids) + len(rej)
    if n == 0:
        raise InputDataError(
            f"{src}: the update file has no data rows (only a header?); add at least one "
            "row (action add, replace or remove); nothing was recorded"
        )
    if len(rows) + len(remove_ids) == 0:
        raise InputDataError(
            f"{src}: none of its {n} rows can be used ({reject_reasons(rej)}); fix the "
            "rows and try again; nothing was recorded"
        )
    act = rows["action"].astype(str) if len(rows) else pd.Series([], dtype=str)
    return {
        "rows": n,
        "add": int((act == "add").sum()),
        "replace": int((act == "replace").sum()),
        "remove": len(remove_ids),
        "rejected": len(rej),
        "rejects": rej[["row", "facility_id", "reason"]].to_dict("records"),
    }


def apply_update(
    facilities: gpd.GeoDataFrame,
    rows: gpd.GeoDataFrame,
    remove_ids: np.ndarray,
    *,
    source: str,
) -> tuple[gpd.GeoDataFrame, pd.DataFrame, dict[str, int]]:
    """Apply snapped update rows and removals to a facility table.

    Returns the new table (kept rows in their order, then the added/replacing rows in file
    order), the rejects of this step and counts (added, replaced, removed).
    """
    existing = set(facilities["facility_id"].astype(str).tolist())
    rid = rows["facility_id"].astype(str).to_numpy(dtype=object)
    act = rows["action"].to_numpy(dtype=object)
    bad_add = (act == "add") & np.isin(rid, list(existing))
    bad_rep = (act == "replace") & ~np.isin(rid, list(existing))
    rem_known = np.isin(remove_ids.astype(str), list(existing))
    rejects = pd.DataFrame(
        {
            "source": source,
            "row": np.concatenate(
                [rows["row"].to_numpy()[bad_add | bad_rep], np.full((~rem_known).sum(), np.nan)]
            ),
            "facility_id": np.concatenate([rid[bad_add | bad_rep], remove_ids[~rem_known]]),
            "reason": np.concatenate(
                [
                    np.where(
                        bad_add[bad_add | bad_rep],
                        "id already exists (use action=replace)",
                        "replace: no facility with this id",
                    ),
                    np.full((~rem_known).sum(), "remove: no facility with this id", dtype=object),
                ]
            ).astype(object),
        },
        columns=_REJECT_COLUMNS,
    )
    good = rows.loc[~(bad_add | bad_rep)]
    replaced_ids = set(good.loc[good["action"] == "replace", "facility_id"].astype(str))
    removed_ids = set(remove_ids[rem_known].astype(str).tolist())
    drop = facilities["facility_id"].astype(str).isin(replaced_ids | removed_ids).to_numpy()
    add = good.drop(columns=["action", "row"]).reindex(columns=facilities.columns)
    parts = [facilities.loc[~drop]] + ([add] if len(add) else [])
    out = gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), geometry="geometry")
    if out.crs is None:
        out = out.set_crs(WGS84)
    counts = {
        "added": int((good["action"] == "add").sum()),
        "replaced": int((good["action"] == "replace").sum()),
        "removed": int(facilities["facility_id"].astype(str).isin(removed_ids).sum()),
    }
    return out, rejects, counts


def apply_update_cached(
    facilities: gpd.GeoDataFrame,
    rejects: pd.DataFrame,
    spec: FacilityFile,
    *,
    network: WalkNetwork,
    categories: list[str],
    max_snap_m: float,
    area: Any,
    store: Cache,
    key: str,
    source_label: str,
    datum_check: str = "warn",
) -> tuple[gpd.GeoDataFrame, pd.DataFrame, dict[str, Any]]:
    """Read (or reuse from the cache, under ``key``: see :func:`_update_key`) and snap an
    update file, then apply it.

    The counts returned also hold ``datum``, the datum check of the file's added and
    replacing points (:func:`circles.facilities.datum_fits`), when it has enough points
    in China and ``datum_check`` is not ``"off"``.
    """

    def compute() -> dict[str, Any]:
        rows, remove_ids, file_rej = read_update(
            spec,
            categories=categories,
            area=area() if callable(area) else area,
            source=source_label,
        )
        snapped = snap_at_points(network, rows, max_snap_m=max_snap_m)
        as_source = replace(spec, path=source_label)
        fits = datum_fits(network, snapped, [as_source]) if datum_check != "off" else []
        return {
            "update_rows": snapped,
            "update_rejects": normalise_rejects(file_rej),
            "remove_ids": remove_ids.tolist(),
            "datum": fits,
        }

    got = store.memo("update_rows", [key], compute, codec=FRAMES).value
    rows, file_rej = got["update_rows"], got["update_rejects"]
    remove_ids = np.asarray(got["remove_ids"], dtype=object)
    new, step_rej, counts = apply_update(facilities, rows, remove_ids, source=source_label)
    all_rej = pd.concat([rejects, file_rej, step_rej], ignore_index=True)
    out: dict[str, Any] = {**counts, "rejected": len(file_rej) + len(step_rej)}
    if got.get("datum"):
        out["datum"] = got["datum"][0]
    return new, all_rej, out


def apply_updates(
    facilities: gpd.GeoDataFrame,
    rejects: pd.DataFrame,
    entries: list[dict[str, Any]],
    *,
    base_key: str,
    network: WalkNetwork,
    net_key: str,
    categories: list[str],
    max_snap_m: float,
    area: Any,
    store: Any,
    track: Any,
    datum_check: str = "warn",
) -> tuple[gpd.GeoDataFrame, pd.DataFrame, list[dict[str, Any]]]:
    """Apply update files in order, reusing the cached state after the longest known prefix.

    The facility table after updates ``1..k`` is cached under a key chained from
    ``base_key`` (the facilities before any update) and the keys of updates ``1..k``
    (file SHA-256, column options, network, categories, snapping distance). A run that
    adds an update to a ledger of ``k`` updates therefore reads the state after ``k`` and
    applies only the new one, instead of re-applying the whole ledger; the result is the
    same table, because every step is the same function of the previous state (each state
    is normalised by a Parquet round trip before the next step, in both cases).

    Parameters
    ----------
    facilities, rejects : DataFrame
        The facilities and rejects before any update.
    entries : list of dict
        From :func:`update_entries`.
    base_key : str
        Cache key of ``facilities``/``rejects``.
    network, categories, max_snap_m, area, store
        As for :func:`apply_update_cached`.
    net_key : str
        Cache key of the network (part of each update's key).
    track : callable
        ``track(name, path) -> sha256`` records an input file (for the manifest).
    datum_check : {"warn", "strict", "off"}, default "warn"
        ``[facilities] datum_check``: ``off`` measures nothing.

    Returns
    -------
    facilities, rejects : DataFrame
        After all updates.
    applied : list of dict
        Per update: ``file``, ``sha256``, ``added``, ``replaced``, ``removed``,
        ``rejected`` and, when measured, ``datum`` (:meth:`circles.datum.DatumFit.doc`).

    Raises
    ------
    LedgerError
        A recorded update (``number`` in its entry) is not the file that was recorded
        or cannot be applied; the message names the ledger entry.
    """
    shas = [track(f"update:{e['label']}", str(e["spec"].path)) for e in entries]
    for e, sha in zip(entries, shas, strict=True):
        if e.get("sha256") and sha != e["sha256"]:
            why = (
                f"its recorded copy {e['spec'].path} has changed since it was recorded "
                f"(SHA-256 {sha[:12]}..., recorded {e['sha256'][:12]}...)"
            )
            raise LedgerError(
                f"{e['where']}: {why}; restore it or " + revert_hint(e["number"]),
                number=e["number"],
                reason=why,
            )
    off = datum_check == "off"
    keys = [
        _update_key(e["spec"], net_key, sha, categories, max_snap_m, e["source"], off)
        for e, sha in zip(entries, shas, strict=True)
    ]
    chain = [base_key]
    for key in keys:
        chain.append(digest("facility_state", chain[-1], key))
    start = 0
    applied: list[dict[str, Any]] = []
    for k in range(len(entries), 0, -1):
        # probe without counting misses: only an existing state is loaded (and verified)
        if not store.exists("facility_state", chain[k], ".parquet"):
            continue
        state = FRAMES.load(store, "facility_state", chain[k])
        if state is not None:
            facilities, rejects = state["facility_state"], state["facility_state_rejects"]
            applied = list(state.get("applied", []))
            start = k
            break
    for k in range(start, len(entries)):
        e = entries[k]
        try:
            facilities, rejects, step = apply_update_cached(
                facilities,
                rejects,
                e["spec"],
                network=network,
                categories=categories,
                max_snap_m=max_snap_m,
                area=area,
                store=store,
                key=keys[k],
                source_label=e["source"],
                datum_check=datum_check,
            )
        except Exception as exc:
            if "number" not in e:
                raise
            why = str(exc) if isinstance(exc, CirclesError) else f"{type(exc).__name__}: {exc}"
            raise LedgerError(
                f"{e['where']} cannot be applied: {why}; fix the file or "
                + revert_hint(e["number"]),
                number=e["number"],
                reason=why,
            ) from exc
        applied.append({"file": e["label"], "sha256": shas[k], **step})
        state = FRAMES.save(
            store,
            "facility_state",
            chain[k + 1],
            {
                "facility_state": facilities,
                "facility_state_rejects": normalise_rejects(rejects),
                "applied": applied,
            },
        )
        facilities, rejects = state["facility_state"], state["facility_state_rejects"]
    return facilities, rejects, applied


def _update_key(
    spec: FacilityFile,
    net_key: str,
    sha256: str,
    categories: list[str],
    max_snap_m: float,
    source_label: str,
    datum_off: bool = False,
) -> str:
    spec_doc = {k: v for k, v in asdict(spec).items() if k != "path"}
    parts = [net_key, sha256, spec_doc, categories, max_snap_m, source_label, datum_off]
    return digest("update", *parts)


def _spec_doc(spec: FacilityFile) -> dict[str, Any]:
    """A spec's column options as the ledger keeps them (JSON values, no path)."""
    doc = {k: v for k, v in asdict(spec).items() if k != "path"}
    return dict(json.loads(json.dumps(doc)))


def _same_update(entry: dict[str, Any], sha: str, doc: dict[str, Any]) -> bool:
    """Whether a ledger entry is the same file (bytes) read the same way (category,
    coord_system and every other column option)."""
    if entry.get("sha256") != sha:
        return False
    recorded = {**_spec_doc(FacilityFile(path="")), **dict(entry.get("spec") or {})}
    return json.dumps(recorded, sort_keys=True) == json.dumps(doc, sort_keys=True)


def _next_number(ledger: list[dict[str, Any]]) -> int:
    """One more than the highest ``NNNN-`` prefix of the recorded copies (numbers of
    removed updates are not reused, so that no copy is overwritten)."""
    used = [int(str(e.get("file", ""))[:4]) for e in ledger if str(e.get("file", ""))[:4].isdigit()]
    return max([len(ledger), *used]) + 1


def record_update(
    cfg: StudyConfig, spec: FacilityFile, *, rows: dict[str, int] | None = None
) -> dict[str, Any] | None:
    """Copy an update file into the study folder and add it to the ledger (atomically).

    Parameters
    ----------
    cfg : StudyConfig
    spec : FacilityFile
        The update file and how to read it.
    rows : dict of str to int, optional
        The file's row counts (:func:`check_update`), kept in the entry.

    Returns
    -------
    dict or None
        The new ledger entry, or None when the same file (same SHA-256) read the same way
        (same category, coord_system and column options) is already recorded.
    """
    src = Path(cfg.resolve(spec.path) or spec.path)
    if not src.is_file():
        raise DataFileError(f"{src}: update file not found")
    sha = sha256_file(src)
    doc = _spec_doc(spec)
    ledger = read_ledger(cfg)
    if any(_same_update(e, sha, doc) for e in ledger):
        logger.info("%s is already recorded in %s", src, ledger_path(cfg))
        return None
    folder = ledger_path(cfg).parent
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{_next_number(ledger):04d}-{sha[:12]}-{src.name}"
    tmp, final = io.atomic_path(folder / name)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    if sha256_file(final) != sha:
        final.unlink(missing_ok=True)
        raise DataFileError(f"{src}: changed while being copied; try again")
    entry: dict[str, Any] = {
        "file": name,
        "sha256": sha,
        "original": str(src.resolve()),
        "applied_utc": utc_now(),
        "spec": doc,
    }
    if rows is not None:
        entry["rows"] = {k: int(v) for k, v in rows.items()}
    io.write_atomic_text(
        ledger_path(cfg), io.json_text([*ledger, entry], ensure_ascii=False, indent=2)
    )
    return entry


def remove_update(cfg: StudyConfig, number: int) -> dict[str, Any]:
    """Remove update ``number`` (1-based) from the ledger (atomically) and its copy.

    Returns
    -------
    dict
        The removed entry.

    Raises
    ------
    ConfigError
        The ledger has no update ``number``.
    """
    ledger = read_ledger(cfg)
    if not 1 <= number <= len(ledger):
        raise ConfigError(
            f"{ledger_path(cfg)}: no update {number}; the study has {len(ledger)} recorded "
            "update(s) (list them with `circles update STUDY.toml --list`)"
        )
    entry = ledger.pop(number - 1)
    io.write_atomic_text(ledger_path(cfg), io.json_text(ledger, ensure_ascii=False, indent=2))
    name = str(entry.get("file", ""))
    if name and name not in {str(e.get("file")) for e in ledger}:
        (ledger_path(cfg).parent / name).unlink(missing_ok=True)
    return entry


def study_updates(
    facilities: Keyed[dict[str, Any]],
    entries: list[dict[str, Any]],
    network: Keyed[WalkNetwork],
    categories: list[str],
    walk: WalkSection,
    ctx: RunContext,
    *,
    datum_check: str = "warn",
) -> Facilities:
    """The updates stage: ``entries`` (:func:`update_entries`) applied to the facilities.

    Parameters
    ----------
    facilities : Keyed
        The facilities stage's record and key (:func:`circles.facilities.study_facilities`).
    entries : list of dict
        The update files, in order.
    network : Keyed
        The walking network and its key (updates are snapped to it).
    categories : list of str
        The categories of the run.
    walk : WalkSection
        ``[walk]`` (its ``max_snap_m``).
    ctx : RunContext
    datum_check : {"warn", "strict", "off"}, default "warn"
        ``[facilities] datum_check``: the update files' points are checked as a study
        file's are (:func:`circles.facilities.report_datum`).

    Raises
    ------
    LedgerError
        A recorded update cannot be applied (:func:`apply_updates`).
    InputDataError
        ``datum_check = "strict"`` and an update file's points fit another datum clearly
        better.
    """
    ctx.stage("updates")
    fac, rej, applied = apply_updates(
        facilities.value["facilities"],
        facilities.value["rejects"],
        entries,
        base_key=facilities.key,
        network=network.value,
        net_key=network.key,
        categories=categories,
        max_snap_m=walk.max_snap_m,
        area=lambda: study_area_cached(network, ctx.store),
        store=ctx.store,
        track=ctx.inputs.sha,
        datum_check=datum_check,
    )
    if applied:
        ctx.say(
            "facility updates applied: "
            + "; ".join(
                f"{a['file']} (+{a['added']} -{a['removed']} ~{a['replaced']} "
                f"rejected {a['rejected']})"
                for a in applied
            )
        )
    counts = {k: int(v) for k, v in facilities.value["counts"].items()}
    counts["planner_rejected"] = len(rej)
    fits = list(facilities.value.get("datum", []))
    for e, a in zip(entries, applied, strict=True):
        if not a.get("datum"):
            continue
        fits.append(a["datum"])
        try:
            report_datum([a["datum"]], mode=datum_check)
        except InputDataError as exc:
            if "number" not in e:
                raise
            raise LedgerError(
                f"{e['where']}: {exc}; or " + revert_hint(e["number"]),
                number=e["number"],
                reason=str(exc),
            ) from exc
    return Facilities(fac, rej, applied, counts, datum=fits)
