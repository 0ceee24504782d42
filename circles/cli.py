"""Command line: ``circles run [study.toml]`` and friends. The only place that parses
arguments, configures logging or prints."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from circles import __version__
from circles._errors import CirclesError


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
    f = sub.add_parser("fetch", help="download a place's walking network and facilities once")
    f.add_argument("place", help='place name, e.g. "Vaduz, Liechtenstein"')
    f.add_argument("--name", help="file name stem under the raw folder")
    f.add_argument("--raw-dir", default="data/raw")
    return p


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
    except CirclesError as exc:
        print(f"circles: error: {exc}", file=sys.stderr)
        return 2
    return 1  # pragma: no cover


def _progress(msg: str) -> None:
    print(f"  .. {msg}", file=sys.stderr, flush=True)


def _run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from circles.config import default_config, load_config
    from circles.pipeline import run, summary_table

    cfg = load_config(args.config) if args.config else default_config()
    if args.output_dir:
        cfg = replace(cfg, study=replace(cfg.study, output_dir=args.output_dir))
    if args.maps_dir:
        cfg = replace(cfg, study=replace(cfg.study, maps_dir=args.maps_dir))
    result = run(cfg, progress=_progress)
    print(summary_table(result))
    print()
    for name, path in result.outputs.items():
        print(f"wrote {name}: {path}")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from circles import fetch

    name = args.name or fetch.default_raw_name(args.place)
    res = fetch.fetch_osm(place=args.place, name=name, raw_dir=args.raw_dir)
    print(f"saved {res.graphml_path}, {res.features_path}, {res.boundary_path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
