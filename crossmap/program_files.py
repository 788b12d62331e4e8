"""Reading the files of a program directory as untrusted input.

Every failure is a ``ProgramFormatError`` (exit code 3) naming the file, the field or archive
member, and the remedy (recompile). Nothing is decompressed or allocated before its size is known
to be what the manifest promises:

- ``manifest.json`` is size-capped, parsed without NaN or Infinity, nesting-capped, and checked
  against its own SHA-256 (``manifest_checksum``: the canonical JSON of every other field), so an
  edit of any field (latency, encoding, energy costs ...) is caught, not just a change of the arrays.
- ``arrays.npz`` is read member by member: the zip directory first (names, compression method,
  sizes), then each ``.npy`` header (dtype, shape), both compared with the manifest, and only then
  the data, into a buffer of exactly the expected size, with the zip CRC checked.
- Extra files written with the program (``report.json``, ``inputs.npy`` ...) have their SHA-256 in
  the manifest (``files``).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from crossmap.errors import ProgramFormatError

MAX_MANIFEST_BYTES = 64 * 2**20
MAX_JSON_DEPTH = 64
MAX_PROGRAM_BYTES = 16 * 2**30  # the arrays of a program in memory (the crossbar unpacked to bools)
MAX_NPY_HEADER = 64 * 2**10
MAX_MEMBERS = 64
REMEDY = "recompile the program (crossmap compile MODEL.onnx -o OUT --force)"


def canonical_json(value: Any) -> bytes:
    """The bytes a checksum of JSON data is taken over: sorted keys, no spaces, ASCII, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def manifest_digest(manifest: dict[str, Any]) -> str:
    """SHA-256 of every manifest field except ``manifest_checksum`` itself."""
    return hashlib.sha256(canonical_json({k: v for k, v in manifest.items() if k != "manifest_checksum"})).hexdigest()


def file_digest(data: bytes) -> str:
    """SHA-256 of a file's bytes, as recorded in the manifest's ``files``."""
    return hashlib.sha256(data).hexdigest()


ARRAYS_COMPRESSLEVEL = 1  # zlib level of arrays.npz: 3x faster to write than the default 6, files 1.4x larger


