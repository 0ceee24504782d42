"""Incremental updates: a bureau's new facility list applied to an existing study.

``circles update study.toml --facilities new_canteens.csv`` (:func:`update`):

1. reads the update file like any planner facility file (CSV, XLSX, GeoJSON, GeoPackage,
   Shapefile; same column options). An optional ``action`` column says what each row
   does: ``add`` (the default when the column is absent or the cell empty) adds a new
   facility, ``replace`` replaces every facility with the same id (its new row is added
   at the end), ``remove`` removes every facility with that id (coordinates are not
   needed). An ``add`` of an existing id, or a ``replace``/``remove`` of an unknown id,
   lands in the rejects file with its reason (and unknown ids are listed in a warning).
   The whole file is checked first (:func:`circles.ledger.check_update`): a file with no
   data rows or no usable row is an error and nothing is recorded;
2. records it in the study folder: the file is copied to
   ``<output_dir>/<study>/updates/NNNN-<sha256[:12]>-<name>`` and listed (with its
   SHA-256, original path, column options, ``coord_system`` and time) in
   ``updates/ledger.json``. Every later ``circles run`` of the study applies the
   recorded updates in order, after the configured ``[[facilities.updates]]``; the same
   file (same bytes) read the same way (category, ``coord_system``, column options) is
   recorded only once;
3. runs the study (:func:`circles.pipeline.run`); when that run fails (a strict datum
   check included) the record is taken back. Everything upstream is reused from the
   cache: only the categories whose snapped facilities changed get new walking minutes
   and service areas; coverage, reports and the map are refreshed; outputs whose content
   did not change are left as they are.

:func:`recorded_updates` lists the ledger (``circles update --list``) and :func:`revert`
removes an update from it and reruns (``circles update --revert N``).

The result is identical to a full run whose configuration lists the same file under
``[[facilities.updates]]`` (or, for a file of additions only, under
``[[facilities.files]]``) with an empty cache. Reading and applying update files is the
updates stage of every run (:mod:`circles.ledger`); this module sits above
:mod:`circles.pipeline` and only records an update and runs the study.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from circles._errors import CirclesError, ConfigError, InputDataError, LedgerError
from circles.categories import load_profile
from circles.config import StudyConfig, check_study, select_area
from circles.datum import DATUMS
from circles.facilities import FacilityFile
from circles.ledger import (
    ACTION_COLUMN,
    ACTIONS,
    apply_update,
    apply_update_cached,
    apply_updates,
    check_update,
    ledger_path,
    read_ledger,
    read_update,
    record_update,
    reject_reasons,
    remove_update,
    update_entries,
)
from circles.pipeline import run
from circles.transaction import study_lock

logger = logging.getLogger(__name__)

__all__ = [
    "ACTIONS",
    "ACTION_COLUMN",
    "apply_update",
    "apply_update_cached",
    "apply_updates",
    "check_update",
    "ledger_path",
    "read_ledger",
    "read_update",
    "record_update",
    "recorded_updates",
    "remove_update",
    "revert",
    "update",
    "update_entries",
]


def update(
    cfg: StudyConfig,
    facilities: FacilityFile | str | os.PathLike[str],
    *,
    category: str | None = None,
    coord_system: str | None = None,
    progress: Any = None,
    area: str | None = None,
    wait_s: float = 0.0,
) -> Any:
    """Apply a facility update file to a study and refresh its outputs.

    The file is read and checked completely first (:func:`circles.ledger.check_update`);
    it is recorded only when it is usable, and the record is taken back when the run
    that applies it fails (a ``[facilities] datum_check = "strict"`` stop included), so
    that a failed update leaves the ledger as it was.

    Parameters
    ----------
    cfg : StudyConfig
        The study.
    facilities : FacilityFile or path
        The update file (a path: default column options; ``category`` for all rows).
    category : str, optional
        Category of every row of a plain path (else the file's ``category`` column).
    coord_system : {"wgs84", "gcj02", "bd09"}, optional
        The datum of the file's coordinates (default: the FacilityFile's, ``wgs84``).
    progress : callable, optional
        Stage messages, as for :func:`circles.pipeline.run`.
    area : str, optional
        The area of a multi-area study the update belongs to.
    wait_s : float, default 0
        Seconds to wait for another process that holds the study (0: stop at once).

    Returns
    -------
    circles.pipeline.StudyResult
        As from :func:`circles.pipeline.run`; ``result.manifest["categories"]`` lists the
        recomputed categories.

    Raises
    ------
    DataFileError, InputDataError, ConfigError
        The file cannot be read, or is not a usable update file, or the run applying it
        failed (nothing is recorded).
    """
    spec = _spec(facilities, category=category, coord_system=coord_system)
    cfg = _study(cfg, area)
    check_study(cfg)
    # read and check the whole file before recording anything
    cats = [c.id for c in load_profile(cfg.facilities.profile).categories]
    path = cfg.resolve(spec.path) or spec.path
    rows = check_update(replace(spec, path=path), categories=cats)
    say = progress or (lambda msg: None)
    if rows["rejected"]:
        logger.warning(
            "%s: %d of %d rows rejected (%s); see facility_rejects.csv",
            path,
            rows["rejected"],
            rows["rows"],
            reject_reasons(pd.DataFrame(rows["rejects"])),
        )
    counts = {k: v for k, v in rows.items() if k != "rejects"}
    with study_lock(cfg.out_dir, study=cfg.study.name, wait_s=wait_s):
        entry = record_update(cfg, spec, rows=counts)
        if entry is None:
            say(f"{spec.path} is already applied to this study (same file, category and datum)")
            return run(cfg, progress=progress)
        number = len(read_ledger(cfg))
        say(f"recorded update {number}: {entry['file']} (sha256 {entry['sha256'][:12]}...)")
        try:
            result = run(cfg, progress=progress)
        except CirclesError as exc:
            remove_update(cfg, number)
            why, kind = str(exc), type(exc)
            if isinstance(exc, LedgerError):  # about this update: no ledger entry to name
                why, kind = exc.reason, InputDataError
            raise kind(f"{path}: not recorded, the run applying it failed: {why}") from exc
        except BaseException:
            remove_update(cfg, number)
            raise
    _warn_unknown_ids(result, entry["original"])
    return result


def _spec(
    facilities: FacilityFile | str | os.PathLike[str],
    *,
    category: str | None,
    coord_system: str | None,
) -> FacilityFile:
    if isinstance(facilities, FacilityFile):
        spec = facilities
        if category is not None:
            spec = replace(spec, category=category)
    elif isinstance(facilities, str | os.PathLike):
        spec = FacilityFile(path=str(Path(facilities).resolve()), category=category)
    else:
        raise ConfigError(
            f"facilities must be a FacilityFile or a path, got {type(facilities).__name__}"
        )
    if coord_system is not None:
        spec = replace(spec, coord_system=coord_system)
    if spec.coord_system.lower() not in DATUMS:
        raise ConfigError(
            f"{spec.path}: coord_system must be one of {list(DATUMS)}, got {spec.coord_system!r}"
        )
    return replace(spec, coord_system=spec.coord_system.lower())


def _study(cfg: StudyConfig, area: str | None) -> StudyConfig:
    if area is not None:
        return select_area(cfg, area)
    if cfg.areas:
        raise ConfigError("this study has [[areas]]; say which one the update is for (area=)")
    return cfg


def _warn_unknown_ids(result: Any, source: str) -> None:
    """Warn, listing them, of the ids the update meant to replace or remove that the
    study does not have (they are in the rejects too)."""
    rej = getattr(result, "rejects", None)
    if rej is None or not len(rej) or "reason" not in rej:
        return
    mask = (rej["source"].astype(str) == source) & rej["reason"].astype(str).isin(
        ["remove: no facility with this id", "replace: no facility with this id"]
    )
    ids = sorted(set(rej.loc[mask, "facility_id"].astype(str)))
    if ids:
        shown = ", ".join(ids[:20]) + (f" and {len(ids) - 20} more" if len(ids) > 20 else "")
        logger.warning(
            "%s: %d id(s) to remove or replace are not in the study: %s (listed in "
            "facility_rejects.csv)",
            source,
            len(ids),
            shown,
        )


def recorded_updates(cfg: StudyConfig, *, area: str | None = None) -> list[dict[str, Any]]:
    """The recorded updates of a study, for ``circles update STUDY.toml --list``.

    Parameters
    ----------
    cfg : StudyConfig
    area : str, optional
        The area of a multi-area study.

    Returns
    -------
    list of dict
        Per update, oldest first: ``number``, ``applied_utc``, ``file`` (the recorded
        copy), ``original``, ``category``, ``coord_system`` and, from the last run's
        ``manifest.json`` (None when it has not applied the update), ``added``,
        ``replaced``, ``removed`` and ``rejected``.
    """
    cfg = _study(cfg, area)
    applied: dict[str, dict[str, Any]] = {}
    try:
        man = json.loads((cfg.out_dir / "manifest.json").read_text(encoding="utf-8"))
        applied = {str(u.get("file")): u for u in man.get("updates", []) if isinstance(u, dict)}
    except (OSError, ValueError, AttributeError):
        pass
    out = []
    for n, e in enumerate(read_ledger(cfg), 1):
        spec = dict(e.get("spec") or {})
        got = applied.get(str(e.get("file")), {})
        out.append(
            {
                "number": n,
                "applied_utc": e.get("applied_utc"),
                "file": e.get("file"),
                "original": e.get("original"),
                "category": spec.get("category"),
                "coord_system": spec.get("coord_system", "wgs84"),
                **{k: got.get(k) for k in ("added", "replaced", "removed", "rejected")},
            }
        )
    return out


def revert(
    cfg: StudyConfig,
    number: int,
    *,
    progress: Any = None,
    area: str | None = None,
    wait_s: float = 0.0,
) -> Any:
    """Remove recorded update ``number`` from a study and refresh its outputs.

    The outputs are then those of a study that never had the update: the remaining
    updates are applied in order, as by every run.

    Parameters
    ----------
    cfg : StudyConfig
        The study.
    number : int
        The update's number (1-based, as :func:`recorded_updates` lists them).
    progress, area, wait_s
        As for :func:`update`.

    Returns
    -------
    circles.pipeline.StudyResult

    Raises
    ------
    ConfigError
        The study has no update ``number``.
    """
    cfg = _study(cfg, area)
    check_study(cfg)
    with study_lock(cfg.out_dir, study=cfg.study.name, wait_s=wait_s):
        entry = remove_update(cfg, number)
        say = progress or (lambda msg: None)
        say(f"removed update {number}: {entry.get('file')} (from {entry.get('original')})")
        return run(cfg, progress=progress)
