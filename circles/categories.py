"""Facility categories as data: TOML profiles that map OpenStreetMap tags to categories.

A *profile* (``circles/profiles/<name>.toml``) lists categories such as ``fitness`` or
``elderly_canteen``; each category has *rules* that say which OSM features belong to it.
The packaged ``default`` profile and the rule language are documented, rule by rule, in
``circles/profiles/README.md``.

Rule language
-------------
``match``
    A table ``{key = value-or-list}``. Keys are ANDed, the values of a list are ORed and
    ``"*"`` means "the key is present with any value". Values are compared
    case-insensitively with every ``;``-separated part of the feature's value, so
    ``shop=convenience;greengrocer`` matches both ``convenience`` and ``greengrocer``.
``exclude``
    The same shape as ``match``, but a feature is removed when *any* of its entries holds.
``name_regex``
    A Python regular expression searched (case-insensitively) in ``name``, ``name:zh``,
    ``name:zh-Hans``, ``name:en`` and ``official_name``. With ``match`` both must hold;
    alone, the name decides.
``note``
    Free text: why the rule exists and which OSM wiki page it follows.

Optional planning sections (``china_life_circle``, ``fitness_circle``)
----------------------------------------------------------------------
``[[levels]]``
    Walk-time levels of a life circle: ``minutes`` (e.g. 5, 10, 15), ``distance_m`` (the
    standard's approximate walking distance, a number or ``[low, high]``), ``label_en``,
    ``label_zh``, ``source`` and ``status`` (``"verified"``, ``"unverified"`` or
    ``"conflicting"``: whether the value was read in the standard's text).
``[[checklist]]``
    Facility items a community should reach: ``id``, ``level`` (minutes: one of the
    levels), ``categories`` (one or more category ids; any of them satisfies the item),
    ``label_en``, ``label_zh``, ``source`` (standard and clause), ``status`` as above,
    optional ``provision`` (``"required"`` = 应配建, ``"recommended"`` = 宜配建, or ``""``)
    and ``note``. Levels are cumulative: the checklist of the 15-minute circle holds every
    item of level <= 15 (see :meth:`Profile.items_up_to`).

A feature may belong to several categories; within one category the first rule that
matches is reported.

Examples
--------
>>> profile = load_profile("default")
>>> table = classify(pois, profile)  # doctest: +SKIP
>>> table.groupby("category").size()  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import re
import sys
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from circles._errors import ConfigError, DataFileError, InputDataError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "ANY_VALUE",
    "CHECKLIST_STATUSES",
    "NAME_KEYS",
    "PROVISIONS",
    "Category",
    "ChecklistItem",
    "Level",
    "Profile",
    "Rule",
    "category_labels",
    "checklist_table",
    "classify",
    "load_profile",
    "packaged_profiles",
    "rules_table",
]

logger = logging.getLogger(__name__)

#: Value meaning "the key is present with any (non-empty) value".
ANY_VALUE: Final = "*"

#: Tags searched by a rule's ``name_regex`` (OSM ``name`` and its common variants).
NAME_KEYS: Final = ("name", "name:zh", "name:zh-Hans", "name:en", "official_name")

#: Column that may hold further tags as a dict or a JSON object string (pyrosm's ``tags``).
TAGS_COLUMN: Final = "tags"

#: Version of the profile file format understood by this module.
PROFILE_FORMAT_VERSION: Final = 1

_TOP_KEYS: Final = ("profile", "categories", "levels", "checklist")
_LEVEL_KEYS: Final = ("minutes", "distance_m", "label_en", "label_zh", "source", "status", "note")
_ITEM_KEYS: Final = (
    "id",
    "level",
    "categories",
    "label_en",
    "label_zh",
    "source",
    "status",
    "provision",
    "note",
)

#: Allowed ``status`` of a level or checklist item: was it read in the cited source?
CHECKLIST_STATUSES: Final = ("verified", "unverified", "conflicting")

#: Allowed ``provision`` of a checklist item (GB 50180-2018: ▲ 应配建 / △ 宜配建).
PROVISIONS: Final = ("required", "recommended", "")
_PROFILE_KEYS: Final = ("name", "description", "version")
_CATEGORY_KEYS: Final = ("label_en", "label_zh", "description", "elderly", "rules")
_RULE_KEYS: Final = ("match", "exclude", "name_regex", "note")
_CATEGORY_ID_RE: Final = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
_BARE_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]*")
_LABEL_LANGS: Final = ("en", "zh")

#: ``(key, values)`` pairs of a ``match`` or ``exclude`` table; values are lower-case.
Conditions = tuple[tuple[str, tuple[str, ...]], ...]


@dataclass(frozen=True)
class Rule:
    """One way a feature can belong to a category.

    Attributes
    ----------
    id : str
        ``"<category>#<n>"``, ``n`` counting the category's rules from 1 in file order.
    match : tuple of (str, tuple of str)
        Tag conditions, ANDed across keys; values lower-case, ``"*"`` = any value.
    exclude : tuple of (str, tuple of str)
        Tag conditions that remove a feature when any of them holds.
    name_regex : str or None
        Regular expression searched case-insensitively in the :data:`NAME_KEYS` tags.
    note : str
        Why the rule exists (free text).
    """

    id: str
    match: Conditions
    exclude: Conditions
    name_regex: str | None
    note: str = ""


@dataclass(frozen=True)
class Category:
    """A facility category such as ``fitness`` or ``elderly_canteen``.

    Attributes
    ----------
    id : str
        Snake-case identifier used in outputs.
    label_en, label_zh : str
        Display labels in English and Chinese.
    description : str
        What the category covers and which standard asks for it.
    elderly : bool
        Whether the elderly walking speed applies to this category by default.
    rules : tuple of Rule
        The rules; a feature belongs to the category when any rule matches.
    """

    id: str
    label_en: str
    label_zh: str
    description: str
    elderly: bool
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class Level:
    """A walk-time level of a life circle (e.g. GB 50180-2018's 5-minute circle).

    Attributes
    ----------
    minutes : float
        Walking minutes of the level.
    distance_low_m, distance_high_m : float
        The standard's approximate walking distance in metres (equal when one number is
        given; NaN when the profile gives none).
    label_en, label_zh : str
        Display labels.
    source : str
        Where the level comes from (standard and clause).
    status : str
        One of :data:`CHECKLIST_STATUSES`.
    note : str
        Free text.
    """

    minutes: float
    distance_low_m: float
    distance_high_m: float
    label_en: str
    label_zh: str
    source: str
    status: str
    note: str = ""


@dataclass(frozen=True)
class ChecklistItem:
    """A facility a community should reach within a level (e.g. 幼儿园 within 5 minutes).

    Attributes
    ----------
    id : str
        Snake-case identifier.
    level_minutes : float
        The level (walking minutes) at which the item is required.
    categories : tuple of str
        Category ids; a facility of any of them satisfies the item.
    label_en, label_zh : str
        Plain-words names used in reports ("Kindergarten", "幼儿园").
    source : str
        Standard and clause (or plan) that asks for the item.
    status : str
        One of :data:`CHECKLIST_STATUSES`.
    provision : str
        One of :data:`PROVISIONS`.
    note : str
        Free text (uncertainties, conflicts between sources).
    """

    id: str
    level_minutes: float
    categories: tuple[str, ...]
    label_en: str
    label_zh: str
    source: str
    status: str
    provision: str = ""
    note: str = ""


@dataclass(frozen=True)
class Profile:
    """A named set of categories read from a TOML profile file.

    Attributes
    ----------
    name : str
        Profile name (``[profile] name``, else the file's stem).
    description : str
        Free text.
    categories : tuple of Category
        Categories in file order.
    version : int
        Profile format version (currently always 1).
    source : str
        Where the profile was read from (a path or ``circles/profiles/<name>.toml``).
    """

    name: str
    description: str
    categories: tuple[Category, ...]
    version: int = PROFILE_FORMAT_VERSION
    source: str = ""
    levels: tuple[Level, ...] = ()
    checklist: tuple[ChecklistItem, ...] = ()

    @property
    def level_minutes(self) -> tuple[float, ...]:
        """Minutes of the profile's levels, increasing (empty without ``[[levels]]``)."""
        return tuple(lv.minutes for lv in self.levels)

    def items_up_to(self, minutes: float) -> tuple[ChecklistItem, ...]:
        """Checklist items of every level up to ``minutes`` (levels are cumulative).

        The 15-minute circle's checklist holds its own items and those of the 5- and
        10-minute circles.
        """
        return tuple(it for it in self.checklist if it.level_minutes <= float(minutes))

    @property
    def ids(self) -> tuple[str, ...]:
        """Category ids in file order."""
        return tuple(c.id for c in self.categories)

    def category(self, category_id: str) -> Category:
        """Return the category called ``category_id``.

        Raises
        ------
        ConfigError
            If the profile has no such category.
        """
        for cat in self.categories:
            if cat.id == category_id:
                return cat
        raise ConfigError(
            f"profile {self.name!r} has no category {category_id!r}; "
            f"its categories are: {', '.join(self.ids)}"
        )


# --------------------------------------------------------------------------------------
# Loading and validation
# --------------------------------------------------------------------------------------


def packaged_profiles() -> tuple[str, ...]:
    """Names of the profiles shipped in ``circles/profiles/`` (sorted)."""
    folder = resources.files("circles").joinpath("profiles")
    names = [p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml")]
    return tuple(sorted(names))


def load_profile(name_or_path: str | os.PathLike[str]) -> Profile:
    """Read and validate a category profile.

    Parameters
    ----------
    name_or_path : str or path-like
        A bare name such as ``"default"`` loads the packaged
        ``circles/profiles/<name>.toml``; anything else (a :class:`~pathlib.Path`, or a
        string with a directory separator or a ``.toml`` suffix) is read as a file path.

    Returns
    -------
    Profile

    Raises
    ------
    DataFileError
        If the file does not exist or cannot be read as UTF-8 text.
    ConfigError
        If the file is not valid TOML (the message gives the file and line) or breaks the
        profile schema (unknown key, wrong type, bad category id, invalid regex...).
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise ConfigError(
            "load_profile() takes a profile name such as 'default' or a path to a .toml "
            f"file; got {type(name_or_path).__name__}"
        )
    if isinstance(name_or_path, str) and _BARE_NAME_RE.fullmatch(name_or_path):
        text, source, stem = _read_packaged(name_or_path)
    else:
        text, source, stem = _read_path(Path(name_or_path))
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from exc
    profile = _parse_profile(data, source=source, default_name=stem)
    logger.debug(
        "loaded profile %r from %s: %d categories", profile.name, source, len(profile.categories)
    )
    return profile


def _read_packaged(name: str) -> tuple[str, str, str]:
    source = f"circles/profiles/{name}.toml"
    resource = resources.files("circles").joinpath("profiles").joinpath(f"{name}.toml")
    if not resource.is_file():
        raise DataFileError(
            f"no packaged profile named {name!r} (looked for {source}); available: "
            f"{', '.join(packaged_profiles()) or 'none'}; or pass the path of your own .toml"
        )
    return resource.read_text(encoding="utf-8"), source, name


def _read_path(path: Path) -> tuple[str, str, str]:
    source = str(path)
    if not path.is_file():
        raise DataFileError(f"profile file not found: {source}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataFileError(f"{source}: profile is not UTF-8 text ({exc})") from exc
    except OSError as exc:
        raise DataFileError(f"{source}: cannot read profile ({exc})") from exc
    return text, source, path.stem


def _check_keys(table: Mapping[str, Any], allowed: Iterable[str], where: str, source: str) -> None:
    allowed = tuple(allowed)
    for key in table:
        if key not in allowed:
            full = f"{where}.{key}" if where else key
            raise ConfigError(
                f"{source}: unknown key {full!r}; allowed "
                f"{'in ' + where if where else 'at the top level'}: {', '.join(allowed)}"
            )


def _expect(value: Any, kind: type | tuple[type, ...], where: str, source: str, what: str) -> Any:
    # bool is an int subclass: reject it where an int is expected.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{source}: {where} must be {what}; got {value!r}")
    return value


def _parse_profile(data: Mapping[str, Any], *, source: str, default_name: str) -> Profile:
    _check_keys(data, _TOP_KEYS, "", source)
    head = _expect(data.get("profile", {}), dict, "[profile]", source, "a table")
    _check_keys(head, _PROFILE_KEYS, "profile", source)
    name = _expect(head.get("name", default_name), str, "profile.name", source, "a string")
    description = _expect(
        head.get("description", ""), str, "profile.description", source, "a string"
    )
    version = _expect(
        head.get("version", PROFILE_FORMAT_VERSION), int, "profile.version", source, "an integer"
    )
    if version != PROFILE_FORMAT_VERSION:
        raise ConfigError(
            f"{source}: profile.version {version} is not supported; this circles reads "
            f"version {PROFILE_FORMAT_VERSION}"
        )
    if "categories" not in data:
        raise ConfigError(f"{source}: no [categories.<id>] tables; a profile needs at least one")
    cats = _expect(data["categories"], dict, "categories", source, "a table of categories")
    if not cats:
        raise ConfigError(f"{source}: no [categories.<id>] tables; a profile needs at least one")
    categories = tuple(_parse_category(cid, body, source) for cid, body in cats.items())
    levels = _parse_levels(data.get("levels", []), source)
    checklist = _parse_checklist(
        data.get("checklist", []), levels, tuple(c.id for c in categories), source
    )
    return Profile(
        name=name,
        description=description,
        categories=categories,
        version=version,
        source=source,
        levels=levels,
        checklist=checklist,
    )


def _text(table: Mapping[str, Any], key: str, where: str, source: str, *, required: bool) -> str:
    if key not in table:
        if required:
            raise ConfigError(f"{source}: {where} has no {key!r}")
        return ""
    value = _expect(table[key], str, f"{where}.{key}", source, "a string")
    if required and not value.strip():
        raise ConfigError(f"{source}: {where}.{key} is empty; fill it in")
    return str(value)


def _status(table: Mapping[str, Any], where: str, source: str) -> str:
    status = _text(table, "status", where, source, required=True)
    if status not in CHECKLIST_STATUSES:
        raise ConfigError(
            f"{source}: {where}.status must be one of {', '.join(CHECKLIST_STATUSES)}; "
            f"got {status!r} (say 'unverified' when the value was not read in the source)"
        )
    return status


def _minutes(value: Any, where: str, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{source}: {where} must be a positive number of minutes; got {value!r}")
    return float(value)


def _parse_levels(raw: Any, source: str) -> tuple[Level, ...]:
    raw = _expect(raw, list, "levels", source, "an array of [[levels]] tables")
    out: list[Level] = []
    for i, body in enumerate(raw):
        where = f"levels#{i + 1}"
        body = _expect(body, dict, where, source, "a table")
        _check_keys(body, _LEVEL_KEYS, where, source)
        if "minutes" not in body:
            raise ConfigError(f"{source}: {where} has no 'minutes'")
        minutes = _minutes(body["minutes"], f"{where}.minutes", source)
        dist = body.get("distance_m", [])
        scalar = isinstance(dist, (int, float)) and not isinstance(dist, bool)
        dist_list = [dist] if scalar else dist
        if (
            not isinstance(dist_list, list)
            or len(dist_list) > 2
            or any(isinstance(d, bool) or not isinstance(d, (int, float)) for d in dist_list)
            or any(not d > 0 for d in dist_list)
            or (len(dist_list) == 2 and dist_list[0] > dist_list[1])
        ):
            raise ConfigError(
                f"{source}: {where}.distance_m must be a positive number or [low, high] in "
                f"metres; got {dist!r}"
            )
        low = float(dist_list[0]) if dist_list else math.nan
        high = float(dist_list[-1]) if dist_list else math.nan
        out.append(
            Level(
                minutes=minutes,
                distance_low_m=low,
                distance_high_m=high,
                label_en=_text(body, "label_en", where, source, required=True),
                label_zh=_text(body, "label_zh", where, source, required=True),
                source=_text(body, "source", where, source, required=True),
                status=_status(body, where, source),
                note=_text(body, "note", where, source, required=False),
            )
        )
    mins = [lv.minutes for lv in out]
    if any(b <= a for a, b in itertools.pairwise(mins)):
        raise ConfigError(f"{source}: [[levels]] minutes must increase; got {mins}")
    return tuple(out)


def _parse_checklist(
    raw: Any, levels: tuple[Level, ...], category_ids: tuple[str, ...], source: str
) -> tuple[ChecklistItem, ...]:
    raw = _expect(raw, list, "checklist", source, "an array of [[checklist]] tables")
    if raw and not levels:
        raise ConfigError(f"{source}: [[checklist]] items need [[levels]] to refer to")
    level_minutes = [lv.minutes for lv in levels]
    out: list[ChecklistItem] = []
    seen: set[str] = set()
    for i, body in enumerate(raw):
        where = f"checklist#{i + 1}"
        body = _expect(body, dict, where, source, "a table")
        _check_keys(body, _ITEM_KEYS, where, source)
        item_id = _text(body, "id", where, source, required=True)
        if not _CATEGORY_ID_RE.fullmatch(item_id):
            raise ConfigError(f"{source}: {where}.id {item_id!r} is not a snake_case identifier")
        if item_id in seen:
            raise ConfigError(f"{source}: {where}.id {item_id!r} is used twice")
        seen.add(item_id)
        where = f"checklist.{item_id}"
        if "level" not in body:
            raise ConfigError(f"{source}: {where} has no 'level'")
        level = _minutes(body["level"], f"{where}.level", source)
        if level not in level_minutes:
            raise ConfigError(
                f"{source}: {where}.level {body['level']!r} is not one of the [[levels]] "
                f"minutes {level_minutes}"
            )
        cats = body.get("categories")
        cats = [cats] if isinstance(cats, str) else cats
        if not isinstance(cats, list) or not cats or not all(isinstance(c, str) for c in cats):
            raise ConfigError(
                f"{source}: {where}.categories must be a category id or a non-empty list of "
                f"them; got {body.get('categories')!r}"
            )
        unknown = [c for c in cats if c not in category_ids]
        if unknown:
            raise ConfigError(
                f"{source}: {where}.categories names unknown categories {unknown}; the "
                f"profile's categories are: {', '.join(category_ids)}"
            )
        provision = _text(body, "provision", where, source, required=False)
        if provision not in PROVISIONS:
            raise ConfigError(
                f"{source}: {where}.provision must be 'required', 'recommended' or ''; "
                f"got {provision!r}"
            )
        out.append(
            ChecklistItem(
                id=item_id,
                level_minutes=level,
                categories=tuple(dict.fromkeys(cats)),
                label_en=_text(body, "label_en", where, source, required=True),
                label_zh=_text(body, "label_zh", where, source, required=True),
                source=_text(body, "source", where, source, required=True),
                status=_status(body, where, source),
                provision=provision,
                note=_text(body, "note", where, source, required=False),
            )
        )
    return tuple(out)


def _parse_category(cid: str, body: Any, source: str) -> Category:
    where = f"categories.{cid}"
    if not _CATEGORY_ID_RE.fullmatch(cid):
        raise ConfigError(
            f"{source}: category id {cid!r} is not a snake_case identifier "
            "(lower-case letters, digits and single underscores, starting with a letter)"
        )
    body = _expect(body, dict, where, source, "a table")
    _check_keys(body, _CATEGORY_KEYS, where, source)
    for required in ("label_en", "label_zh", "rules"):
        if required not in body:
            raise ConfigError(f"{source}: {where} has no {required!r}")
    label_en = _expect(body["label_en"], str, f"{where}.label_en", source, "a string")
    label_zh = _expect(body["label_zh"], str, f"{where}.label_zh", source, "a string")
    description = _expect(body.get("description", ""), str, f"{where}.description", source, "text")
    elderly = _expect(body.get("elderly", False), bool, f"{where}.elderly", source, "true or false")
    raw_rules = _expect(body["rules"], list, f"{where}.rules", source, "an array of tables")
    if not raw_rules:
        raise ConfigError(f"{source}: {where}.rules is empty; give at least one [[rules]] table")
    rules = tuple(_parse_rule(cid, i + 1, raw, source) for i, raw in enumerate(raw_rules))
    return Category(
        id=cid,
        label_en=label_en,
        label_zh=label_zh,
        description=description,
        elderly=elderly,
        rules=rules,
    )


def _parse_rule(cid: str, number: int, raw: Any, source: str) -> Rule:
    rule_id = f"{cid}#{number}"
    where = f"categories.{cid}.rules#{number}"
    raw = _expect(raw, dict, where, source, "a table")
    _check_keys(raw, _RULE_KEYS, where, source)
    match = _parse_conditions(raw.get("match", {}), f"{where}.match", source)
    exclude = _parse_conditions(raw.get("exclude", {}), f"{where}.exclude", source)
    name_regex = raw.get("name_regex")
    if name_regex is not None:
        _expect(name_regex, str, f"{where}.name_regex", source, "a string")
        if not name_regex.strip():
            raise ConfigError(f"{source}: {where}.name_regex is empty; remove it or fill it in")
        try:
            re.compile(name_regex, re.IGNORECASE)
        except re.error as exc:
            raise ConfigError(
                f"{source}: {where}.name_regex {name_regex!r} is not a valid Python regular "
                f"expression: {exc}"
            ) from exc
    if not match and name_regex is None:
        raise ConfigError(
            f"{source}: {where} matches nothing; give it a 'match' table, a 'name_regex', or both"
        )
    note = _expect(raw.get("note", ""), str, f"{where}.note", source, "a string")
    return Rule(id=rule_id, match=match, exclude=exclude, name_regex=name_regex, note=note)


def _parse_conditions(raw: Any, where: str, source: str) -> Conditions:
    raw = _expect(raw, dict, where, source, "an inline table such as { amenity = 'clinic' }")
    out: list[tuple[str, tuple[str, ...]]] = []
    for key, value in raw.items():
        if not key.strip() or key != key.strip():
            raise ConfigError(f"{source}: {where} has an empty or padded tag key {key!r}")
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not values:
            raise ConfigError(
                f"{source}: {where}.{key} must be a string or a non-empty list of strings; "
                f"got {value!r}"
            )
        clean: list[str] = []
        for v in values:
            if not isinstance(v, str) or not v.strip():
                raise ConfigError(
                    f"{source}: {where}.{key} values must be non-empty strings; got {v!r}"
                )
            if ";" in v:
                raise ConfigError(
                    f"{source}: {where}.{key} value {v!r} contains ';'; list the values "
                    "separately (each part of a multi-valued OSM tag is compared on its own)"
                )
            clean.append(v.strip().lower())
        if ANY_VALUE in clean and len(clean) > 1:
            raise ConfigError(f"{source}: {where}.{key} mixes '*' with other values; use '*' alone")
        out.append((key, tuple(dict.fromkeys(clean))))
    return tuple(out)


# --------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------


def _profile_keys(profile: Profile) -> tuple[str, ...]:
    keys: dict[str, None] = {}
    for cat in profile.categories:
        for rule in cat.rules:
            for key, _ in (*rule.match, *rule.exclude):
                keys[key] = None
            if rule.name_regex is not None:
                keys.update(dict.fromkeys(NAME_KEYS))
    return tuple(keys)


def _to_text(column: pd.Series) -> pd.Series:
    """Object Series of stripped strings, NaN where the tag is absent or empty."""
    if pd.api.types.is_float_dtype(column.dtype):
        # 1.0 read from a CSV with gaps means the tag value "1".
        values = column.map(
            lambda x: None if pd.isna(x) else (str(int(x)) if float(x).is_integer() else str(x))
        )
    else:
        values = column
    out = pd.Series(values.to_numpy(dtype=object), dtype=object)
    present = out.notna().to_numpy()
    if present.any():
        out[present] = out[present].astype(str).str.strip()
    out[out.eq("").to_numpy() | ~present] = np.nan
    return out


def _parse_tags_column(column: pd.Series, keys: tuple[str, ...]) -> pd.DataFrame:
    """Wide frame (RangeIndex) of ``keys`` read from a column of dicts / JSON objects."""

    def as_dict(value: Any) -> dict[str, Any]:
        if isinstance(value, dict):
            return value
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return {}
        if isinstance(value, str):
            if not value.strip():
                return {}
            parsed = json.loads(value)
            if isinstance(parsed, dict):
                return parsed
        raise TypeError(type(value).__name__)

    dicts: list[dict[str, Any]] = []
    for label, value in zip(column.index, column.to_numpy(dtype=object), strict=True):
        try:
            dicts.append(as_dict(value))
        except (ValueError, TypeError) as exc:
            raise InputDataError(
                f"column {TAGS_COLUMN!r} at row {label!r} is neither a dict nor a JSON object "
                f"string ({exc}); fix or drop that row, or drop the column"
            ) from exc
    return pd.DataFrame(dicts, columns=list(keys), index=pd.RangeIndex(len(dicts)))


class _TagTable:
    """Tag values of the input features by key, read lazily, with a positional index."""

    def __init__(self, features: pd.DataFrame, keys: tuple[str, ...]) -> None:
        self._n = len(features)
        self._columns: dict[str, pd.Series] = {
            k: _to_text(features[k]) for k in keys if k in features.columns
        }
        self._extra: pd.DataFrame | None = None
        if TAGS_COLUMN in features.columns and self._n:
            self._extra = _parse_tags_column(features[TAGS_COLUMN], keys)
        self._text: dict[str, pd.Series] = {}
        self._lower: dict[str, pd.Series] = {}

    def text(self, key: str) -> pd.Series:
        if key not in self._text:
            value = self._columns.get(key)
            if self._extra is not None:
                extra = _to_text(self._extra[key])
                value = extra if value is None else value.where(value.notna(), extra)
            if value is None:
                value = pd.Series(np.full(self._n, np.nan, dtype=object), dtype=object)
            self._text[key] = value
        return self._text[key]

    def lower(self, key: str) -> pd.Series:
        if key not in self._lower:
            s = self.text(key)
            present = s.notna().to_numpy()
            low = s.copy()
            if present.any():
                low[present] = s[present].str.lower()
            self._lower[key] = low
        return self._lower[key]

    def condition(self, key: str, values: tuple[str, ...]) -> np.ndarray:
        """Boolean mask: the tag ``key`` has one of ``values`` (any ``;``-part)."""
        s = self.lower(key)
        if values == (ANY_VALUE,):
            return s.notna().to_numpy()
        hit = s.isin(values).to_numpy().copy()
        multi = s.str.contains(";", regex=False, na=False).to_numpy(dtype=bool)
        if multi.any():
            parts = s[multi].str.split(";").explode().str.strip()
            any_part = parts.isin(values).groupby(level=0).any()
            hit[any_part.index[any_part.to_numpy()].to_numpy(dtype=np.intp)] = True
        return hit

    def name_matches(self, pattern: str) -> np.ndarray:
        """Boolean mask: ``pattern`` is found in any of the :data:`NAME_KEYS` tags."""
        found = np.zeros(self._n, dtype=bool)
        with warnings.catch_warnings():
            # Capturing groups are fine here: only the boolean result is used.
            warnings.filterwarnings(
                "ignore", message="This pattern is interpreted as a regular expression"
            )
            for key in NAME_KEYS:
                s = self.text(key)
                if s.notna().any():
                    found |= s.str.contains(
                        pattern, flags=re.IGNORECASE, regex=True, na=False
                    ).to_numpy(dtype=bool)
        return found

    def rule_mask(self, rule: Rule) -> np.ndarray:
        mask = np.ones(self._n, dtype=bool)
        for key, values in rule.match:
            mask &= self.condition(key, values)
        if rule.name_regex is not None and mask.any():
            mask &= self.name_matches(rule.name_regex)
        for key, values in rule.exclude:
            if not mask.any():
                break
            mask &= ~self.condition(key, values)
        return mask


def classify(features: pd.DataFrame, profile: Profile) -> pd.DataFrame:
    """Assign OSM features to the categories of a profile.

    Parameters
    ----------
    features : pandas.DataFrame or geopandas.GeoDataFrame
        One row per OSM feature, one column per OSM key (``amenity``, ``leisure``,
        ``name``, ``social_facility:for``...). Missing columns count as absent tags. An
        optional ``tags`` column holds further tags as a dict or a JSON object string
        (pyrosm's layout); a tag column wins over the same key in ``tags``.
    profile : Profile
        From :func:`load_profile`.

    Returns
    -------
    pandas.DataFrame
        Columns ``feature_index`` (the input row's index label), ``category`` and ``rule``
        (the first matching rule of that category, e.g. ``"fitness#1"``): one row per
        (feature, category) match, ordered by input row, then by category order in the
        profile.

    Raises
    ------
    InputDataError
        If ``features`` is not a DataFrame or its ``tags`` column holds something other
        than dicts or JSON object strings.
    ConfigError
        If ``profile`` is not a :class:`Profile`.
    """
    if not isinstance(features, pd.DataFrame):
        raise InputDataError(
            f"classify() needs a (Geo)DataFrame of OSM features; got {type(features).__name__}"
        )
    if not isinstance(profile, Profile):
        raise ConfigError(
            f"classify() needs a Profile from load_profile(); got {type(profile).__name__}"
        )
    if features.columns.has_duplicates:
        dupes = sorted({str(c) for c in features.columns[features.columns.duplicated()]})
        raise InputDataError(f"features has duplicate columns {dupes}; keep one of each")
    tags = _TagTable(features, _profile_keys(profile))
    n = len(features)
    pieces: list[pd.DataFrame] = []
    for order, cat in enumerate(profile.categories):
        first_rule = np.full(n, -1, dtype=np.int64)
        for i, rule in enumerate(cat.rules):
            new = tags.rule_mask(rule) & (first_rule < 0)
            first_rule[new] = i
        positions = np.flatnonzero(first_rule >= 0)
        rule_ids = np.array([r.id for r in cat.rules], dtype=object)
        pieces.append(
            pd.DataFrame(
                {
                    "_position": positions,
                    "_order": order,
                    "category": cat.id,
                    "rule": rule_ids[first_rule[positions]],
                }
            )
        )
        logger.debug("category %s: %d features", cat.id, positions.size)
    table = pd.concat(pieces, ignore_index=True)
    table = table.sort_values(["_position", "_order"], kind="mergesort")
    positions = table["_position"].to_numpy(dtype=np.intp)
    result = pd.DataFrame(
        {
            "feature_index": features.index.take(positions),
            "category": table["category"].to_numpy(dtype=object),
            "rule": table["rule"].to_numpy(dtype=object),
        }
    )
    return result


def category_labels(profile: Profile, lang: str = "en") -> dict[str, str]:
    """Map category id to its display label.

    Parameters
    ----------
    profile : Profile
    lang : {"en", "zh"}
        Label language.

    Returns
    -------
    dict
        ``{category id: label}`` in profile order.
    """
    if not isinstance(profile, Profile):
        raise ConfigError(f"category_labels() needs a Profile; got {type(profile).__name__}")
    if lang not in _LABEL_LANGS:
        raise ConfigError(f"lang must be one of {', '.join(_LABEL_LANGS)}; got {lang!r}")
    attr = f"label_{lang}"
    return {c.id: getattr(c, attr) for c in profile.categories}


def checklist_table(profile: Profile) -> pd.DataFrame:
    """One row per checklist item, for reports and documentation.

    Returns
    -------
    pandas.DataFrame
        Columns ``item``, ``level_minutes``, ``categories`` (``a / b``), ``label_zh``,
        ``label_en``, ``provision``, ``status``, ``source`` and ``note``; empty when the
        profile has no ``[[checklist]]``.
    """
    if not isinstance(profile, Profile):
        raise ConfigError(f"checklist_table() needs a Profile; got {type(profile).__name__}")
    cols = [
        "item",
        "level_minutes",
        "categories",
        "label_zh",
        "label_en",
        "provision",
        "status",
        "source",
        "note",
    ]
    rows = [
        {
            "item": it.id,
            "level_minutes": it.level_minutes,
            "categories": " / ".join(it.categories),
            "label_zh": it.label_zh,
            "label_en": it.label_en,
            "provision": it.provision,
            "status": it.status,
            "source": it.source,
            "note": it.note,
        }
        for it in profile.checklist
    ]
    return pd.DataFrame(rows, columns=cols)


def _format_conditions(conditions: Conditions, sep: str) -> str:
    return sep.join(f"{k}={'/'.join(v)}" for k, v in conditions)


def rules_table(profile: Profile) -> pd.DataFrame:
    """One row per rule, for reports and documentation.

    Returns
    -------
    pandas.DataFrame
        Columns ``category``, ``rule``, ``match`` (``key=v1/v2 + key2=*``: all must hold),
        ``exclude`` (``key=v1 or key2=*``: any removes), ``name_regex`` and ``note``; empty
        strings where a rule has no such part.
    """
    if not isinstance(profile, Profile):
        raise ConfigError(f"rules_table() needs a Profile; got {type(profile).__name__}")
    rows = [
        {
            "category": cat.id,
            "rule": rule.id,
            "match": _format_conditions(rule.match, " + "),
            "exclude": _format_conditions(rule.exclude, " or "),
            "name_regex": rule.name_regex or "",
            "note": rule.note,
        }
        for cat in profile.categories
        for rule in cat.rules
    ]
    return pd.DataFrame(
        rows, columns=["category", "rule", "match", "exclude", "name_regex", "note"]
    )
