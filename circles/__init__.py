"""circles: 15-minute life-circle walking accessibility for community planning.

The pipeline stages are separate modules (:mod:`circles.io`, :mod:`circles.network`,
:mod:`circles.categories`, :mod:`circles.facilities`, :mod:`circles.access`,
:mod:`circles.coverage`, :mod:`circles.pipeline`). Importing the package has no side
effects.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("circles")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = ["__version__"]
