"""A study's outputs as one transaction, and one lock per study.

Lock
    :func:`study_lock` holds ``<folder>/.circles.lock`` (an OS file lock, released when
    the process ends, however it ends) for the whole of a run, an update or a batch. A
    second process either waits (``wait_s``) or stops at once with a
    :class:`~circles._errors.StudyBusyError` naming the study and the process that holds
    it. The lock is re-entrant within a thread (an update holds it and runs the study).

Transaction
    A :class:`Transaction` writes every new output into hidden staging folders next to
    the final ones (``<folder>/.circles-staging/``; the same file system, so a rename
    moves a file without copying it). Nothing the user sees changes until
    :meth:`Transaction.commit`: it writes a journal (``.circles-commit.json``: which
    staged file goes where), renames the staged files into place, the manifest last, and
    removes the journal. A run that fails or is killed before the journal is written
    leaves the previous outputs exactly as they were; one killed during the renames
    (milliseconds) is finished by the next command on the study (:func:`recover`, run
    whenever the lock is taken), which completes the renames from the journal. Either
    way a reader sees the previous set or the new set, and ``manifest.json`` records the
    SHA-256 of every file of the set it belongs to.

Leftovers
    :func:`recover` also removes what killed runs leave: staging folders without a
    journal, and temporary files of :func:`circles.io.atomic_path` (``.<name>.<pid>.…``)
    whose process is gone.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
import socket
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from circles._errors import OutputError, StudyBusyError
from circles._hooks import checkpoint
from circles.cache import sha256_file
from circles.io import json_text, write_atomic_text

logger = logging.getLogger(__name__)

#: The lock file of a study (or of one area of it).
LOCK_NAME = ".circles.lock"
#: The staging folder of a transaction, in each output root.
STAGING_NAME = ".circles-staging"
#: The commit journal, in the first output root.
JOURNAL_NAME = ".circles-commit.json"
#: Temporary files of :func:`circles.io.atomic_path`: ``.<name>.<pid>.<random><suffix>``.
_TEMP = re.compile(r"^\..+\.(?P<pid>\d+)\.[A-Za-z0-9_]{8}(\.[^.]+)?$")
#: Temporary files of the versions before the transaction (``tempfile.mkstemp``:
#: ``.<name>.<8 random characters><suffix>``, no process id): removed once they are
#: older than :data:`OLD_TEMP_AGE_S`, since their process cannot be known.
_OLD_TEMP = re.compile(r"^\.[^.]+\.[a-z0-9_]{8}\.[A-Za-z0-9]+$")
#: Seconds after which an old-style temporary file counts as left by a killed run.
OLD_TEMP_AGE_S = 3600.0
#: Seconds between attempts while waiting for a lock.
POLL_S = 0.2

_HELD: dict[str, list[Any]] = {}  # lock path -> [fd, thread id, depth]
_HELD_GUARD = threading.Lock()


# --------------------------------------------------------------------------- locking


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":  # pragma: no cover - not tested on Linux CI
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(fd: int) -> None:
    if sys.platform == "win32":  # pragma: no cover
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_UN)


def _holder(path: Path) -> str:
    """Who holds a lock, as its holder wrote it (or "another process")."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        doc = {}
    if not doc.get("pid"):
        return "another process"
    return (
        f"process {doc['pid']} on {doc.get('host', '?')} "
        f"({doc.get('command', '?')}, since {doc.get('since', '?')})"
    )


