"""On-disk cache of upstream work, keyed by content hashes (no pickle).

A run keeps what it computed under ``<output_dir>/<study>/.cache/`` so that the next run
with the same inputs reuses it: the parsed walking network, communities, snapped
facilities, per-category node minutes and counts, residents per node, community
isochrones and per-category service areas.

Keys
    Every key is the SHA-256 of a canonical JSON document holding the cache format
    (:data:`CACHE_FORMAT`), the circles version, the kind of entry and everything the
    entry depends on: SHA-256 hashes of input files (by content, never by modification
    time), the relevant configuration values, and the keys (or content hashes) of the
    upstream entries. Changing any input changes the key, so a stale entry is simply
    never looked up.

Memo
    Every stage caches its work through one call, :meth:`Cache.memo`: the stage declares
    its entry kind and the parts of its key next to its code, and the store looks the
    entry up, or computes and keeps it. A :class:`Codec` says how a value is stored
    (:data:`FRAME`, :data:`FRAMES`, :data:`ARRAYS`, :data:`NETWORK`,
    :data:`NETWORK_EXTRA`); the value a stage gets back is the same whether it was
    computed or read (frames go through a Parquet round trip either way), so a run that
    reuses the cache writes exactly what a run that computes everything writes.

Entries
    An entry is a data file in a plain format (``.npz`` without object arrays, GeoParquet
    or Parquet) plus a JSON sidecar holding the format, circles version, kind, full key
    and the SHA-256 of the data file. Both are written atomically (temporary file in the
    same folder, then ``os.replace``), data first, sidecar last. On reading, an entry
    whose sidecar is missing, unreadable, from another format or version, for another
    key, or whose data file does not match its recorded hash (corrupted, truncated) is
    ignored, logged and rebuilt: never trusted. ``np.load`` runs with
    ``allow_pickle=False``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import mmap
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import geopandas as gpd
import numpy as np
import pandas as pd

from circles import __version__
from circles._errors import DataFileError
from circles.io import atomic_path, json_text
from circles.network import WalkNetwork

logger = logging.getLogger(__name__)

#: Version of the cache layout; bump it when an entry's content or meaning changes.
#: 2: object arrays are hashed by their elements' bytes (:func:`array_digest`), geometry
#: by its binary WKB (:func:`frame_digest`).
CACHE_FORMAT = 2

#: Bytes read at a time when hashing a file.
_CHUNK_BYTES = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of a file's bytes.

    The file is hashed through a memory map in one call, which releases the GIL once:
    read and hashed chunk by chunk, each chunk waited for the GIL again while another
    thread (the map's) ran Python, and a 52 MB GeoPackage took 0.3 s instead of 0.04 s.
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:  # an empty file cannot be mapped
            return h.hexdigest()
        try:
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as view:
                h.update(view)
        except (OSError, ValueError):  # a file that cannot be mapped (e.g. a pipe)
            fh.seek(0)
            while chunk := fh.read(_CHUNK_BYTES):
                h.update(chunk)
    return h.hexdigest()


def _canonical(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, list | tuple):
        return [_canonical(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating | float):
        return repr(float(obj))  # exact and JSON-safe (inf, nan)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def digest(kind: str, *parts: Any) -> str:
    """Cache key: SHA-256 of (format, circles version, kind, parts) as canonical JSON."""
    doc = {"format": CACHE_FORMAT, "circles": __version__, "kind": kind, "parts": list(parts)}
    text = json.dumps(_canonical(doc), sort_keys=True, ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def array_digest(*arrays: Any) -> str:
    """SHA-256 of arrays' dtypes, shapes and contents.

    Numeric and fixed-width arrays are hashed by their bytes. Object arrays (WKB
    geometry, text, mixed values) are hashed element by element, each as a type tag, its
    length and its bytes: ``bytes`` as they are, ``str`` as UTF-8, ``None`` as a tag of
    its own, anything else by its ``str``. Nothing is padded to the longest element, so
    hashing 2,000 isochrone WKBs costs about as much as reading their bytes once (the
    earlier form converted them to a fixed-width unicode array: seconds and gigabytes).
    """
    h = hashlib.sha256()
    for a in arrays:
        arr = np.asarray(a)
        if arr.dtype == object:
            h.update(f"object{arr.shape}".encode())
            _hash_objects(h, arr.ravel().tolist())
            continue
        arr = np.ascontiguousarray(arr)
        h.update(f"{arr.dtype.str}{arr.shape}".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def _hash_objects(h: Any, items: list[Any]) -> None:
    """Feed object-array elements to ``h``: tags and lengths first, then the bytes."""
    payloads: list[bytes] = []
    tags = bytearray(len(items))
    for i, x in enumerate(items):
        if isinstance(x, bytes | bytearray | memoryview):
            tags[i] = 66  # "B"
            payloads.append(bytes(x))
        elif x is None:
            tags[i] = 78  # "N"
            payloads.append(b"")
        elif isinstance(x, str):
            tags[i] = 83  # "S"
            payloads.append(x.encode("utf-8", "surrogatepass"))
        else:
            tags[i] = 82  # "R": numbers, timestamps... by their text
            payloads.append(str(x).encode("utf-8", "surrogatepass"))
    lengths = np.fromiter((len(p) for p in payloads), dtype="<i8", count=len(payloads))
    h.update(bytes(tags))
    h.update(lengths.tobytes())
    for p in payloads:
        h.update(p)


def frame_digest(df: pd.DataFrame, columns: Iterable[str] | None = None) -> str:
    """Content hash of a (Geo)DataFrame's columns (geometry as binary WKB)."""
    cols = list(df.columns if columns is None else columns)
    arrays = []
    for c in cols:
        s = df[c]
        if isinstance(s, gpd.GeoSeries):
            arrays.append(np.asarray(s.to_wkb().to_numpy(), dtype=object))
        else:
            v = s.to_numpy()
            arrays.append(v.astype(object) if v.dtype.kind in "OUST" else v)
    return array_digest(np.asarray(cols, dtype=str), *arrays)


