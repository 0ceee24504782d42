"""Typed, documented defaults in one place.

Every number carries its unit in its name. Change these through a study configuration
(see :mod:`circles.pipeline`) rather than by editing the module.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

#: Walking speeds in metres per second, with their sources (../shared/RESEARCH.md).
#:
#: - ``adult``: 1.2 m/s, the pedestrian-crossing design speed used for general populations
#:   (FHWA MUTCD 4E.06 walking speed; also ~= 4.3 km/h, between the osmnx example's 4.5 km/h
#:   and Chinese planning practice, where 15 min ~= 800-1000 m, i.e. 0.9-1.1 m/s).
#: - ``planning``: 1.0 m/s (60 m/min), the speed implied by GB 50180-2018's 15-minute
#:   level of 800-1000 m; use it to reproduce Chinese planning radii.
#: - ``elderly``: 0.9 m/s, UK adults aged 65+ (men 0.9, women 0.8 m/s; Bohannon & Andrews
#:   2011 / Health Survey for England).
#: - ``elderly_slow``: 0.76 m/s, adults 65+ at risk of mobility disability.
#: - ``child``: 1.0 m/s, a conservative figure for primary-school children walking with
#:   adults.
WALK_SPEEDS_M_S: Final = MappingProxyType(
    {
        "adult": 1.2,
        "planning": 1.0,
        "elderly": 0.9,
        "elderly_slow": 0.76,
        "child": 1.0,
    }
)

#: Default walking speed preset.
DEFAULT_SPEED: Final = "adult"

#: Walk-time levels in minutes (GB 50180-2018: 5-, 10- and 15-minute life circles).
LEVELS_MINUTES: Final = (5, 10, 15)

#: Dijkstra search cut-off in minutes: nodes farther than this from every facility of a
#: category get ``inf`` minutes (reported as "beyond the cut-off"). Must be >= the largest
#: level; 45 min keeps medians and 90th percentiles finite for all but remote nodes.
MAX_MINUTES: Final = 45.0

#: Largest straight-line distance in metres from a facility to the nearest walkable edge.
#: Farther facilities are reported as ``unreachable`` instead of being snapped across a
#: river or a motorway.
MAX_SNAP_M: Final = 200.0

#: A community is flagged for a category when its 15-minute share is below this (0-1).
FLAG_THRESHOLD_SHARE: Final = 0.8

#: Categories whose flags are always reported (Yuxi plan: elderly canteens, the
#: 15-minute fitness circle and emergency shelters).
ALWAYS_FLAG: Final = ("elderly_canteen", "fitness", "shelter")

#: Flat-to-flat width in metres of the hexagons used as stand-in communities when a
#: study has no boundaries (the embedded Helsinki default).
HEX_WIDTH_M: Final = 450.0

#: Administrative level of the communities read from an OSM extract by default
#: (municipalities in Liechtenstein; ``admin_level=8`` is the common municipal level).
ADMIN_LEVEL: Final = 8

#: Geographic CRS of all inputs and outputs (OSM's datum).
WGS84: Final = "EPSG:4326"

#: Tolerance in metres when comparing network distances (engine vs networkx).
DISTANCE_TOLERANCE_M: Final = 1e-6