@contextlib.contextmanager
def study_lock(
    folder: str | os.PathLike[str], *, study: str, wait_s: float = 0.0
) -> Iterator[None]:
    """Hold the lock of a study's output folder for the duration of the block.

    Parameters
    ----------
    folder : path-like
        The study's (or area's) output folder; created if missing.
    study : str
        The study's name, for the message.
    wait_s : float
        Seconds to wait for another process to finish (0: stop at once; ``inf``: wait
        as long as it takes).

    Raises
    ------
    StudyBusyError
        Another process holds the lock (after ``wait_s``).
    OutputError
        The folder cannot be created or the lock file cannot be opened.
    """
    if not wait_s >= 0:
        raise ValueError(f"wait_s must be >= 0 seconds, got {wait_s!r}")
    root = Path(folder)
    try:
        root.mkdir(parents=True, exist_ok=True)
        path = root / LOCK_NAME
        key = os.path.realpath(path)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create the study folder ({exc.strerror})") from exc
    me = threading.get_ident()
    with _HELD_GUARD:
        held = _HELD.get(key)
        if held is not None and held[1] == me:
            held[2] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _HELD_GUARD:
                _HELD[key][2] -= 1
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise OutputError(f"{path}: cannot open the study lock ({exc.strerror})") from exc
    deadline = time.monotonic() + wait_s
    try:
        while True:
            with _HELD_GUARD:
                taken = key not in _HELD and _try_lock(fd)
                if taken:
                    _HELD[key] = [fd, me, 1]
            if taken:
                break
            if time.monotonic() >= deadline:
                raise StudyBusyError(
                    f"study {study!r} ({root}) is in use by {_holder(path)}; wait for it "
                    "to finish, or run again with --wait SECONDS"
                )
            time.sleep(POLL_S)
    except BaseException:
        os.close(fd)
        raise
    try:
        doc = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:])[:200],
            "since": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json_text(doc).encode(), 0)
        yield
    finally:
        with _HELD_GUARD:
            _HELD.pop(key, None)
        try:
            os.ftruncate(fd, 0)
            _unlock(fd)
        finally:
            os.close(fd)


# --------------------------------------------------------------------------- recovery


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - another user's process
        return True
    except OSError:  # pragma: no cover - e.g. Windows without that pid
        return False
    return True