# --------------------------------------------------------------------------- frames


@functools.lru_cache(maxsize=16)
def _crs(text: str) -> Any:
    from pyproj import CRS

    return CRS.from_user_input(text)


def read_parquet_frame(source: Any, *, crs: str | None = None) -> pd.DataFrame:
    """Read a (Geo)Parquet file or buffer; with ``crs``, as a GeoDataFrame.

    The geometry column is decoded from WKB with a cached :class:`pyproj.CRS` (parsing a
    GeoParquet file's PROJJSON costs ~10 ms a file, more than reading it).
    """
    df = pd.read_parquet(source)
    if crs is None:
        return df
    geom = gpd.GeoSeries.from_wkb(df["geometry"].to_numpy(), crs=_crs(crs), index=df.index)
    return gpd.GeoDataFrame(df.drop(columns="geometry"), geometry=geom).reindex(
        columns=list(df.columns)
    )


def frame_parquet(df: pd.DataFrame) -> tuple[bytes, str | None]:
    """``df`` as (Geo)Parquet bytes, and its CRS (None: not a GeoDataFrame).

    Raises
    ------
    ValueError
        A GeoDataFrame without a CRS, or whose geometry column is not ``geometry``.
    """
    import io as _io

    buf = _io.BytesIO()
    crs = None
    if isinstance(df, gpd.GeoDataFrame):
        if df.crs is None or df.geometry.name != "geometry":
            raise ValueError("cached GeoDataFrames need a CRS and a 'geometry' column")
        crs = df.crs.to_string()
    df.to_parquet(buf, index=False)
    return buf.getvalue(), crs


def parquet_frame(data: bytes, crs: str | None) -> Any:
    """The frame of :func:`frame_parquet`'s bytes and CRS (its canonical cached form)."""
    import io as _io

    return read_parquet_frame(_io.BytesIO(data), crs=crs)


def frame_roundtrip(df: pd.DataFrame) -> Any:
    """``df`` written to (Geo)Parquet in memory and read back: its canonical cached form."""
    return parquet_frame(*frame_parquet(df))


# --------------------------------------------------------------------------- networks


def network_arrays(network: WalkNetwork) -> dict[str, np.ndarray]:
    """A :class:`WalkNetwork` as plain arrays for ``np.savez`` (no object arrays).

    ``highway`` is stored as a fixed-width unicode array; ``crs``, ``source`` and the
    ``report`` mapping as a JSON string in ``meta``.
    """
    meta = {"crs": network.crs, "source": network.source, "report": dict(network.report)}
    return {
        "node_id": network.node_id,
        "lon": network.lon,
        "lat": network.lat,
        "x": network.x,
        "y": network.y,
        "u": network.u,
        "v": network.v,
        "length_m": network.length_m,
        "direction": network.direction,
        "highway": np.asarray([str(h) for h in network.highway], dtype=str),
        "way_id": network.way_id,
        "dropped_segments": network.dropped_segments,
        "meta": np.asarray(json.dumps(meta, default=_json_default)),
    }


