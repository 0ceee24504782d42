"""Two versions of circles on the same study, as whole processes, interleaved.

The version in this working tree against an earlier git revision (``--base``, default
the commit before the pipeline became a chain of stages), on the real Liechtenstein
extract with its 11 municipalities (isochrones, service areas and the map included).
Each repeat runs, for each version in turn (base first, then this tree, so that both
see the same machine load):

1. a cold ``circles run`` in fresh output folders;
2. a no-change re-run;
3. ``circles update`` adding one elderly canteen in Vaduz.

Each step is one process under ``/usr/bin/time -v`` (wall time and peak resident
memory, imports included, as a planner runs it). The base revision is extracted with
``git archive`` into a temporary folder and run with ``PYTHONPATH`` pointing at it, with
the same installed packages.

Run: ``python benchmarks/bench_versions.py [--base REV] [--repeats 3]``. Writes
``benchmarks/results/versions.json`` and prints a markdown table of medians.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PBF = ROOT.parent / "shared" / "data" / "osm" / "liechtenstein-latest.osm.pbf"
OUT = HERE / "results" / "versions.json"
BASE = "5e9aea3"  # the last commit before the chain of stages (issue 10)

STUDY = """[study]
name = "li"
output_dir = "{out}"
maps_dir = "{maps}"
[network]
source = "{pbf}"
[communities]
source = "osm"
admin_level = 8
parent = "Liechtenstein"
"""


def _timed(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and peak resident memory (GB) of one process."""
    got = subprocess.run(
        ["/usr/bin/time", "-v", *cmd], env=env, cwd=cwd, capture_output=True, text=True
    )
    if got.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{got.stderr[-3000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", got.stderr)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", got.stderr)
    assert wall is not None
    assert rss is not None
    h, m, s = (float(x) if x else 0.0 for x in wall.groups())
    return 3600 * h + 60 * m + s, int(rss.group(1)) / 1e6


def _steps(label: str, pythonpath: str | None, work: Path) -> dict[str, tuple[float, float]]:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    else:
        env.pop("PYTHONPATH", None)
    folder = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=work))
    toml = folder / "study.toml"
    toml.write_text(
        STUDY.format(out=folder / "out", maps=folder / "maps", pbf=PBF), encoding="utf-8"
    )
    canteen = folder / "canteen.csv"
    canteen.write_text("id,name,lon,lat\nc1,Vaduz canteen,9.5215,47.1410\n", encoding="utf-8")
    cli = [sys.executable, "-m", "circles.cli"]
    return {
        "cold run": _timed([*cli, "run", str(toml)], env, folder),
        "no-change re-run": _timed([*cli, "run", str(toml)], env, folder),
        "update (one canteen)": _timed(
            [
                *cli,
                "update",
                str(toml),
                "--facilities",
                str(canteen),
                "--category",
                "elderly_canteen",
            ],
            env,
            folder,
        ),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default=BASE, help="git revision to compare against")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if not PBF.is_file():
        print(f"skipped: {PBF} is absent (see ../shared/data/README.md)")
        return 1
    with tempfile.TemporaryDirectory(prefix="circles-versions-") as tmp:
        work = Path(tmp)
        base_src = work / "base"
        base_src.mkdir()
        archive = subprocess.run(
            ["git", "archive", args.base, "circles"], cwd=ROOT, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "x", "-C", str(base_src)], input=archive, check=True)
        runs: dict[str, list[dict[str, tuple[float, float]]]] = {"base": [], "this": []}
        for i in range(args.repeats):
            for label, path in (("base", str(base_src)), ("this", None)):
                got = _steps(label, path, work)
                runs[label].append(got)
                print(f"repeat {i + 1} {label}: " + ", ".join(
                    f"{k} {v[0]:.1f} s / {v[1]:.2f} GB" for k, v in got.items()))  # fmt: skip
    steps = list(runs["this"][0])
    med = {
        label: {
            s: (
                statistics.median(r[s][0] for r in rs),
                statistics.median(r[s][1] for r in rs),
            )
            for s in steps
        }
        for label, rs in runs.items()
    }
    lines = [
        f"| step (median of {args.repeats}) | {args.base} | this tree | this / base |",
        "|---|---:|---:|---:|",
    ]
    for s in steps:
        (bt, bm), (tt, tm) = med["base"][s], med["this"][s]
        lines.append(
            f"| {s}: wall | {bt:.2f} s | {tt:.2f} s | {tt / bt:.2f} |\n"
            f"| {s}: peak memory | {bm:.2f} GB | {tm:.2f} GB | {tm / bm:.2f} |"
        )
    from circles.io import write_atomic_text

    write_atomic_text(OUT, json.dumps({"base": args.base, "runs": runs}, indent=1))
    print("\n".join(lines))
    print(f"\nwrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