def remove_temp_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove temporary files of :func:`circles.io.atomic_path` whose process is gone.

    Also removes the temporary files earlier versions of circles left behind
    (``.circles.k3j4h5g6.gpkg``: no process id in the name) once they are older than
    :data:`OLD_TEMP_AGE_S`. Returns the files removed.
    """
    out: list[Path] = []
    root = Path(folder)
    if not root.is_dir():
        return out
    now = time.time()
    for p in root.iterdir():
        m = _TEMP.match(p.name)
        if m is None:
            if not _OLD_TEMP.match(p.name) or not p.is_file():
                continue
            with contextlib.suppress(OSError):
                if now - p.stat().st_mtime > OLD_TEMP_AGE_S:
                    p.unlink()
                    out.append(p)
            continue
        if not p.is_file() or _alive(int(m["pid"])):
            continue
        with contextlib.suppress(OSError):
            p.unlink()
            out.append(p)
    return out


def recover(
    roots: Mapping[str, str | os.PathLike[str]], *, also: Iterable[str | os.PathLike[str]] = ()
) -> str | None:
    """Finish or undo an interrupted transaction over ``roots``; remove leftovers.

    Call it while holding the study's lock (:func:`study_lock`).

    Parameters
    ----------
    roots : mapping
        Root name -> folder, as given to :class:`Transaction` (the journal lives in the
        first root).
    also : iterable of path-like
        Further folders (the cache) whose temporary files of finished processes are
        removed.

    Returns
    -------
    str or None
        ``"finished"`` (an interrupted commit was completed), ``"removed"`` (staged
        files of an unfinished run were removed) or None (nothing to do).
    """
    folders = {k: Path(v) for k, v in roots.items()}
    first = next(iter(folders.values()))
    journal = first / JOURNAL_NAME
    what = None
    if journal.is_file():
        try:
            doc = json.loads(journal.read_text(encoding="utf-8"))
            moves = [(str(r), str(n)) for r, n in doc["moves"]]
            removes = [(str(r), str(n)) for r, n in doc.get("removes", [])]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise OutputError(
                f"{journal}: unreadable commit journal ({exc}); remove it and run again"
            ) from exc
        for root, name in moves:
            if root not in folders:
                continue
            src = folders[root] / STAGING_NAME / name
            if src.exists():
                dst = folders[root] / name
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)
        _remove_outputs(folders, removes)
        journal.unlink()
        what = "finished"
        logger.warning("finished the interrupted commit of %s", first)
    for folder in folders.values():
        staging = folder / STAGING_NAME
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
            what = what or "removed"
        remove_temp_files(folder)
    for extra in also:
        remove_temp_files(extra)
    return what


# --------------------------------------------------------------------------- transaction


def _remove_outputs(roots: Mapping[str, Path], names: Iterable[tuple[str, str]]) -> None:
    """Remove the outputs ``(root, name)`` that exist (a commit's removals), and the
    folders they leave empty inside their root."""
    for root, name in names:
        if root not in roots:
            continue
        path = roots[root] / name
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        parent = path.parent
        while parent != roots[root] and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. directories on Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


class Transaction:
    """Outputs staged in hidden folders, made visible together by :meth:`commit`.

    Parameters
    ----------
    roots : mapping
        Root name -> final folder, e.g. ``{"data": out_dir, "maps": map_dir}``. Every
        output is a path relative to one root.

    Examples
    --------
    >>> tx = Transaction({"data": "out"})  # doctest: +SKIP
    >>> tx.path("data", "coverage.csv").write_text("...")  # doctest: +SKIP
    >>> tx.commit()  # doctest: +SKIP
    """

    def __init__(self, roots: Mapping[str, str | os.PathLike[str]]) -> None:
        if not roots:
            raise ValueError("a transaction needs at least one output folder")
        self.roots = {k: Path(v) for k, v in roots.items()}
        self._staged: dict[tuple[str, str], Path] = {}
        self._last: list[tuple[str, str]] = []
        self._removed: list[tuple[str, str]] = []
        self.done = False

    def final(self, root: str, name: str) -> Path:
        """Where the output ``name`` of ``root`` ends up."""
        return self.roots[root] / name

    def path(self, root: str, name: str, *, last: bool = False) -> Path:
        """The staged path of output ``name`` (relative to ``root``), folders created.

        Parameters
        ----------
        root : str
            A root name given to the constructor.
        name : str
            The output's path relative to that root (``"report/indicators.csv"``).
        last : bool
            Move this file last at commit (the manifest).

        Raises
        ------
        OutputError
            The staging folder cannot be created (read-only folder, a file in the way).
        """
        if self.done:
            raise RuntimeError("the transaction is already committed or aborted")
        rel = Path(name)
        if rel.is_absolute() or ".." in rel.parts:
            raise ValueError(f"output names are relative paths inside their folder: {name!r}")
        staged = self.roots[root] / STAGING_NAME / rel
        try:
            staged.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(
                f"{self.roots[root] / rel}: cannot be written ({exc.strerror or exc}); the "
                "previous outputs are unchanged"
            ) from exc
        self._staged[(root, rel.as_posix())] = staged
        if last:
            self._last.append((root, rel.as_posix()))
        return staged

    def folder(self, root: str, name: str) -> Path:
        """The staged folder ``name`` (relative to ``root``), created; files written into
        it are committed once registered with :meth:`path`."""
        staged = self.path(root, f"{name}/_")
        del self._staged[(root, Path(name, "_").as_posix())]
        return staged.parent

    def remove(self, root: str, name: str) -> None:
        """Remove the output ``name`` of ``root`` at commit (an output of the previous set
        that the new set no longer has), after every staged file is in place.

        Raises
        ------
        ValueError
            ``name`` is not a relative path inside its folder, or it is also staged.
        """
        rel = Path(name)
        if rel.is_absolute() or ".." in rel.parts or root not in self.roots:
            raise ValueError(f"output names are relative paths inside their folder: {name!r}")
        key = (root, rel.as_posix())
        if key in self._staged:
            raise ValueError(f"{name!r} is staged: it cannot also be removed")
        if key not in self._removed:
            self._removed.append(key)

    @property
    def staged(self) -> dict[tuple[str, str], Path]:
        """``(root, name) -> staged path`` of every output staged so far."""
        return dict(self._staged)

    def commit(self) -> list[Path]:
        """Make every staged output visible (journal, renames, journal removed).

        Returns
        -------
        list of pathlib.Path
            The final paths, in the order they were moved.

        Raises
        ------
        OutputError
            A staged file is missing, or the journal cannot be written (nothing changed).
        """
        if self.done:
            raise RuntimeError("the transaction is already committed or aborted")
        order = [k for k in self._staged if k not in self._last] + self._last
        for k in order:
            staged = self._staged[k]
            if not staged.is_file():
                raise OutputError(
                    f"{self.final(*k)}: was not written; the previous outputs are unchanged"
                )
            _fsync(staged)
        first = next(iter(self.roots.values()))
        try:
            write_atomic_text(
                first / JOURNAL_NAME,
                json_text(
                    {
                        "moves": [list(k) for k in order],
                        "removes": [list(k) for k in self._removed],
                    },
                    ensure_ascii=False,
                ),
            )
        except OSError as exc:
            self.abort()
            raise OutputError(
                f"{first / JOURNAL_NAME}: cannot be written ({exc.strerror or exc}); the "
                "previous outputs are unchanged"
            ) from exc
        checkpoint("commit:journal")
        moved: list[Path] = []
        for i, k in enumerate(order):
            dst = self.final(*k)
            try:
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(self._staged[k], dst)
            except OSError as exc:
                raise OutputError(
                    f"{dst}: cannot be moved into place ({exc.strerror or exc}); the next "
                    "run of the study finishes this commit from its journal"
                ) from exc
            moved.append(dst)
            if i == 0:
                checkpoint("commit:moving")
        _remove_outputs(self.roots, self._removed)
        (first / JOURNAL_NAME).unlink()
        for root in dict.fromkeys(self.roots.values()):
            shutil.rmtree(root / STAGING_NAME, ignore_errors=True)
            _fsync(root)
        self.done = True
        return moved

    def abort(self) -> None:
        """Drop every staged output (the previous outputs stay as they are)."""
        for root in dict.fromkeys(self.roots.values()):
            shutil.rmtree(root / STAGING_NAME, ignore_errors=True)
        self.done = True

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, *exc: Any) -> None:
        if not self.done:
            self.abort()


def remove_dropped(tx: Transaction, previous: Any, records: Mapping[str, Any]) -> list[Path]:
    """Remove at commit the previous set's outputs that the new set no longer has.

    The figures of a category no longer computed, a GCJ-02 copy no longer asked for:
    without this they would stay beside the new set, listed by no manifest. A file that
    is no longer what the previous manifest recorded (edited by hand since) is left in
    place, with a warning.

    Parameters
    ----------
    tx : Transaction
        The run's transaction (its staged outputs are kept).
    previous : mapping or None
        The previous ``manifest.json``'s ``outputs`` (``{"path", "root", "sha256"}`` each).
    records : mapping
        The new set's outputs, in the same form.

    Returns
    -------
    list of pathlib.Path
        The files that the commit will remove.
    """
    out: list[Path] = []
    if not isinstance(previous, Mapping):
        return out
    kept = {(r.get("root", "data"), r.get("path")) for r in records.values() if isinstance(r, dict)}
    for rec in previous.values():
        if not isinstance(rec, dict) or not isinstance(rec.get("path"), str):
            continue
        root, name = str(rec.get("root", "data")), Path(rec["path"]).as_posix()
        if root not in tx.roots or Path(name).is_absolute() or ".." in Path(name).parts:
            continue
        if (root, name) in kept or (root, name) in tx.staged:
            continue
        path = tx.final(root, name)
        if not path.is_file():
            continue
        try:
            same = sha256_file(path) == rec.get("sha256")
        except OSError:
            same = False
        if same:
            tx.remove(root, name)
            out.append(path)
        else:
            logger.warning(
                "%s: no longer an output of this study, but changed since it was written; "
                "left in place",
                path,
            )
    return out


def os_error_message(exc: OSError, path: str | os.PathLike[str]) -> str:
    """``<path>: cannot be written (<reason>)`` for an :class:`OSError`."""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        reason = "no space left on the device"
    return f"{path}: cannot be written ({reason}); the previous outputs are unchanged"