def network_from_arrays(arrays: Mapping[str, np.ndarray]) -> WalkNetwork:
    """Inverse of :func:`network_arrays`."""
    meta = json.loads(str(arrays["meta"][()]))
    return WalkNetwork(
        node_id=np.asarray(arrays["node_id"]),
        lon=np.asarray(arrays["lon"]),
        lat=np.asarray(arrays["lat"]),
        x=np.asarray(arrays["x"]),
        y=np.asarray(arrays["y"]),
        crs=meta["crs"],
        u=np.asarray(arrays["u"]),
        v=np.asarray(arrays["v"]),
        length_m=np.asarray(arrays["length_m"]),
        direction=np.asarray(arrays["direction"]),
        highway=np.asarray(arrays["highway"]).astype(object),
        way_id=np.asarray(arrays["way_id"]),
        source=meta["source"],
        report=meta["report"],
        dropped_segments=np.asarray(arrays["dropped_segments"]),
    )


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


# --------------------------------------------------------------------------- the store


@dataclass
class Cache:
    """A folder of verified cache entries (``root=None``: a cache that never hits).

    Attributes
    ----------
    root : pathlib.Path or None
        The cache folder (created on first write).
    hits, misses : list of str
        ``"<kind>"`` of every lookup that was served / had to be computed, in order.
    """

    root: Path | None
    hits: list[str] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)
    #: Entries being computed in a background thread (:meth:`start_memo`), by kind and key.
    _pending: dict[tuple[str, str], Future[Any]] = field(
        default_factory=dict, repr=False, compare=False
    )

    @property
    def enabled(self) -> bool:
        """Whether entries are read and written."""
        return self.root is not None

    def _paths(self, kind: str, key: str, suffix: str) -> tuple[Path, Path]:
        assert self.root is not None
        stem = f"{kind}-{key[:40]}"
        return self.root / f"{stem}{suffix}", self.root / f"{stem}.json"

    def _check(self, kind: str, key: str, suffix: str) -> tuple[Path, dict[str, Any]] | None:
        if self.root is None:
            self.misses.append(kind)
            return None
        data, side = self._paths(kind, key, suffix)
        if not side.exists() or not data.exists():
            self.misses.append(kind)
            return None
        try:
            meta = json.loads(side.read_text(encoding="utf-8"))
            ok = (
                meta.get("format") == CACHE_FORMAT
                and meta.get("circles") == __version__
                and meta.get("kind") == kind
                and meta.get("key") == key
                and meta.get("sha256") == sha256_file(data)
            )
        except (OSError, ValueError) as exc:
            logger.warning("cache entry %s unreadable (%s); rebuilding it", side.name, exc)
            ok, meta = False, {}
        if not ok:
            logger.warning("cache entry %s is stale or corrupted; rebuilding it", data.name)
            self.misses.append(kind)
            return None
        self.hits.append(kind)
        return data, meta

    def _seal(self, kind: str, key: str, data: Path, info: Mapping[str, Any] | None) -> None:
        from circles.io import write_atomic_text

        _, side = self._paths(kind, key, data.suffix)
        meta = {
            "format": CACHE_FORMAT,
            "circles": __version__,
            "kind": kind,
            "key": key,
            "sha256": sha256_file(data),
            "info": dict(info or {}),
        }
        write_atomic_text(side, json_text(meta, indent=1, default=_json_default))

    def exists(self, kind: str, key: str, suffix: str = ".npz") -> bool:
        """Whether the files of an entry exist (not verified: loading verifies)."""
        if self.root is None:
            return False
        data, side = self._paths(kind, key, suffix)
        return data.is_file() and side.is_file()

    def has(self, kind: str, key: str, suffix: str = ".npz") -> bool:
        """Whether a valid entry exists (not counted as a hit or a miss)."""
        if self.root is None:
            return False
        n_hits, n_misses = len(self.hits), len(self.misses)
        ok = self._check(kind, key, suffix) is not None
        del self.hits[n_hits:], self.misses[n_misses:]
        return ok

    def memo(
        self, kind: str, parts: Sequence[Any], compute: Callable[[], T], *, codec: Codec[T]
    ) -> Keyed[T]:
        """The value of entry ``kind`` keyed by ``parts``: read if cached, else computed
        (``compute()``), stored and returned in its canonical form (see :class:`Codec`).

        Parameters
        ----------
        kind : str
            Entry kind, e.g. ``"communities"`` (also the first part of the key).
        parts : sequence
            Everything the value depends on: upstream keys, file hashes, settings.
        compute : callable
            Computes the value on a miss.
        codec : Codec
            How the value is stored (:data:`FRAME`, :data:`ARRAYS`...).
        """
        return memo(self, kind, parts, compute, codec=codec)

    def start_memo(
        self,
        kind: str,
        parts: Sequence[Any],
        compute: Callable[[], T],
        *,
        codec: Codec[T],
        suffix: str,
    ) -> bool:
        """Begin :meth:`memo` of an entry that is not stored in a background thread.

        A later :meth:`memo` of the same entry waits for it (re-raising its error)
        instead of computing it again. For work that later stages ask for but that can
        start early, on a core the run leaves idle (the map's encoded isochrones, as soon
        as the isochrones are drawn).

        Parameters
        ----------
        kind, parts, compute, codec
            As :meth:`memo`.
        suffix : str
            The entry's data file suffix (``".txt"`` for :data:`TEXT`), to see whether it
            is stored.

        Returns
        -------
        bool
            Whether a computation was started (False: no cache folder, the entry is
            stored, or it is being computed already).
        """
        key = digest(kind, *parts)
        if self.root is None or (kind, key) in self._pending or self.exists(kind, key, suffix):
            return False
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"circles-{kind}")
        self._pending[(kind, key)] = pool.submit(_memo_key, self, kind, key, compute, codec)
        pool.shutdown(wait=False)
        return True

    # arrays ------------------------------------------------------------------

    def load_arrays(self, kind: str, key: str) -> tuple[dict[str, np.ndarray], dict] | None:
        """Arrays of a verified ``.npz`` entry and its ``info`` (None: miss)."""
        got = self._check(kind, key, ".npz")
        if got is None:
            return None
        path, meta = got
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            logger.warning("cache entry %s unreadable (%s); rebuilding it", path.name, exc)
            self.hits.pop()
            self.misses.append(kind)
            return None
        return arrays, meta.get("info", {})

    def save_arrays(
        self,
        kind: str,
        key: str,
        arrays: Mapping[str, np.ndarray],
        info: Mapping[str, Any] | None = None,
    ) -> None:
        """Store arrays (no object arrays) as a verified ``.npz`` entry."""
        if self.root is None:
            return
        path, _ = self._paths(kind, key, ".npz")
        tmp, final = atomic_path(path)
        try:
            with open(tmp, "wb") as fh:
                np.savez(fh, **{k: np.asarray(v) for k, v in arrays.items()})  # type: ignore[arg-type]
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        self._seal(kind, key, final, info)

    # frames ------------------------------------------------------------------

    def load_frame(self, kind: str, key: str) -> tuple[pd.DataFrame, dict] | None:
        """A verified (Geo)Parquet entry and its ``info`` (None: miss)."""
        got = self._check(kind, key, ".parquet")
        if got is None:
            return None
        path, meta = got
        info = meta.get("info", {})
        try:
            if info.get("geo") and not info.get("crs"):
                raise ValueError("a geographic entry without its CRS")
            df = read_parquet_frame(path, crs=info.get("crs") if info.get("geo") else None)
        except Exception as exc:  # pyarrow raises its own error types
            logger.warning("cache entry %s unreadable (%s); rebuilding it", path.name, exc)
            self.hits.pop()
            self.misses.append(kind)
            return None
        return df, info

    def save_frame(
        self, kind: str, key: str, df: pd.DataFrame, info: Mapping[str, Any] | None = None
    ) -> None:
        """Store a (Geo)DataFrame as a verified (Geo)Parquet entry."""
        if self.root is None:
            return
        self.save_parquet(kind, key, *frame_parquet(df), info)

    def save_parquet(
        self,
        kind: str,
        key: str,
        data: bytes,
        crs: str | None,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        """Store (Geo)Parquet bytes (:func:`frame_parquet`) as a verified entry."""
        if self.root is None:
            return
        path, _ = self._paths(kind, key, ".parquet")
        tmp, final = atomic_path(path)
        extra: dict[str, Any] = {"geo": crs is not None}
        if crs is not None:
            extra["crs"] = crs
        try:
            tmp.write_bytes(data)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        self._seal(kind, key, final, {**(info or {}), **extra})

    # networks ----------------------------------------------------------------

    def load_network(self, kind: str, key: str) -> tuple[WalkNetwork, dict] | None:
        """A cached :class:`WalkNetwork` (and extra arrays stored with it)."""
        got = self.load_arrays(kind, key)
        if got is None:
            return None
        arrays, info = got
        try:
            net = network_from_arrays(arrays)
        except (KeyError, ValueError) as exc:
            logger.warning("cache entry %s-%s malformed (%s); rebuilding", kind, key[:12], exc)
            self.hits.pop()
            self.misses.append(kind)
            return None
        extra = {k[len("extra_") :]: v for k, v in arrays.items() if k.startswith("extra_")}
        return net, {**info, "extra": extra}

    def save_network(
        self,
        kind: str,
        key: str,
        network: WalkNetwork,
        *,
        extra: Mapping[str, np.ndarray] | None = None,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        """Store a :class:`WalkNetwork` (plus named extra arrays, e.g. elevations)."""
        arrays = network_arrays(network)
        for k, v in (extra or {}).items():
            arrays[f"extra_{k}"] = np.asarray(v)
        self.save_arrays(kind, key, arrays, info)


# --------------------------------------------------------------------------- memo

T = TypeVar("T")


@dataclass(frozen=True)
class Keyed(Generic[T]):
    """A stage's value with its cache key (the content key later stages build on).

    Attributes
    ----------
    value : object
        The stage's result.
    key : str
        SHA-256 key of the entry (see :func:`digest`).
    cached : bool
        Whether the value was read from the cache (False: computed in this run).
    """

    value: T
    key: str
    cached: bool = False


class Codec(Protocol[T]):
    """How :meth:`Cache.memo` stores one kind of value."""

    def load(self, store: Cache, kind: str, key: str) -> T | None:
        """The stored value (None: not in the cache, or invalid)."""

    def save(self, store: Cache, kind: str, key: str, value: T) -> T:
        """Store ``value`` and return its canonical form (what a later load returns)."""


class _Frame:
    """One (Geo)DataFrame as a (Geo)Parquet entry."""

    def load(self, store: Cache, kind: str, key: str) -> pd.DataFrame | None:
        got = store.load_frame(kind, key)
        return None if got is None else got[0]

    def save(self, store: Cache, kind: str, key: str, value: pd.DataFrame) -> pd.DataFrame:
        # encoded once: the bytes stored are the ones read back as the canonical form
        data, crs = frame_parquet(value)
        store.save_parquet(kind, key, data, crs)
        return parquet_frame(data, crs)


class _Frames:
    """A record (dict) of frames and JSON values: each frame an entry of its own (its item
    name is its entry kind), the JSON values kept with the first frame."""

    def load(self, store: Cache, kind: str, key: str) -> dict[str, Any] | None:
        first = store.load_frame(kind, key)
        if first is None:
            return None
        info = dict(first[1])
        names = list(info.pop("frames", [kind]))
        values = dict(info.pop("values", {}))
        out: dict[str, Any] = {kind: first[0]}
        for name in names:
            if name == kind:
                continue
            got = store.load_frame(name, key)
            if got is None:
                return None
            out[name] = got[0]
        return {**out, **values}

    def save(self, store: Cache, kind: str, key: str, value: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(value.get(kind), pd.DataFrame):
            raise ValueError(f"a FRAMES record of kind {kind!r} needs a frame named {kind!r}")
        encoded = {k: frame_parquet(v) for k, v in value.items() if isinstance(v, pd.DataFrame)}
        values = {k: v for k, v in value.items() if k not in encoded}
        # the other frames first: the first frame's sidecar, written last, seals the record
        for name, (data, crs) in encoded.items():
            if name != kind:
                store.save_parquet(name, key, data, crs)
        store.save_parquet(kind, key, *encoded[kind], {"frames": list(encoded), "values": values})
        return {**{k: parquet_frame(*v) for k, v in encoded.items()}, **values}


class _Arrays:
    """A record (dict) of numpy arrays (one ``.npz``) and JSON values (in its sidecar)."""

    def load(self, store: Cache, kind: str, key: str) -> dict[str, Any] | None:
        got = store.load_arrays(kind, key)
        if got is None:
            return None
        arrays, info = got
        return {**arrays, **dict(info.get("values", {}))}

    def save(self, store: Cache, kind: str, key: str, value: dict[str, Any]) -> dict[str, Any]:
        arrays = {k: v for k, v in value.items() if isinstance(v, np.ndarray)}
        values = {k: v for k, v in value.items() if k not in arrays}
        store.save_arrays(kind, key, arrays, {"values": values})
        return value


class _Text:
    """A text (e.g. a map part's JSON) as a UTF-8 ``.txt`` entry."""

    def load(self, store: Cache, kind: str, key: str) -> str | None:
        got = store._check(kind, key, ".txt")
        if got is None:
            return None
        try:
            return got[0].read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            logger.warning("cache entry %s unreadable (%s); rebuilding it", got[0].name, exc)
            store.hits.pop()
            store.misses.append(kind)
            return None

    def save(self, store: Cache, kind: str, key: str, value: str) -> str:
        if store.root is None:
            return value
        from circles.io import write_atomic_text

        path, _ = store._paths(kind, key, ".txt")
        store._seal(kind, key, write_atomic_text(path, value), None)
        return value


class _Network:
    """A :class:`WalkNetwork` as arrays."""

    def load(self, store: Cache, kind: str, key: str) -> WalkNetwork | None:
        got = store.load_network(kind, key)
        return None if got is None else got[0]

    def save(self, store: Cache, kind: str, key: str, value: WalkNetwork) -> WalkNetwork:
        store.save_network(kind, key, value)
        return value


class _NetworkExtra:
    """A :class:`WalkNetwork` with named arrays kept beside it (e.g. node elevations)."""

    def load(
        self, store: Cache, kind: str, key: str
    ) -> tuple[WalkNetwork, dict[str, np.ndarray]] | None:
        got = store.load_network(kind, key)
        return None if got is None else (got[0], dict(got[1]["extra"]))

    def save(
        self, store: Cache, kind: str, key: str, value: tuple[WalkNetwork, dict[str, np.ndarray]]
    ) -> tuple[WalkNetwork, dict[str, np.ndarray]]:
        store.save_network(kind, key, value[0], extra=value[1])
        return value


#: A (Geo)DataFrame.
FRAME: Codec[pd.DataFrame] = _Frame()
#: A dict of frames (the one named like the kind first) and JSON values.
FRAMES: Codec[dict[str, Any]] = _Frames()
#: A dict of numpy arrays and JSON values.
ARRAYS: Codec[dict[str, Any]] = _Arrays()
#: A text (UTF-8).
TEXT: Codec[str] = _Text()
#: A :class:`WalkNetwork`.
NETWORK: Codec[WalkNetwork] = _Network()
#: A :class:`WalkNetwork` and a dict of arrays.
NETWORK_EXTRA: Codec[tuple[WalkNetwork, dict[str, np.ndarray]]] = _NetworkExtra()


def memo(
    store: Cache,
    kind: str,
    parts: Sequence[Any],
    compute: Callable[[], T],
    *,
    codec: Codec[T],
) -> Keyed[T]:
    """``store.memo``: the value under ``digest(kind, *parts)``, computed once (or
    waited for, where :meth:`Cache.start_memo` began it)."""
    key = digest(kind, *parts)
    pending = store._pending.pop((kind, key), None)
    if pending is not None:
        return pending.result()
    return _memo_key(store, kind, key, compute, codec)


def _memo_key(
    store: Cache, kind: str, key: str, compute: Callable[[], T], codec: Codec[T]
) -> Keyed[T]:
    """The entry ``kind``/``key`` read, else computed and stored."""
    got = codec.load(store, kind, key)
    if got is not None:
        return Keyed(got, key, True)
    return Keyed(codec.save(store, kind, key, compute()), key, False)


class Inputs:
    """The input files a run read, with their SHA-256 (what ``manifest.json`` records).

    Each file is hashed once per run, however many stages name it.
    """

    def __init__(self) -> None:
        self.files: dict[str, dict[str, str]] = {}
        self._sha: dict[str, str] = {}

    def sha(self, name: str, path: str | os.PathLike[str]) -> str:
        """Record ``path`` under ``name`` and return its SHA-256.

        Raises
        ------
        DataFileError
            The file does not exist, or is a folder.
        """
        p = str(path)
        if Path(p).is_dir():
            raise DataFileError(f"{p}: is a folder; a file is needed here ({name})")
        if not Path(p).is_file():
            raise DataFileError(f"{p}: file not found")
        sha = self._sha.get(p)
        if sha is None:
            sha = self._sha[p] = sha256_file(p)
        self.files[name] = {"path": p, "sha256": sha}
        return sha
