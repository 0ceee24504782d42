"""Colours and class breaks shared by every picture circles makes.

The HTML map (:mod:`circles.maps`), the report figures (:mod:`circles.figures`) and the
QGIS styles embedded in the GeoPackage (:mod:`circles.styles`) draw the same classes in
the same colours, so a figure in a report, the web map and QGIS agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = [
    "CATEGORY_COLOURS",
    "FLAG_COLOUR",
    "LEVEL_COLOURS",
    "NO_DATA_COLOUR",
    "OPENING_PREFERENCE",
    "SHARE_BREAKS",
    "SHARE_COLOURS",
    "UNREACHABLE_COLOUR",
    "level_colours",
    "opening_category",
]

#: Class breaks (0-1) of the 15-minute coverage share; fixed so that maps of different
#: studies and categories are comparable. A share of exactly 1.0 falls in the top class.
SHARE_BREAKS: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)

#: Fill colour of each share class (ColorBrewer YlGnBu, 5 classes; colour-blind safe,
#: low coverage light, high coverage dark).
SHARE_COLOURS: tuple[str, ...] = ("#ffffcc", "#a1dab4", "#41b6c4", "#2c7fb8", "#253494")

#: Fill colour of communities whose share is unknown (NaN).
NO_DATA_COLOUR = "#bdbdbd"

#: Outline colour of flagged communities (drawn thick and dashed).
FLAG_COLOUR = "#d7191c"

#: Facility marker colours of the categories, in the order they are given (cycled).
CATEGORY_COLOURS: tuple[str, ...] = (
    "#e41a1c",
    "#ff7f00",
    "#984ea3",
    "#4daf4a",
    "#a65628",
    "#f781bf",
    "#377eb8",
    "#999999",
)

#: Facilities that are not on the network (unreachable, island): grey.
UNREACHABLE_COLOUR = "#9e9e9e"

#: Street colours by walking level for three levels (within 5, 10, 15 minutes) and
#: beyond: green to orange (ColorBrewer RdYlGn), beyond in grey so that red stays the
#: colour of flagged communities.
LEVEL_COLOURS: tuple[str, ...] = ("#1a9641", "#a6d96a", "#fdae61", "#8c8c8c")


def level_colours(n_levels: int) -> tuple[str, ...]:
    """Street colours for ``n_levels`` levels plus "beyond the last" (``n_levels + 1``).

    Three levels give :data:`LEVEL_COLOURS`; other counts are spread along the same
    green-to-red ramp.
    """
    if n_levels == 3:
        return LEVEL_COLOURS
    ramp: Sequence[str] = ("#1a9641", "#a6d96a", "#ffffbf", "#fdae61", "#f46d43")
    if n_levels == 1:
        return (ramp[0], LEVEL_COLOURS[-1])
    near = [ramp[round(i * (len(ramp) - 1) / (n_levels - 1))] for i in range(n_levels)]
    return (*near, LEVEL_COLOURS[-1])


#: Categories a map, figure set or QGIS project opens on, in order of preference (the
#: 15-minute fitness circle first), when they have facilities.
OPENING_PREFERENCE: tuple[str, ...] = ("fitness",)


def opening_category(categories: Sequence[str], facility_counts: Mapping[str, int]) -> str:
    """The category to show first: :data:`OPENING_PREFERENCE`, else the first category
    that has facilities on the network, else the first category.

    Parameters
    ----------
    categories : sequence of str
        The study's categories, in order.
    facility_counts : mapping
        Category -> facilities on the network.
    """
    if not categories:
        raise ValueError("no categories to open on")
    with_any = [c for c in categories if facility_counts.get(c, 0) > 0]
    for c in OPENING_PREFERENCE:
        if c in with_any:
            return c
    return with_any[0] if with_any else categories[0]
