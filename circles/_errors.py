"""Exceptions raised by circles.

Every error is a :class:`CirclesError` and also a builtin type (``ValueError`` or
``OSError``), so callers can catch either the domain error or the builtin one
(r5py's idiom).
"""

from __future__ import annotations


class CirclesError(Exception):
    """Base class of every error raised by circles."""


class ConfigError(CirclesError, ValueError):
    """A study configuration or a profile is invalid (unknown key, wrong type, bad value)."""


class InputDataError(CirclesError, ValueError):
    """Input data cannot be used as given (missing columns, no CRS, empty network...)."""


class DataFileError(CirclesError, OSError):
    """A data file cannot be read at all (missing, unreadable, wrong format)."""


class NetworkError(CirclesError, ValueError):
    """The walking network is unusable (no walkable ways, no nodes in the study area)."""


class FetchError(CirclesError, OSError):
    """An online download (osmnx / Overpass / Nominatim) failed."""


class OutputError(CirclesError, OSError):
    """An output could not be written (disk full, read-only folder...); the previous
    outputs are left as they were."""


class StudyBusyError(CirclesError, OSError):
    """Another process is running, updating or writing the same study (its lock is held)."""


class LedgerError(CirclesError, ValueError):
    """A recorded update of a study (``updates/ledger.json``) cannot be applied: its copy
    is missing or changed, or it no longer reads.

    Attributes
    ----------
    number : int
        The update's number in the ledger (1-based: ``circles update STUDY.toml --revert
        N`` removes it).
    reason : str
        What is wrong, without the ledger entry's name.
    """

    def __init__(self, message: str, *, number: int, reason: str) -> None:
        super().__init__(message)
        self.number = number
        self.reason = reason
