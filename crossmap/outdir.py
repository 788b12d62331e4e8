"""Writing a program directory safely: what ``-o OUT`` may be, what ``--force`` may replace, and
the atomic write itself.

- ``check_output`` runs before any work: the parent must be creatable and writable, and an
  existing ``OUT`` is refused unless ``overwrite``; even then only an empty directory or a
  directory holding a crossmap program (a ``manifest.json`` of format ``crossmap-program``) is
  replaced. Files, links, other directories, the current directory and its parents are refused
  and left untouched.
- ``write_directory_atomically`` writes into a hidden temporary directory next to ``OUT``
  (``.OUT.tmp-HOST-PID-TOKEN``), created with the user's umask, and renames it into place. A
  process killed half way leaves only such a directory; the next write into the same parent
  removes those of processes that no longer run. When two processes write ``OUT`` at once, the
  one that finishes second gets a clear ``OutputExistsError`` and its temporary directory is
  removed. Where Linux offers ``renameat2``, the new directory is moved in without replacing
  anything (``RENAME_NOREPLACE``) or swapped with the old one in one step (``RENAME_EXCHANGE``), so
  even a kill at the worst moment leaves the old program or the new one, never neither.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
from pathlib import Path
from typing import Callable

from crossmap.errors import OutputError, OutputExistsError

PROGRAM_FORMAT = "crossmap-program"
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 256 * 2**20
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[0-9a-f]{8}$")


def _host_tag() -> str:
    """8 hex digits naming this machine, so a temporary directory on a shared file system is
    only judged stale by a process on the machine that made it."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def is_program_directory(path: Path) -> bool:
    """True when ``path`` is a real directory whose ``manifest.json`` is a crossmap program manifest
    (a JSON object with ``format`` ``crossmap-program`` and an integer ``schema_version``)."""
    manifest = path / MANIFEST
    try:
        if path.is_symlink() or not path.is_dir() or manifest.is_symlink() or not manifest.is_file():
            return False
        if manifest.stat().st_size > MAX_MANIFEST_BYTES:
            return False
        data = json.loads(manifest.read_bytes())
    except (OSError, ValueError, RecursionError):
        return False
    return (isinstance(data, dict) and data.get("format") == PROGRAM_FORMAT
            and isinstance(data.get("schema_version"), int))


def _describe(path: Path) -> str:
    if path.is_symlink():
        return "a symbolic link"
    if path.is_dir():
        return "a directory"
    if path.is_file():
        return "a regular file"
    return "a special file (device, pipe or socket)"


def _refuse_existing(target: Path, overwrite: bool) -> None:
    """Raise unless ``target`` (which exists) may be replaced."""
    shown = str(target)
    if not overwrite:
        raise OutputExistsError(f"output directory {shown!r} already exists; choose a new path or pass "
                                f"overwrite=True (--force on the command line)")
    if target.is_dir() and not target.is_symlink():
        try:
            entries = sorted(p.name for p in target.iterdir())
        except OSError as exc:
            raise OutputError(f"output directory {shown!r} cannot be listed ({exc.strerror}); choose another "
                              f"path") from None
        if not entries or is_program_directory(target):
            return
        raise OutputExistsError(f"output {shown!r} is a directory that does not hold a crossmap program "
                                f"({len(entries)} entries, e.g. {entries[0]!r}, and no crossmap manifest.json); "
                                f"--force replaces only a program directory or an empty directory, so nothing "
                                f"was changed; choose another path or move those files away yourself")
    raise OutputExistsError(f"output {shown!r} is {_describe(target)}, not a program directory; --force replaces "
                            f"only a program directory or an empty directory, so nothing was changed; choose "
                            f"another path")


def _nearest_existing(path: Path) -> Path:
    while not os.path.lexists(path) and path.parent != path:
        path = path.parent
    return path


def check_output(output: str | os.PathLike, overwrite: bool = False) -> Path:
    """Check an output directory path before any work is done; return it as an absolute path.
    Raise ``OutputExistsError`` when it exists and may not be replaced, ``OutputError`` when it
    cannot be created (a file on the way, a read-only or virtual file system)."""
    text = os.fspath(output)
    if not str(text).strip():
        raise OutputError("the output path is empty; pass -o OUT with a directory name")
    target = Path(os.path.abspath(text))
    if target.parent == target:
        raise OutputError(f"output {str(text)!r} is the root directory; pass -o OUT with a new directory name")
    try:
        cwd = Path.cwd().resolve()
        resolved = target.resolve()
    except (OSError, RuntimeError):
        cwd = resolved = None
    if resolved is not None and (resolved == cwd or resolved in cwd.parents):
        raise OutputExistsError(f"output {str(text)!r} is the current directory or contains it; a program is "
                                f"written to a directory of its own, e.g. -o {str(text).rstrip('/') or '.'}/prog; "
                                f"nothing was changed")
    if os.path.lexists(target):
        _refuse_existing(target, overwrite)
    base = _nearest_existing(target.parent)
    if not base.is_dir():
        raise OutputError(f"output {str(text)!r}: {str(base)!r} is {_describe(base)}, so no directory can be "
                          f"created under it; choose another path")
    if not os.access(base, os.W_OK | os.X_OK):
        raise OutputError(f"output {str(text)!r}: directory {str(base)!r} is not writable; choose a path you "
                          f"can write to")
    probe = base / f".{target.name}.probe-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        os.mkdir(probe)
        os.rmdir(probe)
    except OSError as exc:
        raise OutputError(f"output {str(text)!r}: cannot create a directory in {str(base)!r} ({exc.strerror}); "
                          f"choose a path on a writable file system") from None
    return target


