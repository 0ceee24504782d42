"""Command line: ``circles run [study.toml]`` and friends. The only place that parses
arguments, configures logging or prints."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from circles import __version__
from circles._errors import CirclesError

if TYPE_CHECKING:
    from circles.config import StudyConfig


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="circles",
        description="15-minute life-circle walking accessibility for community planning.",
    )
    p.add_argument("--version", action="version", version=f"circles {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log details")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run a study (default: the embedded Helsinki example)")
    r.add_argument("config", nargs="?", help="study TOML; omit for the embedded default")
    r.add_argument("--output-dir", help="override [study] output_dir")
    r.add_argument("--maps-dir", help="override [study] maps_dir")
    r.add_argument("--no-cache", action="store_true", help="recompute everything, keep no cache")
    r.add_argument("--area", help="run one area of a study with [[areas]]")
    _add_wait(r)
    u = sub.add_parser(
        "update", help="apply a facility update file (add/replace/remove) and refresh outputs"
    )
    u.add_argument("config", help="study TOML")
    what = u.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--facilities",
        help="update file (CSV/XLSX/GeoJSON/GPKG/SHP); optional `action` column: add "
        "(default), replace (same id) or remove (by id)",
    )
    what.add_argument("--list", action="store_true", help="list the recorded updates")
    what.add_argument(
        "--revert", type=int, metavar="N", help="remove recorded update N and refresh outputs"
    )
    u.add_argument("--category", help="category of every row (else the file's category column)")
    u.add_argument(
        "--coord-system",
        choices=["wgs84", "gcj02", "bd09"],  # circles.datum.DATUMS
        help="datum of the file's coordinates: wgs84 (GPS, OSM; default), gcj02 "
        "(Amap/Gaode, Tencent) or bd09 (Baidu)",
    )
    u.add_argument("--area", help="the area of a study with [[areas]]")
    u.add_argument("--output-dir", help="override [study] output_dir")
    u.add_argument("--maps-dir", help="override [study] maps_dir")
    _add_wait(u)
    b = sub.add_parser("batch", help="run every [[areas]] of a study in parallel on dask")
    b.add_argument("config", help="study TOML with [[areas]]")
    b.add_argument("--scheduler", help="existing dask scheduler, e.g. tcp://host:8786")
    b.add_argument("--workers", type=_positive_int, help="local cluster worker processes (>= 1)")
    b.add_argument("--area", action="append", help="run only this area (repeatable)")
    b.add_argument("--output-dir", help="override [study] output_dir")
    b.add_argument("--maps-dir", help="override [study] maps_dir")
    _add_wait(b)
    _add_report_parser(sub)
    _add_figures_parser(sub)
    _add_suggest_parser(sub)
    _add_compare_parser(sub)
    f = sub.add_parser("fetch", help="download a place's walking network and facilities once")
    f.add_argument("place", help='place name, e.g. "Vaduz, Liechtenstein"')
    f.add_argument("--name", help="file name stem under the raw folder")
    f.add_argument("--raw-dir", default="data/raw")
    return p


def _add_wait(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for another process using the same study (default: stop at once)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``circles`` console script."""
    args = _build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "fetch":
            return _fetch(args)
        if args.command == "update":
            return _update(args)
        if args.command == "batch":
            return _batch(args)
        if args.command == "report":
            return _report(args)
        if args.command == "figures":
            return _figures(args)
        if args.command == "suggest":
            return _suggest(args)
        if args.command == "compare":
            return _compare(args)
    except CirclesError as exc:
        print(f"circles: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("circles: interrupted (outputs left as they were before this run)", file=sys.stderr)
        return 130
    except UnicodeDecodeError as exc:
        if args.verbose:
            raise
        print(
            f"circles: error: a file is not in the expected text encoding ({exc.reason} at "
            f"byte {exc.start}); save it as UTF-8 and try again (-v shows which file)",
            file=sys.stderr,
        )
        return 2
    except OSError as exc:
        if args.verbose:
            raise
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(
            f"circles: error: {where}{exc.strerror or exc} (check the path, that the "
            "file exists and that you may read it and write the output folders)",
            file=sys.stderr,
        )
        return 2
    except Exception as exc:
        if args.verbose:
            raise
        print(
            f"circles: unexpected error: {type(exc).__name__}: {exc} "
            "(rerun with -v for the full traceback, and report it)",
            file=sys.stderr,
        )
        return 1
    return 1  # pragma: no cover


def _positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not allowed; give 1 or more")
    return value


def _progress(msg: str) -> None:
    print(f"  .. {msg}", file=sys.stderr, flush=True)


def _config(args: argparse.Namespace) -> StudyConfig:
    from dataclasses import replace

    from circles.config import default_config, load_config

    cfg = load_config(args.config) if args.config else default_config()
    if getattr(args, "output_dir", None):
        cfg = replace(cfg, study=replace(cfg.study, output_dir=args.output_dir))
    if getattr(args, "maps_dir", None):
        cfg = replace(cfg, study=replace(cfg.study, maps_dir=args.maps_dir))
    return cfg


def _tqdm_bars() -> None:
    """Show tqdm progress bars (on stderr) for the library's long loops."""
    from tqdm import tqdm

    from circles import pipeline

    pipeline.PROGRESS_BAR["factory"] = lambda items, **kw: tqdm(items, file=sys.stderr, **kw)


def _print_result(result: Any) -> None:
    from circles.pipeline import summary_table

    print(summary_table(result))
    print()
    for name, path in result.outputs.items():
        print(f"wrote {name.split(':')[-1]}: {path}")


def _run(args: argparse.Namespace) -> int:
    from circles.pipeline import run

    cfg = _config(args)
    _tqdm_bars()
    cache = False if args.no_cache else None
    if cfg.areas and not args.area:
        for a in cfg.areas:
            _progress(f"area {a.name}")
            _print_result(run(cfg, progress=_progress, cache=cache, area=a.name, wait_s=args.wait))
            print()
        return 0
    _print_result(run(cfg, progress=_progress, cache=cache, area=args.area, wait_s=args.wait))
    return 0


def _update(args: argparse.Namespace) -> int:
    from circles.update import recorded_updates, revert, update

    cfg = _config(args)
    if args.list:
        _print_updates(recorded_updates(cfg, area=args.area))
        return 0
    _tqdm_bars()
    if args.revert is not None:
        result = revert(cfg, args.revert, progress=_progress, area=args.area, wait_s=args.wait)
    else:
        result = update(
            cfg,
            Path(args.facilities).resolve(),
            category=args.category,
            coord_system=args.coord_system,
            progress=_progress,
            area=args.area,
            wait_s=args.wait,
        )
    _print_result(result)
    return 0


def _print_updates(rows: list[dict[str, Any]]) -> None:
    if not rows:
        print("no recorded updates")
        return

    def cell(v: Any) -> str:
        return "-" if v is None else str(v)

    print(
        f"{'N':>3}  {'applied (UTC)':<25} {'category':<18} {'coord':<6} "
        f"{'added':>5} {'replaced':>8} {'removed':>7} {'rejected':>8}  file"
    )
    for r in rows:
        print(
            f"{r['number']:>3}  {cell(r['applied_utc']):<25} {cell(r['category']):<18} "
            f"{cell(r['coord_system']):<6} {cell(r['added']):>5} {cell(r['replaced']):>8} "
            f"{cell(r['removed']):>7} {cell(r['rejected']):>8}  {r['file']} "
            f"(from {r['original']})"
        )
    print("(counts from the last run; - : not applied by it)")


def _batch(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from circles.batch import run_batch

    cfg = _config(args)
    n = len(args.area) if args.area else len(cfg.areas)
    with tqdm(total=n, desc="areas", unit="area", file=sys.stderr) as bar:
        results = run_batch(
            cfg,
            areas=args.area,
            scheduler=args.scheduler,
            n_workers=args.workers,
            wait_s=args.wait,
            progress=lambda msg: bar.write(f"  .. {msg}", file=sys.stderr),
            on_done=lambda res: bar.update(1),
            quiet=not args.verbose,
        )
    k = str(int(cfg.walk.levels_minutes[-1]))
    print(f"{'area':<20}{'communities':>12}{'facilities':>11}  recomputed  outputs")
    for name, res in results.items():
        s = res.summary
        fac = sum(r["facilities"] for r in s.get("categories", []))
        print(
            f"{name:<20}{s.get('communities', 0):>12}{fac:>11}  "
            f"{len(res.recomputed):>10}  {Path(res.outputs.get('gpkg', '')).parent}"
        )
    print(f"(shares within {k} minutes per area: see each area's summary.json)")
    import json

    manifest = cfg.study_dir / "batch_manifest.json"
    city = json.loads(manifest.read_text(encoding="utf-8")).get("city", {})
    for name, path in city.items():
        print(f"wrote {name}: {path}")
    print(f"wrote batch_manifest_json: {manifest}")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from circles import fetch

    name = args.name or fetch.default_raw_name(args.place)
    res = fetch.fetch_osm(place=args.place, name=name, raw_dir=args.raw_dir)
    print(f"saved {res.graphml_path}, {res.features_path}, {res.boundary_path}")
    return 0


def _add_report_parser(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser(
        "report", help="run a study and write the Yuxi plan indicators and checklist"
    )
    r.add_argument("config", nargs="?", help="study TOML; omit for the embedded default")
    r.add_argument(
        "--attributes",
        help="CSV of community attributes joined on community_id (county, street, kind, "
        "households, population, service_area_m2, activity_area_m2, community_workers)",
    )
    r.add_argument("--lang", choices=["zh", "en"], help="report language (default: [study] lang)")
    r.add_argument("--output-dir", help="override [study] output_dir")
    _add_wait(r)


def _report(args: argparse.Namespace) -> int:

    import pandas as pd

    from circles.pipeline import run
    from circles.report import ReportRequest

    cfg = _config(args)
    attributes = None
    if args.attributes:
        attributes = str(Path(args.attributes).resolve())
        try:
            pd.read_csv(attributes, dtype={"community_id": str}, nrows=1)
        except (OSError, ValueError) as exc:
            print(f"circles: error: {args.attributes}: cannot read ({exc})", file=sys.stderr)
            return 2
    request = ReportRequest(lang=args.lang or cfg.study.lang, attributes=attributes)
    result = run(cfg, progress=_progress, report=request, wait_s=args.wait)
    for name, path in result.outputs.items():
        print(f"wrote {name.split(':')[-1]}: {path}")
    return 0


def _add_figures_parser(sub: argparse._SubParsersAction) -> None:
    f = sub.add_parser(
        "figures",
        help="run a study and write report figures per category (PNG 300 dpi, PDF/SVG)",
    )
    f.add_argument("config", nargs="?", help="study TOML; omit for the embedded default")
    f.add_argument("--format", action="append", choices=["png", "pdf", "svg"], dest="formats")
    f.add_argument("--dpi", type=int, help="PNG resolution (default: [figures] dpi, 300)")
    f.add_argument("--category", action="append", dest="categories", help="only this category")
    f.add_argument("--output-dir", help="override [study] output_dir")
    f.add_argument("--maps-dir", help="override [study] maps_dir")
    _add_wait(f)


def _figures(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from circles.pipeline import run

    cfg = _config(args)
    fig = replace(cfg.figures, enabled=True)
    if args.formats:
        fig = replace(fig, formats=tuple(dict.fromkeys(args.formats)))
    if args.dpi:
        fig = replace(fig, dpi=args.dpi)
    if args.categories:
        fig = replace(fig, categories=tuple(args.categories))
    cfg = replace(cfg, figures=fig)
    _tqdm_bars()
    result = run(cfg, progress=_progress, wait_s=args.wait)
    figs = {k: p for k, p in result.outputs.items() if k.startswith("figure:")}
    for name, path in figs.items():
        print(f"wrote {name.split(':')[-1]}: {path}")
    return 0


# --------------------------------------------------------------------------- suggest


def _add_suggest_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("suggest", help="suggest sites for new facilities that close the most gaps")
    s.add_argument("config", help="study TOML")
    s.add_argument("--category", required=True, help="facility category, e.g. elderly_canteen")
    s.add_argument("--count", type=int, required=True, help="number of sites")
    s.add_argument(
        "--candidates",
        help="candidate sites (CSV/XLSX/GeoJSON/GPKG; optional `capacity` column); "
        "default: network nodes",
    )
    s.add_argument("--coord-system", default="wgs84", help="datum of --candidates")
    s.add_argument(
        "--spacing-m", type=float, default=100.0, help="grid spacing of candidate nodes (m)"
    )
    s.add_argument("--minutes", type=float, help="walking threshold (default: the last level)")
    s.add_argument(
        "--method", choices=["greedy", "exact"], default="greedy", help="exact needs spopt"
    )
    s.add_argument("--capacity", type=float, help="capacity of every site (seats, places)")
    s.add_argument("--name", help="name of the suggestion (default <category>_<count>)")
    s.add_argument("--area", help="the area of a study with [[areas]]")
    s.add_argument("--output-dir", help="override [study] output_dir")
    s.add_argument("--maps-dir", help="override [study] maps_dir")
    _add_wait(s)


def _suggest(args: argparse.Namespace) -> int:
    from circles.config import FacilityFile, select_area
    from circles.siting import suggest

    cfg = _config(args)
    if args.area:
        cfg = select_area(cfg, args.area)
    cand = None
    if args.candidates:
        cand = FacilityFile(
            path=str(Path(args.candidates).resolve()), coord_system=args.coord_system
        )
    res = suggest(
        cfg,
        category=args.category,
        count=args.count,
        candidates=cand,
        spacing_m=args.spacing_m,
        minutes=args.minutes,
        method=args.method,
        capacity=args.capacity,
        name=args.name,
        progress=_progress,
        wait_s=args.wait,
    )
    cols = ["rank", "id", "lon", "lat", "community", "newly_covered", "share_after"]
    table = res.sites[[*cols, "catchment", "capacity"]].copy()
    table["share_after"] = (100 * table["share_after"]).round(1)
    table[["lon", "lat"]] = table[["lon", "lat"]].round(6)
    print(f"{res.category} within {res.minutes:g} min: {100 * res.share_before:.1f}% now")
    print(table.to_string(index=False))
    print(f"(residents: {res.residents_basis}; {res.n_candidates} candidates, {res.choice.method})")
    for name, path in res.outputs.items():
        print(f"wrote {name}: {path}")
    print(f"apply it: circles update {args.config} --facilities {res.outputs['facility_file']}")
    return 0


# --------------------------------------------------------------------------- compare


def _add_compare_parser(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser(
        "compare", help="compare a scenario (more, fewer or moved facilities) with a baseline"
    )
    c.add_argument("baseline", help="baseline study TOML")
    c.add_argument(
        "scenario",
        nargs="?",
        help="scenario study TOML (or --scenario NAME for a [[scenarios]] entry)",
    )
    c.add_argument("--scenario", dest="scenario_name", help="a [[scenarios]] name")
    c.add_argument("--output-dir", help="override [study] output_dir")
    c.add_argument("--maps-dir", help="override [study] maps_dir")
    _add_wait(c)


def _compare(args: argparse.Namespace) -> int:
    from circles.config import load_config
    from circles.scenarios import compare, scenario_config

    args.config = args.baseline
    base = _config(args)
    if (args.scenario is None) == (args.scenario_name is None):
        print(
            "circles: error: give a scenario study TOML or --scenario NAME (not both)",
            file=sys.stderr,
        )
        return 2
    if args.scenario_name:
        scen = scenario_config(base, args.scenario_name)
    else:
        scen = load_config(args.scenario)
    res = compare(base, scen, name=args.scenario_name, progress=_progress, wait_s=args.wait)
    print(res.summary_text())
    for name, path in res.outputs.items():
        print(f"wrote {name}: {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
