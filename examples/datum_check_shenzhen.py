"""The datum check's figures on the real Shenzhen Futian walking network (README).

Forty elderly canteens are placed 3-30 m from random streets of the network (WGS84),
then given as a Chinese map service would give them (GCJ-02 for Amap, BD-09 for Baidu,
converted with ``prcoords``, an implementation independent of circles). Each file is
read with a declared ``coord_system``; the script prints the median distance of its
points to the nearest street under each reading, the check's verdict, and the share of
hexagon residents (street length) within 15 minutes of a canteen as read.

Run: ``python examples/datum_check_shenzhen.py`` (needs ../shared/data and prcoords).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import prcoords
import shapely
from pyproj import Transformer

from circles import io
from circles.config import load_config
from circles.facilities import edge_index
from circles.pipeline import run

NET = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "china"
NET = NET / "shenzhen_futian_walk.graphml"
N = 40


def main() -> int:
    if not NET.exists():
        print(f"{NET} not found", file=sys.stderr)
        return 1
    net = io.load_network(NET)
    rng = np.random.default_rng(11)
    lines, _ = edge_index(net)
    e = rng.choice(len(lines), N)
    p = shapely.line_interpolate_point(lines[e], rng.uniform(0, 1, N), normalized=True)
    off, ang = rng.uniform(3, 30, N), rng.uniform(0, 2 * np.pi, N)
    tr = Transformer.from_crs(net.crs, "EPSG:4326", always_xy=True)
    lon, lat = tr.transform(
        shapely.get_x(p) + off * np.cos(ang), shapely.get_y(p) + off * np.sin(ang)
    )
    files = {"wgs84": (np.asarray(lon), np.asarray(lat))}
    for name, conv in (("gcj02", prcoords.wgs_gcj), ("bd09", prcoords.wgs_bd)):
        out = np.array([tuple(conv((la, lo))) for lo, la in zip(lon, lat, strict=True)])
        files[name] = (out[:, 1], out[:, 0])
    cases = [("gcj02", "wgs84"), ("bd09", "gcj02"), ("gcj02", "gcj02"), ("wgs84", "wgs84")]
    print("| file in | declared | median m as wgs84 / gcj02 / bd09 | verdict | 15-min share |")
    print("|---|---|---|---|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for real, declared in cases:
            csv = Path(tmp) / f"canteens_{real}.csv"
            x, y = files[real]
            pd.DataFrame({"编号": [f"C{i}" for i in range(N)], "经度": x, "纬度": y}).to_csv(
                csv, index=False
            )
            toml = Path(tmp) / f"{real}_{declared}.toml"
            toml.write_text(
                f'[study]\nname = "{real}_{declared}"\noutput_dir = "{tmp}/out"\n'
                f'maps_dir = "{tmp}/maps"\n[network]\nsource = "{NET.resolve().as_posix()}"\n'
                '[communities]\nsource = "hexagons"\n[facilities]\nosm = false\n'
                'categories = ["elderly_canteen"]\n[[facilities.files]]\n'
                f'path = "{csv.as_posix()}"\ncategory = "elderly_canteen"\n'
                f'coord_system = "{declared}"\n[isochrones]\nenabled = false\n'
                "[map]\nenabled = false\n",
                encoding="utf-8",
            )
            res = run(load_config(toml), cache=False)
            (doc,) = json.loads(Path(res.outputs["summary_json"]).read_text("utf-8"))["datum_check"]
            med = doc["median_m"]
            verdict = f"warn: use {doc['better']}" if doc["better"] else "no warning"
            cov = res.communities
            w = cov["elderly_canteen_share_15"].to_numpy()
            resid = cov["residents"].to_numpy() if "residents" in cov else np.ones(len(w))
            ok = np.isfinite(w)
            share = float(np.sum(w[ok] * resid[ok]) / np.sum(resid[ok]))
            print(
                f"| {real} | {declared} | {med['wgs84']:.0f} / {med['gcj02']:.0f} / "
                f"{med['bd09']:.0f} | {verdict} | {share:.1%} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
