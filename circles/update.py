"""Incremental updates: a bureau's new facility list applied to an existing study.

``circles update study.toml --facilities new_canteens.csv`` (:func:`update`):

1. reads the update file like any planner facility file (CSV, XLSX, GeoJSON, GeoPackage,
   Shapefile; same column options). An optional ``action`` column says what each row
   does: ``add`` (the default when the column is absent or the cell empty) adds a new
   facility, ``replace`` replaces every facility with the same id (its new row is added
   at the end), ``remove`` removes every facility with that id (coordinates are not
   needed). An ``add`` of an existing id, or a ``replace``/``remove`` of an unknown id,
   lands in the rejects file with its reason;
2. records it in the study folder: the file is copied to
   ``<output_dir>/<study>/updates/NNNN-<sha256[:12]>-<name>`` and listed (with its
   SHA-256, original path, column options and time) in ``updates/ledger.json``. Every
   later ``circles run`` of the study applies the recorded updates in order, after the
   configured ``[[facilities.updates]]``; the same file (same bytes) is recorded only
   once;
3. runs the study (:func:`circles.pipeline.run`). Everything upstream is reused from the
   cache: only the categories whose snapped facilities changed get new walking minutes
   and service areas; coverage, reports and the map are refreshed; outputs whose content
   did not change are left as they are.

The result is identical to a full run whose configuration lists the same file under
``[[facilities.updates]]`` (or, for a file of additions only, under
``[[facilities.files]]``) with an empty cache. Reading and applying update files is the
updates stage of every run (:mod:`circles.ledger`); this module sits above
:mod:`circles.pipeline` and only records an update and runs the study.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from circles._errors import ConfigError
from circles.categories import load_profile
from circles.config import StudyConfig, check_study, select_area
from circles.facilities import FacilityFile
from circles.ledger import (
    ACTION_COLUMN,
    ACTIONS,
    apply_update,
    apply_update_cached,
    apply_updates,
    ledger_path,
    read_ledger,
    read_update,
    record_update,
    update_entries,
)
from circles.pipeline import run
from circles.transaction import study_lock

__all__ = [
    "ACTIONS",
    "ACTION_COLUMN",
    "apply_update",
    "apply_update_cached",
    "apply_updates",
    "ledger_path",
    "read_ledger",
    "read_update",
    "record_update",
    "update",
    "update_entries",
]


def update(
    cfg: StudyConfig,
    facilities: FacilityFile | str | os.PathLike[str],
    *,
    category: str | None = None,
    progress: Any = None,
    area: str | None = None,
    wait_s: float = 0.0,
) -> Any:
    """Apply a facility update file to a study and refresh its outputs.

    Parameters
    ----------
    cfg : StudyConfig
        The study.
    facilities : FacilityFile or path
        The update file (a path: default column options; ``category`` for all rows).
    category : str, optional
        Category of every row of a plain path (else the file's ``category`` column).
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
        The file cannot be read, or is not a usable facility file (nothing is recorded).
    """
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
    if area is not None:
        cfg = select_area(cfg, area)
    elif cfg.areas:
        raise ConfigError("this study has [[areas]]; say which one the update is for (area=)")
    check_study(cfg)
    # check the file is readable and usable before recording anything
    cats = [c.id for c in load_profile(cfg.facilities.profile).categories]
    read_update(replace(spec, path=cfg.resolve(spec.path) or spec.path), categories=cats)
    with study_lock(cfg.out_dir, study=cfg.study.name, wait_s=wait_s):
        entry = record_update(cfg, spec)
        say = progress or (lambda msg: None)
        if entry is None:
            say(f"{spec.path} is already applied to this study (same SHA-256)")
        else:
            say(f"recorded update {entry['file']} (sha256 {entry['sha256'][:12]}...)")
        return run(cfg, progress=progress)