def clean_stale_temporaries(parent: Path) -> list[Path]:
    """Remove the temporary directories that writers on this machine left in ``parent`` when they
    were killed (named ``.NAME.tmp-HOST-PID-TOKEN`` or ``.NAME.old-...`` with a PID that no longer
    runs); a replaced program set aside in ``.NAME.old-...`` is moved back to ``NAME`` when nothing
    took its place. Returns those removed."""
    removed = []
    host = _host_tag()
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP.match(entry.name)
        if not match or match["host"] != host or entry.is_symlink() or not entry.is_dir():
            continue
        if _running(int(match["pid"])):
            continue
        old, target = entry / "old", parent / match["name"]
        if match["kind"] == "old" and old.is_dir() and not os.path.lexists(target):
            try:  # killed between moving the old program aside and moving the new one in: put it back
                os.rename(old, target)
            except OSError:
                continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def _make_temp(parent: Path, name: str, kind: str) -> Path:
    """A new empty directory ``.NAME.KIND-HOST-PID-TOKEN`` in ``parent``, mode 0777 less the umask."""
    while True:
        path = parent / f".{name}.{kind}-{_host_tag()}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            os.mkdir(path, 0o777)
            return path
        except FileExistsError:
            continue


_RENAME_NOREPLACE, _RENAME_EXCHANGE = 1, 2


def _renameat2(src: Path, dst: Path, flags: int) -> bool:
    """Linux ``renameat2``: True when done, False when this system or file system lacks it (the
    caller falls back to plain renames); other failures raise OSError."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_cwd = -100
    if call(at_cwd, os.fsencode(src), at_cwd, os.fsencode(dst), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(dst))


def _lost_race(target: Path) -> OutputExistsError:
    return OutputExistsError(f"output directory {str(target)!r} was written by another process while this one was "
                             f"working; this result was not written and the other one was kept; choose another "
                             f"path, or rerun with --force to replace it")


def write_directory_atomically(target: str | os.PathLike, write: Callable[[Path], None],
                               overwrite: bool) -> None:
    """Call ``write(tmp_dir)`` and move the result to ``target``; on any error nothing is left.
    With ``overwrite`` an existing program directory (or empty directory) at ``target`` is replaced
    only after the new one is complete; anything else there is refused (see ``check_output``)."""
    target = check_output(target, overwrite)
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create directory {str(parent)!r} ({exc.strerror}); choose another path") from None
    clean_stale_temporaries(parent)
    try:
        tmp = _make_temp(parent, target.name, "tmp")
    except OSError as exc:
        raise OutputError(f"cannot create a directory in {str(parent)!r} ({exc.strerror}); choose another "
                          f"path") from None
    trash: Path | None = None
    try:
        try:
            write(tmp)
        except OSError as exc:
            raise OutputError(f"cannot write {str(target)!r}: {exc.strerror or exc}; nothing was written "
                              f"(free space or choose another path)") from None
        try:
            if os.path.lexists(target):
                _refuse_existing(target, overwrite)  # raises unless replacing is allowed
                try:
                    swapped = _renameat2(tmp, target, _RENAME_EXCHANGE)  # a kill leaves the old or the new
                except FileNotFoundError:  # removed meanwhile by another writer
                    swapped = False
                if swapped:
                    shutil.rmtree(tmp, ignore_errors=True)  # now holds the replaced program
                    return
                trash = _make_temp(parent, target.name, "old")
                try:
                    os.rename(target, trash / "old")
                except FileNotFoundError:  # removed meanwhile by another writer: nothing to keep
                    pass
            if not _renameat2(tmp, target, _RENAME_NOREPLACE):
                os.rename(tmp, target)
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                raise _lost_race(target) from None
            raise OutputError(f"cannot move the new program to {str(target)!r} ({exc.strerror}); nothing was "
                              f"written") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if trash is not None:
            old = trash / "old"
            if old.exists() and not os.path.lexists(target):
                try:
                    os.rename(old, target)  # put the replaced program back
                except OSError:
                    pass
            shutil.rmtree(trash, ignore_errors=True)
        raise
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)
