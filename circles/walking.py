"""Walking profiles: how fast a group of residents walks, on steps and on slopes.

A :class:`WalkProfile` says how fast a group walks on the flat, how much longer steps
take, whether steps can be used at all and how steep a way may be. The named profiles
(:data:`WALK_PROFILES`, :data:`CYCLE_PROFILES`) carry their sources. Slope-aware times
from a DEM are in :mod:`circles.terrain`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from circles._errors import ConfigError
from circles.settings import WALK_SPEEDS_M_S

#: Highway values timed as steps.
STEPS_HIGHWAYS = frozenset({"steps"})


@dataclass(frozen=True)
class WalkProfile:
    """How a group of residents walks.

    Attributes
    ----------
    name : str
        Profile name.
    speed_m_s : float
        Walking speed on the flat in m/s.
    steps_factor : float
        Time on steps relative to the same length on the flat (>= 1).
    exclude_steps : bool
        Steps cannot be used at all (their edges get ``inf`` seconds).
    max_grade : float or None
        Steepest usable grade (rise/run, e.g. 0.0833 for 1:12); steeper edges get
        ``inf`` seconds when elevations are given. None: no limit.
    source : str
        Where the numbers come from.
    """

    name: str
    speed_m_s: float
    steps_factor: float = 2.0
    exclude_steps: bool = False
    max_grade: float | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if not (isinstance(self.speed_m_s, (int, float)) and 0 < self.speed_m_s < 10):
            raise ConfigError(
                f"walk profile {self.name!r}: speed_m_s must be in (0, 10) m/s, "
                f"got {self.speed_m_s!r}"
            )
        if not (isinstance(self.steps_factor, (int, float)) and self.steps_factor >= 1):
            raise ConfigError(
                f"walk profile {self.name!r}: steps_factor must be >= 1 (steps are not "
                f"faster than the flat), got {self.steps_factor!r}"
            )
        if self.max_grade is not None and not (
            isinstance(self.max_grade, (int, float)) and self.max_grade > 0
        ):
            raise ConfigError(
                f"walk profile {self.name!r}: max_grade must be a positive rise/run "
                f"(0.0833 for 1:12) or None, got {self.max_grade!r}"
            )


#: 1:12, the steepest ramp for wheelchair users: ADA 2010 Standards §405.2 and
#: GB 50763-2012 无障碍设计规范 (ramp slope 1:12 at most for a 0.75 m rise) [M: the
#: GB clause number was not checked against the text].
WHEELCHAIR_MAX_GRADE = 1.0 / 12.0

_STAIRS_NOTE = (
    "steps_factor 2.0: assumption, consistent with stair speeds of roughly half the level "
    "walking speed reported by Fruin (1971, Pedestrian Planning and Design) [M: not "
    "checked against the text]"
)

#: Named walking profiles.
WALK_PROFILES: Mapping[str, WalkProfile] = MappingProxyType(
    {
        "adult": WalkProfile(
            name="adult",
            speed_m_s=WALK_SPEEDS_M_S["adult"],
            steps_factor=2.0,
            source="1.2 m/s: pedestrian-crossing design speed (FHWA MUTCD 4E.06); " + _STAIRS_NOTE,
        ),
        "elderly": WalkProfile(
            name="elderly",
            speed_m_s=WALK_SPEEDS_M_S["elderly"],
            steps_factor=2.5,
            source="0.9 m/s: UK adults 65+ (men 0.9, women 0.8 m/s; Bohannon & Andrews "
            "2011, Health Survey for England); steps_factor 2.5: assumption (older people "
            "slow more on stairs than on the flat)",
        ),
        "planning": WalkProfile(
            name="planning",
            speed_m_s=WALK_SPEEDS_M_S["planning"],
            steps_factor=2.0,
            source="1.0 m/s (60 m/min): the speed implied by GB 50180-2018's 15-minute level "
            "of 800-1000 m; " + _STAIRS_NOTE,
        ),
        "elderly_slow": WalkProfile(
            name="elderly_slow",
            speed_m_s=WALK_SPEEDS_M_S["elderly_slow"],
            steps_factor=2.5,
            source="0.76 m/s: adults 65+ at risk of mobility disability; steps_factor 2.5: "
            "assumption",
        ),
        "child": WalkProfile(
            name="child",
            speed_m_s=WALK_SPEEDS_M_S["child"],
            steps_factor=2.0,
            source="1.0 m/s: assumption, a conservative figure for primary-school "
            "children walking with adults (circles.settings.WALK_SPEEDS_M_S); " + _STAIRS_NOTE,
        ),
        "wheelchair": WalkProfile(
            name="wheelchair",
            speed_m_s=0.9,
            steps_factor=1.0,
            exclude_steps=True,
            max_grade=WHEELCHAIR_MAX_GRADE,
            source="0.9 m/s: assumption, at the low end of manual wheelchair speeds on "
            "level ground (about 0.9-1.1 m/s) [M]; no steps; steepest grade 1:12 "
            "(ADA 2010 §405.2; GB 50763-2012)",
        ),
    }
)


#: Cycling speed on the flat in m/s: 4.2 m/s = 15 km/h.
BICYCLE_SPEED_M_S = 4.2

#: Named cycling profiles, for the cycling network (``load_network(..., mode="bike")``).
#: Kept apart from :data:`WALK_PROFILES` so that ``[walk] profile`` cannot name one.
CYCLE_PROFILES: Mapping[str, WalkProfile] = MappingProxyType(
    {
        "bicycle": WalkProfile(
            name="bicycle",
            speed_m_s=BICYCLE_SPEED_M_S,
            steps_factor=1.0,
            exclude_steps=True,
            source="4.2 m/s (15 km/h): assumption, a common average door-to-door urban "
            "cycling speed in accessibility planning (the 15-minute-city literature and "
            "many city cycling plans use 15 km/h; riders on their own commonly average "
            "15-20 km/h) [M: no single standard fixes it; set [cycling] speed_m_s to "
            "your own figure]; no steps (the cycling network has none)",
        ),
    }
)


def get_profile(profile: WalkProfile | str) -> WalkProfile:
    """A :class:`WalkProfile` from itself or a name in :data:`WALK_PROFILES` or
    :data:`CYCLE_PROFILES`."""
    if isinstance(profile, WalkProfile):
        return profile
    if isinstance(profile, str) and profile in WALK_PROFILES:
        return WALK_PROFILES[profile]
    if isinstance(profile, str) and profile in CYCLE_PROFILES:
        return CYCLE_PROFILES[profile]
    raise ConfigError(
        f"unknown walk profile {profile!r}; use one of "
        f"{sorted([*WALK_PROFILES, *CYCLE_PROFILES])} or a circles.walking.WalkProfile"
    )
