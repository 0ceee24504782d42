"""The outputs stage: everything a run writes, as one transaction, and its manifest.

Under ``<output_dir>/<study>/`` (``/<area>/`` for an area):

- ``circles.gpkg`` with layers ``communities`` (coverage and flags), ``facilities``
  (with snap distance, status and entries), ``facility_footprints`` (the polygons of
  area facilities) and ``facility_entries`` (where they are entered), ``nodes`` (minutes
  per category), ``edges`` (minutes along every street segment, :mod:`circles.streets`),
  ``isochrones`` and ``service_areas``, and QGIS styles for them (:mod:`circles.styles`);
- ``coverage.csv`` (one row per community and category), ``facility_rejects.csv``,
  ``summary.json``; ``circles_<datum>.gpkg`` with ``[study] export_coord_system``;
- ``report/`` (indicators and checklist) when a report was asked for (``circles
  report``; later runs render it again with the same settings);
- ``manifest.json``: inputs with SHA-256, parameters, package versions, what was
  recomputed, and every output of this set with its SHA-256;

and ``<maps_dir>/<study>/coverage.html``.

:func:`write_study` writes the outputs whose content changed since the previous run
into a :class:`~circles.transaction.Transaction` and commits them together with the
manifest: a run that fails or is killed leaves the previous set. An output is kept when
the previous manifest recorded the same content digest for it and the file still has
the recorded SHA-256 (paths are recorded relative to their folder, so a study folder can
be moved or copied). A GeoPackage with only some changed layers is updated as a staged
copy (only those layers rewritten; only the changed categories' columns of ``nodes``).
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio.errors

from circles import entries, gpkg_inplace, io, styles
from circles._errors import CirclesError, OutputError
from circles._hooks import checkpoint, fail_write
from circles.cache import Cache, array_digest, digest, frame_digest, sha256_file
from circles.config import StudyConfig
from circles.coverage import assign_nodes
from circles.facilities import STATUS_SNAPPED
from circles.isochrones import ServiceAreas
from circles.report import ReportRequest
from circles.report_tables import coverage_long
from circles.result import (
    Facilities,
    Residents,
    RunContext,
    StudyAccess,
    StudyResult,
    finite_or_nan,
    json_default,
    level_key,
    to_json,
    utc_now,
)
from circles.settings import WGS84
from circles.studymap import write_map
from circles.transaction import Transaction, os_error_message, remove_dropped

logger = logging.getLogger(__name__)

#: Packages whose versions each manifest records.
MANIFEST_PACKAGES = (
    "circles",
    "numpy",
    "scipy",
    "pandas",
    "shapely",
    "geopandas",
    "pyogrio",
    "pyproj",
    "pyrosm",
    "osmnx",
    "networkx",
    "folium",
)

#: The order of ``result.outputs`` (what ``circles run`` lists).
_OUTPUT_ORDER = ("gpkg", "coverage_csv", "rejects_csv", "summary_json", "gpkg_export", "map_html")

#: Errors of a failed write (a full disk, a read-only folder, GDAL's own errors).
_WRITE_ERRORS = (OSError, pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError)


def package_versions() -> dict[str, str | None]:
    """Installed versions of :data:`MANIFEST_PACKAGES` (None when not installed).

    Read once per process (installing packages while a process runs is not followed).
    """
    return dict(_package_versions())


@functools.lru_cache(maxsize=1)
def _package_versions() -> tuple[tuple[str, str | None], ...]:
    from importlib.metadata import PackageNotFoundError, version

    out: list[tuple[str, str | None]] = []
    for name in MANIFEST_PACKAGES:
        try:
            out.append((name, version(name)))
        except PackageNotFoundError:
            out.append((name, None))
    return tuple(out)


def parameters(cfg: StudyConfig) -> dict[str, Any]:
    """The study configuration as JSON values (what the manifest records)."""
    return json.loads(io.json_text(asdict(cfg), default=json_default))


def previous_manifest(cfg: StudyConfig) -> dict[str, Any]:
    """The previous run's manifest (empty if none or unreadable)."""
    try:
        doc = json.loads((cfg.out_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _intact(rec: Any, path: Path, name: str) -> bool:
    """Whether an output file is still exactly what the previous manifest recorded.

    ``rec["path"]`` is the output's name relative to its folder (or, in manifests of
    older versions, the full path as written then).
    """
    if not isinstance(rec, dict) or rec.get("path") not in (name, str(path)):
        return False
    if not path.is_file():
        return False
    try:
        return rec.get("sha256") == sha256_file(path)
    except OSError:
        return False


# --------------------------------------------------------------------------- tables


def node_columns(result: StudyResult, cat: str) -> dict[str, np.ndarray]:
    """The ``nodes`` layer columns of one category: minutes and counts per level."""
    cols = {f"{cat}_min": result.node_minutes[cat].to_numpy()}
    for j, lev in enumerate(result.config.walk.levels_minutes):
        cols[f"{cat}_n{level_key(lev)}"] = result.node_counts[cat][:, j]
    cols.update(result.node_choice.get(cat, {}))  # [choice]: N closest, gravity
    return cols


def nodes_frame(result: StudyResult) -> gpd.GeoDataFrame:
    """The ``nodes`` layer: every node with its community, residents and minutes."""
    net = result.network
    nc = result.node_community
    if nc is None:
        nc = assign_nodes(net, result.communities)
    nodes = gpd.GeoDataFrame(
        {
            "node_id": net.node_id,
            "community_id": np.where(
                nc >= 0,
                result.communities["community_id"].to_numpy()[np.maximum(nc, 0)],
                None,
            ),
            "residents_weight": (
                result.node_weight if result.node_weight is not None else net.node_weight_m()
            ),
        },
        geometry=gpd.points_from_xy(net.lon, net.lat),
        crs=WGS84,
    )
    for cat in result.categories:
        for col, values in node_columns(result, cat).items():
            nodes[col] = values
    return finite_or_nan(nodes)


def output_layers(
    result: StudyResult, names: Any = None, *, skip: Any = ()
) -> dict[str, gpd.GeoDataFrame]:
    """The GeoPackage layers (all, or those named; ``"facilities"`` names the
    ``facilities``, ``facility_footprints`` and ``facility_entries`` layers), without
    the layers named in ``skip`` (which are not built either)."""
    want = None if names is None else set(names)

    def wanted(layer: str, group: str | None = None) -> bool:
        return (want is None or (group or layer) in want) and layer not in skip

    layers: dict[str, gpd.GeoDataFrame] = {}
    if wanted("communities"):
        layers["communities"] = finite_or_nan(result.communities.copy())
    if wanted("facilities"):
        fac = result.facilities.drop(columns=["footprint_wkb"], errors="ignore")
        fac["name"] = fac["name"].astype(object).where(fac["name"].notna(), None)
        layers["facilities"] = fac
    # area facilities: their footprints and where they are entered (circles.entries)
    if wanted("facility_footprints", "facilities"):
        layers["facility_footprints"] = entries.footprint_layer(result.facilities)
    if wanted("facility_entries", "facilities"):
        layers["facility_entries"] = entries.entry_layer(result.entries)
    if wanted("nodes"):
        layers["nodes"] = nodes_frame(result)
    if result.edges is not None and wanted("edges"):
        layers["edges"] = finite_or_nan(result.edges)
    if result.isochrones is not None and wanted("isochrones"):
        layers["isochrones"] = result.isochrones
    # (service areas are read or drawn only when wanted)
    areas = result.service_areas if wanted("service_areas") else None
    if areas is not None:
        layers["service_areas"] = areas
    return layers


#: The GeoPackage layers written before the service areas are waited for.
_LAYERS_BEFORE_AREAS = ("communities", "facilities", "nodes", "edges", "isochrones")


def _write_gpkg(layers: dict[str, gpd.GeoDataFrame], path: Path) -> None:
    for name, gdf in layers.items():
        io.write_layer(gdf, path, name)


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    io.write_csv(df, path)  # BOM for Excel; text cells neutralised (formula injection)


def _write_text(text: str, path: Path) -> None:
    path.write_text(text, encoding="utf-8")


# --------------------------------------------------------------------------- the map


def _map_content(result: StudyResult, digests: dict[str, Any]) -> str:
    """Content digest of the coverage map (what it draws)."""
    cfg = result.config
    return digest(
        "map",
        digests["communities"],
        digests["facilities"],
        digests["isochrones"],
        digests.get("edges"),
        parameters(cfg)["map"],
        result.labels,
        result.categories,
        cfg.study.lang,
        list(cfg.walk.levels_minutes),
    )


@dataclass
class _MapJob:
    """The coverage map being drawn in a thread (``future`` None: the map on disk
    already shows ``content``)."""

    content: str
    future: Future[str] | None

    def wait(self) -> None:
        """Wait for the drawing (re-raising its error)."""
        if self.future is not None:
            self.future.result()


def _start_map(
    result: StudyResult, digests: dict[str, Any], prev: dict[str, Any], tx: Transaction, store: Any
) -> _MapJob | None:
    """Start drawing the map into the transaction, in a thread, if its content changed."""
    cfg = result.config
    if not cfg.map.enabled:
        return None
    content = _map_content(result, digests)
    rec = prev.get("outputs", {}).get("map_html")
    final = tx.final("maps", "coverage.html")
    same = isinstance(rec, dict) and rec.get("content") == content
    if same and _intact(rec, final, "coverage.html"):
        return _MapJob(content, None)
    path = _staged(tx, "maps", "coverage.html")
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="circles-map")
    job = pool.submit(
        _guarded,
        tx,
        "maps",
        "coverage.html",
        write_map,
        result,
        path,
        store=store,
        iso_key=None if digests.get("isochrones") is None else str(digests["isochrones"]),
    )
    pool.shutdown(wait=False)
    return _MapJob(content, job)


# --------------------------------------------------------------------------- GeoPackage


def _layer_digests(result: StudyResult, digests: dict[str, Any]) -> dict[str, Any]:
    cats = list(result.categories)
    out = {
        "communities": digests["communities"],
        "facilities": digests["facilities"],
        "facility_footprints": entries.digest_footprints(result.facilities),
        "facility_entries": entries.digest_entries(result.entries),
        "nodes_base": digest("nodes", digests["network"], digests["residents"], cats),
        "styles": styles.styles_content(result),
    }
    for c in cats:
        out[f"nodes:{c}"] = digests["access"][c]
        if c in result.node_choice:  # the [choice] columns depend on their settings too
            out[f"nodes:{c}"] = digest(
                "nodes", digests["access"][c], parameters(result.config)["choice"]
            )
    if digests.get("edges") is not None:
        out["edges"] = str(digests["edges"])
    if result.isochrones is not None:
        out["isochrones"] = str(digests["isochrones"])
    if digests.get("service_areas") is not None:  # drawn later (deferred)
        out["service_areas"] = str(digests["service_areas"])
        out["service_area_parts"] = dict(digests.get("service_area_parts") or {})
    return out


def _changed_nodes(result: StudyResult, cat: str, old_key: Any, store: Any) -> np.ndarray:
    """Positions of the nodes whose minutes or counts of ``cat`` differ from the previous
    run's (all nodes when the previous values are not in the cache)."""
    n = result.network.n_nodes
    got = store.load_arrays("access", old_key) if store is not None and old_key else None
    if got is None:
        return np.arange(n)
    old_min, old_cnt = np.asarray(got[0]["minutes"]), np.asarray(got[0]["counts"])
    new_min = result.node_minutes[cat].to_numpy()
    new_cnt = result.node_counts[cat]
    if old_min.shape != new_min.shape or old_cnt.shape != new_cnt.shape:
        return np.arange(n)
    same = (old_min == new_min) | (np.isnan(old_min) & np.isnan(new_min))
    same &= (old_cnt == new_cnt).all(axis=1)
    return np.flatnonzero(~same)


def _update_gpkg(
    result: StudyResult,
    current: Path,
    staged: Path,
    old: dict[str, Any],
    new: dict[str, Any],
    store: Any = None,
    service_areas: ServiceAreas | None = None,
) -> bool:
    """Write ``staged`` as a copy of ``current`` changed in place.

    Only the changed node columns (:func:`circles.gpkg_inplace.update_columns`), the
    service-area rows of the changed categories
    (:func:`circles.gpkg_inplace.replace_rows`) and the other changed layers (rewritten
    by GDAL) are written. Returns False (and leaves no staged file) when a full rewrite
    is needed instead.
    """
    if set(old) != set(new) or old.get("nodes_base") != new.get("nodes_base"):
        return False
    changed_layers = [
        n
        for n in ("communities", "facilities", "edges", "isochrones", "service_areas")
        if old.get(n) != new.get(n)
    ]
    node_cats = [c for c in result.categories if old.get(f"nodes:{c}") != new.get(f"nodes:{c}")]
    sa_cats: list[str] = []
    sa_new: list[str] = []
    old_parts, new_parts = old.get("service_area_parts"), new.get("service_area_parts")
    if (
        "service_areas" in changed_layers
        and service_areas is not None
        and isinstance(old_parts, dict)
        and isinstance(new_parts, dict)
        and list(new_parts)[: len(old_parts)] == list(old_parts)
    ):
        # the same categories in the same order, perhaps with new ones after them (a
        # category's first facility is added at the end): replace the rows of the
        # changed ones, add those of the new ones
        sa_cats = [c for c in old_parts if old_parts[c] != new_parts[c]]
        sa_new = list(new_parts)[len(old_parts) :]
        changed_layers.remove("service_areas")
    scratch = staged.with_name(staged.name + ".rows.gpkg")
    ok = False
    try:
        shutil.copyfile(current, staged)
        con = gpkg_inplace.connect(staged)
        try:
            if node_cats:
                fids = np.arange(1, result.network.n_nodes + 1, dtype=np.int64)
                have = con.execute('SELECT count(*), min(fid), max(fid) FROM "nodes"').fetchone()
                if tuple(have) != (fids.size, 1, fids.size):
                    return False
                for cat in node_cats:
                    at = _changed_nodes(result, cat, old.get(f"nodes:{cat}"), store)
                    cols = {k: np.asarray(v)[at] for k, v in node_columns(result, cat).items()}
                    gpkg_inplace.update_columns(con, "nodes", fids[at], cols)
                con.commit()
            if sa_cats or sa_new:
                assert service_areas is not None
                rows = service_areas.rows(sa_cats + sa_new)
                io.write_layer(rows, scratch, "service_areas")
                if not gpkg_inplace.replace_rows(
                    con, "service_areas", scratch, "category", sa_cats, append=sa_new
                ):
                    changed_layers.append("service_areas")
        except sqlite3.Error as exc:
            logger.info("in-place GeoPackage update failed (%s); rewriting it", exc)
            return False
        finally:
            con.close()
        if changed_layers:
            # a point facility added or moved leaves the area facilities' layers as
            # they are: only the layers whose content changed are rewritten
            same = [n for n in ("facility_footprints", "facility_entries") if old[n] == new[n]]
            _write_gpkg(output_layers(result, changed_layers, skip=same), staged)
        ok = True
        return True
    finally:
        scratch.unlink(missing_ok=True)
        if not ok:
            staged.unlink(missing_ok=True)


# --------------------------------------------------------------------------- writing


def _staged(tx: Transaction, root: str, name: str) -> Path:
    """The staged path of an output, after the test hook that fails a write there."""
    path = tx.path(root, name)
    try:
        fail_write(name)
    except OSError as exc:
        raise OutputError(os_error_message(exc, tx.final(root, name))) from exc
    return path


def _guarded(
    tx: Transaction, root: str, name: str, write: Callable[..., Any], *args: Any, **kw: Any
) -> Any:
    """``write(*args, **kw)``, a failed write turned into an :class:`OutputError` naming the
    output's final path."""
    try:
        return write(*args, **kw)
    except CirclesError:
        raise
    except _WRITE_ERRORS as exc:
        if isinstance(exc, OSError):
            raise OutputError(os_error_message(exc, tx.final(root, name))) from exc
        raise OutputError(
            f"{tx.final(root, name)}: cannot be written ({exc}); the previous outputs are unchanged"
        ) from exc


def _record(path: Path, name: str, content: str, root: str = "data") -> dict[str, Any]:
    return {"path": name, "root": root, "sha256": sha256_file(path), "content": content}


def _stage_changed(
    result: StudyResult,
    digests: dict[str, Any],
    prev: dict[str, Any],
    tx: Transaction,
    ctx: RunContext,
    *,
    service_areas: ServiceAreas | None,
    map_job: _MapJob | None,
) -> tuple[dict[str, Any], list[str]]:
    """Stage the outputs whose content changed; the records of every output kept or
    staged, and the names of the staged ones."""
    cfg = result.config
    prev_out = prev.get("outputs", {}) if isinstance(prev.get("outputs"), dict) else {}
    layers = _layer_digests(result, digests)
    names = {
        "gpkg": "circles.gpkg",
        "coverage_csv": "coverage.csv",
        "rejects_csv": "facility_rejects.csv",
        "summary_json": "summary.json",
    }
    content = {
        "gpkg": digest("gpkg", layers),
        "coverage_csv": digests["communities"],
        "rejects_csv": digests["rejects"],
        "summary_json": digests["summary"],
    }
    export_cs = cfg.study.export_coord_system
    if export_cs != "wgs84":
        # a copy for overlay on Chinese web maps (outputs proper stay WGS84, OSM's datum)
        names["gpkg_export"] = f"circles_{export_cs}.gpkg"
        content["gpkg_export"] = digest("gpkg_export", export_cs, layers)
    records: dict[str, Any] = {}
    todo: list[str] = []
    for key, name in names.items():
        rec = prev_out.get(key)
        if (
            isinstance(rec, dict)
            and rec.get("content") == content[key]
            and _intact(rec, tx.final("data", name), name)
        ):
            records[key] = {**rec, "path": name, "root": "data"}
            result.outputs[key] = str(tx.final("data", name))
        else:
            todo.append(key)

    def areas_now() -> None:
        if service_areas is not None:
            service_areas.get()

    gpkg_rec = prev_out.get("gpkg")
    old_layers = gpkg_rec.get("layers", {}) if isinstance(gpkg_rec, dict) else {}
    current = tx.final("data", "circles.gpkg")
    in_place = "gpkg" in todo and bool(old_layers) and _intact(gpkg_rec, current, "circles.gpkg")
    for key in todo:
        name = names[key]
        path = _staged(tx, "data", name)
        if key == "gpkg":
            ctx.say(f"writing outputs to {cfg.out_dir}")

            def write_gpkg(path: Path = path) -> None:
                if not (
                    in_place
                    and _update_gpkg(
                        result, current, path, old_layers, layers, ctx.store, service_areas
                    )
                ):
                    # the other layers first, while the service areas may still be drawn
                    # (in their own thread); theirs last, in the same layer order as before
                    _write_gpkg(output_layers(result, _LAYERS_BEFORE_AREAS), path)
                    areas_now()
                    _write_gpkg(output_layers(result, ["service_areas"]), path)
                styles.write_study_styles(result, path)

            _guarded(tx, "data", name, write_gpkg)
        elif key == "gpkg_export":
            areas_now()
            from circles.coords import geometry_from_wgs84

            layers_cs = {
                k: geometry_from_wgs84(v, export_cs) for k, v in output_layers(result).items()
            }
            _guarded(tx, "data", name, _write_gpkg, layers_cs, path)
            _guarded(tx, "data", name, styles.write_study_styles, result, path)
        elif key == "coverage_csv":
            _guarded(tx, "data", name, _write_csv, coverage_long(result), path)
        elif key == "rejects_csv":
            _guarded(tx, "data", name, _write_csv, result.rejects, path)
        elif key == "summary_json":
            _guarded(tx, "data", name, _write_text, to_json(result.summary), path)
        records[key] = _record(path, name, content[key])
        if key == "gpkg":
            records[key]["layers"] = layers
        result.outputs[key] = str(tx.final("data", name))
    if map_job is not None:
        final = tx.final("maps", "coverage.html")
        if map_job.future is None:
            records["map_html"] = {**prev_out["map_html"], "path": "coverage.html", "root": "maps"}
        else:
            map_job.wait()
            staged = tx.staged[("maps", "coverage.html")]
            records["map_html"] = _record(staged, "coverage.html", map_job.content, "maps")
            todo.append("map_html")
        result.outputs["map_html"] = str(final)
    return records, todo


def _stage_report(
    result: StudyResult,
    request: ReportRequest,
    digests: dict[str, Any],
    prev: dict[str, Any],
    tx: Transaction,
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """Stage the report (if its content changed); its records, settings and changes."""
    from circles.report import write_report

    cfg = result.config
    attr_doc = None
    attributes = None
    if request.attributes is not None:
        path = Path(request.attributes)
        if request.inherited and not path.is_file():
            logger.warning(
                "%s (the attributes of the previous report) is gone: the report is written "
                "again without attributes; run `circles report --attributes FILE` to add them",
                path,
            )
        else:
            try:
                attributes = pd.read_csv(path, dtype={"community_id": str})
            except (OSError, ValueError) as exc:
                raise OutputError(f"{path}: cannot read the report attributes ({exc})") from exc
            attr_doc = {"path": str(path), "sha256": sha256_file(path)}
    content = digest(
        "report",
        digests["communities"],
        digests["facilities"],
        parameters(cfg),
        result.summary.get("residents_basis"),
        request.lang,
        attr_doc,
    )
    setting = {"lang": request.lang, "attributes": attr_doc}
    old = _kept_group(result, prev, tx, "report:", "data", content)
    if old is not None:
        return old, setting, []
    folder = tx.folder("data", "report")
    written = _guarded(
        tx, "data", "report", write_report, result, folder, lang=request.lang, attributes=attributes
    )
    records: dict[str, Any] = {}
    for k, p in written.items():
        name = f"report/{Path(p).name}"
        tx.path("data", name)  # registered for the commit (already written there)
        records[f"report:{k}"] = _record(Path(p), name, content)
        result.outputs[f"report:{k}"] = str(tx.final("data", name))
    return records, setting, list(records)


def _kept_group(
    result: StudyResult, prev: dict[str, Any], tx: Transaction, prefix: str, root: str, content: str
) -> dict[str, Any] | None:
    """The previous records of a group of outputs (``report:``, ``figure:``) when they all
    show ``content`` and are intact (their outputs noted in ``result``), else None."""
    prev_out = prev.get("outputs", {}) if isinstance(prev.get("outputs"), dict) else {}
    old = {k: v for k, v in prev_out.items() if k.startswith(prefix)}
    if not old or not all(
        isinstance(r, dict)
        and r.get("content") == content
        and _intact(r, tx.final(root, str(r.get("path"))), str(r.get("path")))
        for r in old.values()
    ):
        return None
    for k, r in old.items():
        result.outputs[k] = str(tx.final(root, r["path"]))
    return dict(old)


def _stage_figures(
    result: StudyResult,
    setting: dict[str, Any],
    digests: dict[str, Any],
    prev: dict[str, Any],
    tx: Transaction,
) -> tuple[dict[str, Any], list[str]]:
    """Stage the report figures whose content changed (each category on its own: an
    update of one category draws only its figures); their records and changes."""
    from circles.figures import figure_content, write_figures

    cats = list(setting["categories"]) or list(result.categories)
    records: dict[str, Any] = {}
    todo: list[str] = []
    contents = {c: figure_content(result, setting, digests, c) for c in cats}
    for cat in cats:
        kept = _kept_group(result, prev, tx, f"figure:{cat}.", "maps", contents[cat])
        if kept is not None and set(kept) == {f"figure:{cat}.{f}" for f in setting["formats"]}:
            records.update(kept)
        else:
            todo.append(cat)
    if not todo:
        return records, []
    folder = tx.folder("maps", "figures")
    written = _guarded(
        tx,
        "maps",
        "figures",
        write_figures,
        result,
        folder,
        formats=setting["formats"],
        dpi=setting["dpi"],
        categories=todo,
    )
    changed = []
    for k, p in written.items():
        name = f"figures/{k}"
        tx.path("maps", name)  # registered for the commit (already written there)
        cat = k.rsplit(".", 1)[0]
        records[f"figure:{k}"] = _record(Path(p), name, contents[cat], "maps")
        result.outputs[f"figure:{k}"] = str(tx.final("maps", name))
        changed.append(f"figure:{k}")
    return dict(sorted(records.items())), changed


def _facility_counts(
    facilities: gpd.GeoDataFrame,
    rejects: pd.DataFrame,
    applied: list[dict[str, Any]],
    store: Cache,
    prev: dict[str, Any],
) -> dict[str, Any]:
    """Facility totals, and what was added/removed since the previous run of the study."""
    keys = np.asarray(
        sorted(
            set(
                (
                    facilities["category"].astype(str) + "|" + facilities["facility_id"].astype(str)
                ).tolist()
            )
        ),
        dtype=str,
    )
    out: dict[str, Any] = {
        "total": len(facilities),
        "snapped": int((facilities["status"] == STATUS_SNAPPED).sum()),
        "rejected": len(rejects),
        "by_updates": {
            k: sum(int(a[k]) for a in applied) for k in ("added", "replaced", "removed", "rejected")
        },
    }
    prev_ids = None
    prev_doc = prev.get("facilities", {})
    prev_key = prev_doc.get("facility_ids_key") if isinstance(prev_doc, dict) else None
    if prev_key and store.enabled and store.has("facility_ids", prev_key):
        got = store.load_arrays("facility_ids", prev_key)
        store.hits.pop()
        prev_ids = got[0]["ids"] if got is not None else None
    key = array_digest(keys)
    if not store.has("facility_ids", key):
        store.save_arrays("facility_ids", key, {"ids": keys})
    out["facility_ids_key"] = key
    if prev_ids is not None:
        old = set(prev_ids.tolist())
        new = set(keys.tolist())
        out["since_previous_run"] = {"added": len(new - old), "removed": len(old - new)}
    return out


def study_digests(
    result: StudyResult, keys: dict[str, Any], service_areas: ServiceAreas | None
) -> dict[str, Any]:
    """Content digests of what the outputs show, from the stages' keys and tables.

    ``keys`` holds the cache keys of the ``network``, ``residents``, ``access`` (per
    category) and ``isochrones`` (None without isochrones) stages.
    """
    summary = {k: v for k, v in result.summary.items() if k != "seconds"}
    return {
        "network": keys["network"],
        "communities": frame_digest(finite_or_nan(result.communities)),
        "residents": keys["residents"],
        "access": keys["access"],
        "facilities": digest(
            "facilities", frame_digest(result.facilities), entries.digest_entries(result.entries)
        ),
        "rejects": frame_digest(result.rejects),
        "isochrones": keys.get("isochrones"),
        "edges": keys.get("edges"),
        "service_areas": service_areas.key if service_areas is not None else None,
        "service_area_parts": service_areas.keys if service_areas is not None else {},
        "summary": digest("summary", summary),
    }


def write_study(
    result: StudyResult,
    network_key: str,
    residents: Residents,
    access: StudyAccess,
    isochrones: Any,
    service_areas: ServiceAreas | None,
    facilities: Facilities,
    ctx: RunContext,
    *,
    report: ReportRequest | None = None,
    write: bool = True,
    edges: Any = None,
) -> None:
    """The outputs stage: stage what changed, then commit it all with the manifest.

    Parameters
    ----------
    result : StudyResult
        What the run computed; ``result.outputs`` and ``result.manifest`` are filled in.
    network_key : str
        Cache key of the network.
    residents, access : Residents, StudyAccess
        The residents and access stages (their keys, the categories recomputed).
    isochrones : Keyed, optional
        The community isochrones and their key.
    service_areas : ServiceAreas, optional
        The run's service areas, drawn or read where a layer needs them.
    facilities : Facilities
        The facilities (the updates applied).
    ctx : RunContext
    report : ReportRequest, optional
        Write the report too (default: again with the previous run's settings, if it
        wrote one).
    write : bool
        False: nothing is written (the manifest is still completed).
    edges : Keyed, optional
        The streets stage's ``edges`` layer and its key.

    Raises
    ------
    OutputError
        An output cannot be written (the previous outputs are left as they were).
    """
    keys = {
        "network": network_key,
        "residents": residents.key,
        "access": access.keys,
        "isochrones": isochrones.key if isochrones is not None else None,
        "edges": edges.key if edges is not None else None,
    }
    recomputed, updates = access.recomputed, facilities.updates
    ctx.stage("outputs")
    cfg = result.config
    prev = previous_manifest(cfg)
    digests = study_digests(result, keys, service_areas)
    manifest: dict[str, Any] = {
        "circles_manifest": 1,
        "study": cfg.study.name,
        "area": cfg.area,
        "started_utc": ctx.started_utc,
        "inputs": ctx.inputs.files,
        "parameters": parameters(cfg),
        "packages": package_versions(),
        "facilities": _facility_counts(result.facilities, result.rejects, updates, ctx.store, prev),
        "categories": {
            "recomputed": recomputed,
            "reused": [c for c in result.categories if c not in recomputed],
        },
        "cache": {},
        "updates": updates,
    }
    result.manifest = manifest
    if not write:
        if service_areas is not None:
            service_areas.get()
        _finish_manifest(manifest, ctx, changed=None)
        return
    if report is None and isinstance(prev.get("report"), dict):
        old = prev["report"]
        attr = old.get("attributes")
        report = ReportRequest(
            lang=str(old.get("lang", cfg.study.lang)),
            attributes=attr.get("path") if isinstance(attr, dict) else None,
            inherited=True,
        )
    with Transaction({"data": cfg.out_dir, "maps": cfg.map_dir}) as tx:
        map_job = _start_map(result, digests, prev, tx, ctx.store)
        if map_job is not None and map_job.future is not None:
            ctx.say("drawing the coverage map")
        try:
            records, changed = _stage_changed(
                result, digests, prev, tx, ctx, service_areas=service_areas, map_job=map_job
            )
            if report is not None:
                rep, setting, rep_changed = _stage_report(result, report, digests, prev, tx)
                records.update(rep)
                changed += rep_changed
                manifest["report"] = setting
            from circles.figures import figure_setting

            fig_setting = figure_setting(cfg, prev)
            if fig_setting is not None:
                fig, fig_changed = _stage_figures(result, fig_setting, digests, prev, tx)
                records.update(fig)
                changed += fig_changed
                manifest["figures"] = fig_setting
        finally:
            if map_job is not None and map_job.future is not None:
                map_job.future.exception()  # the thread has finished writing
        checkpoint("outputs:staged")
        remove_dropped(tx, prev.get("outputs"), records)
        manifest["outputs"] = records
        _finish_manifest(manifest, ctx, changed=changed)
        path = _staged(tx, "data", "manifest.json")
        path.write_text(to_json(manifest), encoding="utf-8")
        tx.path("data", "manifest.json", last=True)
        tx.commit()
    order = [*_OUTPUT_ORDER, *sorted(k for k in records if k not in _OUTPUT_ORDER)]
    result.outputs = {k: result.outputs[k] for k in order if k in records}
    result.outputs["manifest_json"] = str(cfg.out_dir / "manifest.json")


def _finish_manifest(
    manifest: dict[str, Any], ctx: RunContext, *, changed: list[str] | None
) -> None:
    store = ctx.store
    manifest["cache"] = {
        "folder": str(store.root) if store.root is not None else None,
        "reused": sorted(set(store.hits)),
        "computed": sorted(set(store.misses)),
    }
    if changed is not None:
        manifest["outputs_changed"] = changed
        computed_any = bool(store.misses) or not store.enabled
        nothing = not changed and not computed_any
        manifest["nothing_changed"] = nothing
        if nothing:
            ctx.say("nothing changed: reused cached results")
    manifest["finished_utc"] = utc_now()
    manifest["seconds"] = round(time.perf_counter() - ctx.t0, 3)
    manifest["stage_seconds"] = ctx.stage_seconds()


def write_outputs(result: StudyResult) -> dict[str, str]:
    """Write all of the run's outputs together (no cache, no manifest); name -> path."""
    cfg = result.config
    with Transaction({"data": cfg.out_dir, "maps": cfg.map_dir}) as tx:
        _write_gpkg(output_layers(result), tx.path("data", "circles.gpkg"))
        styles.write_study_styles(result, tx.path("data", "circles.gpkg"))
        _write_csv(coverage_long(result), tx.path("data", "coverage.csv"))
        _write_csv(result.rejects, tx.path("data", "facility_rejects.csv"))
        tx.path("data", "summary.json").write_text(to_json(result.summary), encoding="utf-8")
        if cfg.map.enabled:
            write_map(result, tx.path("maps", "coverage.html"))
        tx.commit()
        return {
            {"circles.gpkg": "gpkg", "coverage.csv": "coverage_csv",
             "facility_rejects.csv": "rejects_csv", "summary.json": "summary_json",
             "coverage.html": "map_html"}[name]: str(tx.final(root, name))
            for root, name in tx.staged
        }  # fmt: skip
