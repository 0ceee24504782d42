"""Values a study file may hold: finite numbers, and names that are safe folder names.

Study, area and scenario names become folders under ``output_dir`` and ``maps_dir``, so
they must stay one folder there on Linux, macOS and Windows; Chinese characters and
spaces are welcome. TOML allows ``nan`` and ``inf``; no study setting means either.
"""

from __future__ import annotations

import math
from typing import Any

from circles._errors import ConfigError


def check_finite(data: Any, *, source: str = "config", key: str = "") -> None:
    """Refuse ``nan`` and ``inf`` anywhere in a parsed study (TOML allows both).

    Parameters
    ----------
    data : dict, list or scalar
        The parsed TOML document (or a part of it).
    source : str, optional
        The file, named in the message.
    key : str, optional
        The dotted key of ``data`` (for the message).

    Raises
    ------
    ConfigError
        Naming the dotted key and the value.
    """
    if isinstance(data, dict):
        for k, v in data.items():
            check_finite(v, source=source, key=f"{key}.{k}" if key else str(k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            check_finite(v, source=source, key=f"{key}[{i}]")
    elif isinstance(data, float) and not math.isfinite(data):
        raise ConfigError(
            f"{source}: {key} = {data}: numbers must be finite (nan and inf are not "
            "allowed); give a number of minutes, metres or a share as documented"
        )


#: Names Windows keeps for devices: a folder of that name cannot be made there.
_RESERVED_NAMES = {"con", "prn", "aux", "nul"} | {
    f"{d}{i}" for d in ("com", "lpt") for i in range(1, 10)
}


def check_name(name: str, *, key: str) -> None:
    """A study or area name that is one safe folder name (Chinese and spaces allowed).

    Parameters
    ----------
    name : str
        The name, used as a folder under ``output_dir`` and ``maps_dir``.
    key : str
        The config key (for the message).

    Raises
    ------
    ConfigError
        Empty, ``.``/``..``, a slash or backslash, a control character, a name Windows
        reserves (``CON``, ``NUL``, ``COM1``...), or a leading or trailing dot or space.
    """
    why = ""
    if not isinstance(name, str) or not name.strip():
        why = "it is empty"
    elif name in {".", ".."} or name.startswith("."):
        why = "it starts with a dot (., .. and hidden folders are not allowed)"
    elif any(ch in name for ch in "/\\"):
        why = "it holds a slash or backslash"
    elif any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        why = "it holds a control character"
    elif any(ch in name for ch in '<>:"|?*'):
        why = 'it holds one of < > : " | ? * (not allowed in Windows folder names)'
    elif name != name.strip() or name.endswith("."):
        why = "it starts or ends with a space, or ends with a dot"
    elif name.split(".")[0].strip().lower() in _RESERVED_NAMES:
        why = "Windows reserves it for a device"
    if why:
        raise ConfigError(
            f"{key} = {name!r} cannot be used as a folder name: {why}; use letters, "
            "digits, Chinese characters, spaces, '-' or '_' (e.g. \"红塔区 2025\")"
        )