def write_arrays(path: Path, arrays: dict[str, np.ndarray], level: int = ARRAYS_COMPRESSLEVEL) -> None:
    """Write ``arrays`` as an ``.npz`` (one deflated ``NAME.npy`` member each, in the given order)
    that ``numpy.load`` reads; the bytes depend only on the arrays (fixed member timestamps)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=level) as archive:
        for name, value in arrays.items():
            data = io.BytesIO()
            np.lib.format.write_array(data, np.ascontiguousarray(value), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            archive.writestr(info, data.getbuffer(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=level)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_JSON_DEPTH:
            return depth
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def read_json_file(path: Path, what: str, max_bytes: int | None = None) -> Any:
    """Parsed JSON of a program file: size-capped (default ``MAX_MANIFEST_BYTES``), strict (no
    NaN/Infinity), depth-capped."""
    max_bytes = MAX_MANIFEST_BYTES if max_bytes is None else max_bytes
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ProgramFormatError(f"{path}: file missing; {what}; {REMEDY}") from None
    except OSError as exc:
        raise ProgramFormatError(f"{path}: cannot be read ({exc.strerror}); check its permissions") from None
    if not path.is_file():
        raise ProgramFormatError(f"{path}: not a regular file; {REMEDY}")
    if size > max_bytes:
        raise ProgramFormatError(f"{path}: {size:,} bytes, more than the {max_bytes:,} a program's JSON may have; "
                                 f"the file is not one crossmap wrote, {REMEDY}")
    try:
        text = path.read_bytes().decode("utf-8")
        data = json.loads(text, parse_constant=_no_constants)
    except OSError as exc:
        raise ProgramFormatError(f"{path}: cannot be read ({exc.strerror}); check its permissions") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise ProgramFormatError(f"{path}: not valid JSON ({reason}); the file is corrupt or truncated, "
                                 f"{REMEDY}") from None
    if _depth(data) > MAX_JSON_DEPTH:
        raise ProgramFormatError(f"{path}: JSON nested more than {MAX_JSON_DEPTH} levels deep; the file is not one "
                                 f"crossmap wrote, {REMEDY}")
    return data


def check_manifest_digest(manifest: dict[str, Any], path: Path) -> None:
    """Raise unless ``manifest_checksum`` matches the other fields."""
    recorded = manifest.get("manifest_checksum")
    if not isinstance(recorded, str):
        raise ProgramFormatError(f"{path}: field 'manifest_checksum' is missing, so the manifest's fields cannot be "
                                 f"trusted (the program was written by an older crossmap, or edited); {REMEDY}")
    try:
        actual = manifest_digest(manifest)
    except (TypeError, ValueError) as exc:
        raise ProgramFormatError(f"{path}: the manifest holds values that are not plain JSON ({exc}); {REMEDY}") from None
    if actual != recorded:
        raise ProgramFormatError(f"{path}: checksum mismatch (field 'manifest_checksum' {recorded[:12]}..., the "
                                 f"fields hash to {actual[:12]}...); the manifest was modified or corrupted, {REMEDY}")


def expected_shapes(manifest: dict[str, Any], fields: dict[str, tuple[str, tuple[str, ...]]],
                    chip: Any, path: Path) -> dict[str, tuple[int, ...]]:
    """The shape of every array from the manifest's sizes and the chip, checked against the
    shapes the manifest lists; raise on any disagreement or on a program too big to load."""
    listed = manifest["arrays"]
    unknown = sorted(set(listed) - set(fields))
    if unknown:
        raise ProgramFormatError(f"{path}: field 'arrays' lists unknown arrays {unknown}; {REMEDY}")
    m = listed["input_channel"]["shape"]
    dims = {"C": manifest["num_cores"], "A": chip.axons_per_core, "N": chip.neurons_per_core, "G": chip.axon_types,
            "M": m[0] if len(m) == 1 else -1, "P": manifest["num_ports"], "2": 2}
    if dims["C"] > chip.max_cores:
        raise ProgramFormatError(f"{path}: field 'num_cores' = {dims['C']:,} is more than the {chip.max_cores:,} cores "
                                 f"of chip spec {chip.name!r}; {REMEDY}")
    shapes, total = {}, 0
    for name, (dtype, symbols) in fields.items():
        want = tuple(int(dims[s]) for s in symbols)
        entry = listed[name]
        if tuple(entry["shape"]) != want or entry["dtype"] != dtype:
            raise ProgramFormatError(f"{path}: field 'arrays.{name}' says {entry['dtype']}{list(entry['shape'])}, the "
                                     f"program's sizes need {dtype}{list(want)} ({' x '.join(symbols)}); {REMEDY}")
        shapes[name] = want
        total += int(np.prod(want, dtype=object)) * np.dtype(dtype).itemsize
    if total > MAX_PROGRAM_BYTES:
        raise ProgramFormatError(f"{path}: the arrays would take {total / 2**30:.1f} GiB in memory, more than the "
                                 f"{MAX_PROGRAM_BYTES / 2**30:.0f} GiB crossmap loads; the manifest is not one "
                                 f"crossmap wrote, {REMEDY}")
    return shapes


def _stored_form(name: str, dtype: str, shape: tuple[int, ...]) -> tuple[np.dtype, tuple[int, ...]]:
    """dtype and shape of an array as stored in the archive (the crossbar is bit-packed)."""
    if name == "crossbar":
        count = int(np.prod(shape, dtype=object))
        return np.dtype(np.uint8), ((count + 7) // 8,)
    return np.dtype(dtype), shape


def read_arrays(path: Path, shapes: dict[str, tuple[int, ...]],
                fields: dict[str, tuple[str, tuple[str, ...]]]) -> dict[str, np.ndarray]:
    """The arrays of ``arrays.npz``, each checked against ``shapes`` before it is decompressed."""
    if not path.is_file():
        raise ProgramFormatError(f"{path}: file missing; the program directory is incomplete, {REMEDY}")
    stored = {name: _stored_form(name, fields[name][0], shape) for name, shape in shapes.items()}
    payload = {name: int(np.prod(shape, dtype=object)) * dtype.itemsize for name, (dtype, shape) in stored.items()}
    limit = sum(payload.values()) * 1.01 + len(payload) * (MAX_NPY_HEADER + 1024) + 2**20
    size = path.stat().st_size
    if size > limit:
        raise ProgramFormatError(f"{path}: {size:,} bytes, more than the arrays the manifest lists can take "
                                 f"({int(limit):,}); the file holds something else, {REMEDY}")
    member = None
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            if len(infos) > MAX_MEMBERS:
                raise ProgramFormatError(f"{path}: {len(infos)} archive members, a program has {len(fields)}; {REMEDY}")
            by_name: dict[str, zipfile.ZipInfo] = {}
            for info in infos:
                member = info.filename
                name = member[:-4] if member.endswith(".npy") else member
                if name not in stored:
                    raise ProgramFormatError(f"{path}: member {member!r} is not an array of a program; {REMEDY}")
                if name in by_name:
                    raise ProgramFormatError(f"{path}: member {member!r} appears twice; {REMEDY}")
                by_name[name] = info
            out = {}
            for name in fields:
                member = f"{name}.npy"
                if name not in by_name:
                    raise ProgramFormatError(f"{path}: array {name!r} is missing; {REMEDY}")
                out[name] = _read_member(archive, by_name[name], *stored[name], payload[name], path)
            member = None
            return out
    except ProgramFormatError:
        raise
    except Exception as exc:  # zipfile, zlib and the npy header parser raise many kinds
        where = f"member {member!r}" if member else "the archive"
        raise ProgramFormatError(f"{path}: cannot read the arrays ({where}: {type(exc).__name__}: "
                                 f"{str(exc)[:200]}); the file is corrupt or truncated, {REMEDY}") from None


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, dtype: np.dtype, shape: tuple[int, ...],
                 nbytes: int, path: Path) -> np.ndarray:
    """One array: directory entry, then npy header, then exactly ``nbytes`` of data."""
    member = info.filename
    if info.flag_bits & 0x1:
        raise ProgramFormatError(f"{path}: member {member!r} is encrypted; {REMEDY}")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ProgramFormatError(f"{path}: member {member!r} uses compression method {info.compress_type}, crossmap "
                                 f"writes only stored or deflated members; {REMEDY}")
    if not nbytes <= info.file_size <= nbytes + MAX_NPY_HEADER:
        raise ProgramFormatError(f"{path}: member {member!r} unpacks to {info.file_size:,} bytes, the manifest's "
                                 f"shape {list(shape)} needs {nbytes:,} plus a header; {REMEDY}")
    with archive.open(info) as handle:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            got_shape, fortran, got_dtype = np.lib.format.read_array_header_1_0(handle, max_header_size=MAX_NPY_HEADER)
        elif version == (2, 0):
            got_shape, fortran, got_dtype = np.lib.format.read_array_header_2_0(handle, max_header_size=MAX_NPY_HEADER)
        else:
            raise ProgramFormatError(f"{path}: member {member!r} has .npy format version {version}; {REMEDY}")
        if got_dtype != dtype or tuple(got_shape) != shape or fortran:
            raise ProgramFormatError(f"{path}: array {member[:-4]!r} is {got_dtype}{list(got_shape)}"
                                     f"{' (Fortran order)' if fortran else ''}, the manifest says {dtype}"
                                     f"{list(shape)}; {REMEDY}")
        buffer = bytearray(nbytes)
        view = memoryview(buffer)
        done = 0
        while done < nbytes:
            count = handle.readinto(view[done:])
            if not count:
                raise ProgramFormatError(f"{path}: member {member!r} ends after {done:,} of {nbytes:,} bytes of data; "
                                         f"the file is truncated, {REMEDY}")
            done += count
        if handle.read(1):  # also makes zipfile check the CRC at the end of the member
            raise ProgramFormatError(f"{path}: member {member!r} holds more data than its shape {list(shape)}; "
                                     f"{REMEDY}")
    array = np.frombuffer(buffer, dtype=dtype).reshape(shape)
    if dtype == np.bool_ and array.view(np.uint8).max(initial=0) > 1:
        raise ProgramFormatError(f"{path}: bool array {member[:-4]!r} holds bytes other than 0 and 1; {REMEDY}")
    return array


def _number_or_none(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))


PLACE_NUMBERS = ("objective", "lower_bound", "random", "row_major", "ratio_to_bound", "ratio_to_random",
                 "chip_crossing_penalty", "gap", "time_budget_s", "heuristic")
ROUTE_NUMBERS = ("connections", "hops_mean", "hops_max", "chip_crossing_connections", "spikes_per_sample",
                 "spike_hops_per_sample", "chip_crossings_per_sample", "link_load_max", "link_load_mean",
                 "link_load_mean_used", "links_used", "links_total", "latency_ticks", "program_latency")


def report_type_problem(reports: dict[str, Any]) -> str | None:
    """What is wrong with the fields of the passes' reports that ``crossmap report`` shows as
    figures (numbers that must be numbers, lists that must be lists), or None."""
    for name, keys in (("place", PLACE_NUMBERS), ("route", ROUTE_NUMBERS)):
        report = reports.get(name) or {}
        for key in keys:
            if key in report and not _number_or_none(report[key]):
                return f"field '{name}.{key}' = {str(report[key])[:40]!r} is not a finite number"
        lists = ("stages", "warnings") if name == "place" else ("hottest_links", "edges")
        for key in lists:
            if key in report and report[key] is not None and not isinstance(report[key], list):
                return f"field '{name}.{key}' is not a list"
    for link in (reports.get("route") or {}).get("hottest_links", []):
        if not (isinstance(link, dict) and _number_or_none(link.get("load")) and all(
                isinstance(link.get(end), list) and len(link[end]) == 2 and all(
                    isinstance(v, int) and not isinstance(v, bool) for v in link[end]) for end in ("from", "to"))):
            return "field 'route.hottest_links' holds an entry that is not {from: [x, y], to: [x, y], load}"
    traffic = (reports.get("partition") or {}).get("traffic")
    if traffic is not None and not isinstance(traffic, dict):
        return "field 'partition.traffic' is not an object"
    return None
