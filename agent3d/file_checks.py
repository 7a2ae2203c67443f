"""What a file claims against what it holds, checked before any reader trusts it.

open3d reads whatever a PLY or PCD header says and fills the gaps silently (a missing ``z`` becomes
uninitialised memory, rows missing from an ASCII file become points at the origin, a header claiming
two billion vertices is allocated). These checks read the header, compare its counts and properties
with the bytes or rows that follow, and raise :class:`InputError` on any mismatch, without allocating
anything sized by the header.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
import zipfile
from pathlib import Path

from agent3d.base import InputError

MAX_HEADER_LINES = 200
PLY_SIZES = {"char": 1, "uchar": 1, "int8": 1, "uint8": 1, "short": 2, "ushort": 2, "int16": 2,
             "uint16": 2, "int": 4, "uint": 4, "int32": 4, "uint32": 4, "float": 4, "float32": 4,
             "double": 8, "float64": 8}


def check_file(path: str | os.PathLike) -> Path:
    """The path, when it names a readable regular file.

    Raises
    ------
    InputError
        No such file, a folder, a FIFO or device, a symbolic-link loop, or no permission.
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except OSError as error:
        reason = "symbolic link loop" if error.errno == errno.ELOOP else (error.strerror or "cannot open").lower()
        raise InputError(path, reason) from None
    if stat.S_ISDIR(mode):
        raise InputError(path, "is a folder, not a file")
    if not stat.S_ISREG(mode):
        raise InputError(path, "not a regular file (a FIFO, socket or device)")
    if not os.access(path, os.R_OK):
        raise InputError(path, "permission denied")
    return path


def _header(path: Path, magic: bytes, end: bytes) -> tuple[list[list[bytes]], int, int]:
    """Header lines split in words, the offset where data starts, the file size."""
    with open(path, "rb") as handle:
        first = handle.readline(256).strip()
        if magic and first != magic:
            raise InputError(path, f"not a {magic.decode().upper()} file (no '{magic.decode()}' magic line)")
        lines = [] if magic else [first.split()]
        while not (lines and lines[-1][:1] == [end]):
            line = handle.readline(4096)
            if not line or len(lines) > MAX_HEADER_LINES:
                raise InputError(path, f"header has no '{end.decode()}' line")
            lines.append(line.split())
        return lines, handle.tell(), os.fstat(handle.fileno()).st_size


def _count(path: Path, word: bytes, what: str) -> int:
    try:
        value = int(word)
    except ValueError:
        raise InputError(path, f"{what} is not a number ({word.decode(errors='replace')})") from None
    if value < 0:
        raise InputError(path, f"{what} is negative ({value})")
    return value


def _data_lines(path: Path, offset: int, needed: int) -> list[int]:
    """Token counts of the first ``needed`` non-empty lines after ``offset`` (fewer when the file ends)."""
    counts = []
    with open(path, "rb") as handle:
        handle.seek(offset)
        for line in handle:
            if len(counts) >= needed:
                break
            words = len(line.split())
            if words:
                counts.append(words)
    return counts


def check_ply(path: Path) -> None:
    """Check a PLY header against its data: a ``vertex`` element with scalar ``x y z``, and as many
    bytes (binary) or rows with as many values (ASCII) as the header promises.

    Raises
    ------
    InputError
        Any mismatch, naming the file.
    """
    lines, offset, size = _header(path, b"ply", b"end_header")
    fmt = next((w[1] for w in lines if w[:1] == [b"format"] and len(w) > 1), None)
    if fmt not in (b"ascii", b"binary_little_endian", b"binary_big_endian"):
        raise InputError(path, "PLY header has no valid 'format' line")
    elements = []  # [name, count, [(property, type or b"list")]]
    for words in lines:
        if words[:1] == [b"element"] and len(words) == 3:
            elements.append([words[1], _count(path, words[2], f"element {words[1].decode()} count"), []])
        elif words[:1] == [b"property"] and elements and len(words) >= 3:
            kind = b"list" if words[1] == b"list" else words[1]
            if kind != b"list" and kind.decode(errors="replace") not in PLY_SIZES:
                raise InputError(path, f"unknown PLY property type '{kind.decode(errors='replace')}'")
            elements[-1][2].append((words[-1], kind))
    vertex = next((e for e in elements if e[0] == b"vertex"), None)
    if vertex is None:
        raise InputError(path, "PLY header has no 'element vertex' line")
    scalar = {name for name, kind in vertex[2] if kind != b"list"}
    missing = [axis for axis in ("x", "y", "z") if axis.encode() not in scalar]
    if missing:
        raise InputError(path, f"PLY vertices have no '{missing[0]}' property")
    if fmt == b"ascii":
        _check_ascii_ply(path, elements, offset)
    else:
        _check_binary_ply(path, elements, size - offset)


def _check_ascii_ply(path: Path, elements: list, offset: int) -> None:
    before = 0
    for name, count, properties in elements:
        if name == b"vertex":
            break
        before += count
    vertex = next(e for e in elements if e[0] == b"vertex")
    rows = _data_lines(path, offset, before + vertex[1])[before:]
    if len(rows) < vertex[1]:
        raise InputError(path, f"ASCII PLY header promises {vertex[1]} vertices, the file holds {len(rows)}")
    if not any(kind == b"list" for _, kind in vertex[2]):
        short = next((i for i, n in enumerate(rows) if n != len(vertex[2])), None)
        if short is not None:
            raise InputError(path, f"vertex row {short + 1} has {rows[short]} values, the header declares "
                                   f"{len(vertex[2])}")


def _check_binary_ply(path: Path, elements: list, data_bytes: int) -> None:
    needed = 0
    for _, count, properties in elements:
        if any(kind == b"list" for _, kind in properties):
            break  # variable-size elements: only what precedes them can be checked
        needed += count * sum(PLY_SIZES[kind.decode()] for _, kind in properties)
    if data_bytes < needed:
        raise InputError(path, f"truncated binary PLY ({data_bytes} bytes of data, header needs {needed})")


def check_pcd(path: Path) -> None:
    """Check a PCD header against its data: fields ``x y z``, ``POINTS`` = ``WIDTH * HEIGHT``, and as
    many rows (ascii) or bytes (binary) as ``POINTS`` promises.

    Raises
    ------
    InputError
        Any mismatch, naming the file.
    """
    lines, offset, size = _header(path, b"", b"DATA")
    fields = {w[0].upper(): w[1:] for w in lines if w and not w[0].startswith(b"#")}
    names = [f.decode(errors="replace") for f in fields.get(b"FIELDS", [])]
    missing = [axis for axis in ("x", "y", "z") if axis not in names]
    if missing:
        raise InputError(path, f"PCD has no '{missing[0]}' field")
    points = _count(path, (fields.get(b"POINTS") or [b"?"])[0], "POINTS")
    width = _count(path, (fields.get(b"WIDTH") or [b"?"])[0], "WIDTH")
    height = _count(path, (fields.get(b"HEIGHT") or [b"1"])[0], "HEIGHT")
    if points != width * height:
        raise InputError(path, f"POINTS {points} differs from WIDTH x HEIGHT = {width * height}")
    data = fields[b"DATA"][0].lower() if fields.get(b"DATA") else b""
    if data == b"ascii":
        rows = _data_lines(path, offset, points)
        if len(rows) < points:
            raise InputError(path, f"PCD header promises {points} points, the file holds {len(rows)} rows")
    elif data == b"binary":
        sizes = [_count(path, w, "SIZE") for w in fields.get(b"SIZE", [])]
        counts = [_count(path, w, "COUNT") for w in fields.get(b"COUNT", [b"1"] * len(sizes))]
        needed = points * sum(s * c for s, c in zip(sizes, counts))
        if size - offset < needed:
            raise InputError(path, f"truncated binary PCD ({size - offset} bytes of data, header needs {needed})")
    elif data != b"binary_compressed":
        raise InputError(path, f"PCD DATA must be ascii, binary or binary_compressed, found '{data.decode()}'")


def check_npy(path: Path, handle, available: int) -> None:
    """Check that a ``.npy`` stream (positioned at its start, ``available`` bytes long) holds as many bytes
    as its header's shape needs, before NumPy allocates that shape.

    Raises
    ------
    InputError
        A header NumPy cannot read, or fewer data bytes than the shape needs.
    """
    import numpy as np
    from numpy.lib import format as npy_format

    try:
        version = npy_format.read_magic(handle)
        reader = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
        shape, _, dtype = reader(handle, max_header_size=100_000)
    except (ValueError, OSError, EOFError) as error:
        raise InputError(path, f"not a readable NumPy file ({str(error).splitlines()[0]})") from None
    needed = int(np.prod(shape, dtype=object)) * dtype.itemsize
    data = available - handle.tell()
    if dtype.hasobject:
        return  # object arrays are refused by np.load(allow_pickle=False) with their own message
    if data < needed:
        raise InputError(path, f"truncated NumPy array (shape {shape} needs {needed} bytes, the file holds {data})")


def check_numpy_file(path: Path) -> None:
    """Compare every array header of a ``.npy`` or ``.npz`` file with the bytes behind it, so no allocation
    is sized by a header.

    Raises
    ------
    InputError
        A damaged archive, an unreadable header, or fewer bytes than a header's shape needs.
    """
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as handle:
            check_npy(path, handle, os.fstat(handle.fileno()).st_size)
        return
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.filename.endswith(".npy"):
                    with archive.open(info) as member:
                        check_npy(path, member, info.file_size)
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise InputError(path, f"not a readable NumPy archive ({error})") from None


MAX_TIFF_RATIO = 1000  # a compressed TIFF may claim at most this many times its size in pixel bytes


def check_tiff(path: Path, tiff) -> None:
    """Compare every page's claimed pixel bytes with the bytes the file holds, before tifffile allocates them.

    Parameters
    ----------
    path : Path
    tiff : tifffile.TiffFile
        The open file (only its headers have been read).

    Raises
    ------
    InputError
        An uncompressed page whose strips lie beyond the end of the file or hold fewer bytes than its shape
        needs, or a compressed page claiming more than ``MAX_TIFF_RATIO`` times the file's size.
    """
    import numpy as np

    size = os.path.getsize(path)
    for page in tiff.pages:
        if page.dtype is None:
            raise InputError(path, f"TIFF page of an unsupported sample format ({page.sampleformat})")
        needed = int(np.prod(page.shape, dtype=object)) * page.dtype.itemsize
        claims = f"header claims {'x'.join(map(str, page.shape))} {page.dtype} ({needed} bytes)"
        stored = sum(page.databytecounts)
        if any(o + c > size for o, c in zip(page.dataoffsets, page.databytecounts)):
            raise InputError(path, f"truncated TIFF: {claims}, strips reach past the file's {size} bytes")
        if page.compression == 1 and stored < needed:
            raise InputError(path, f"truncated TIFF: {claims}, the file holds {stored}")
        if needed > MAX_TIFF_RATIO * size:
            raise InputError(path, f"{claims}, more than {MAX_TIFF_RATIO} x the file's {size} bytes")


def check_folder(path: str | os.PathLike, label: str | None = None) -> Path:
    """The path, when it is a writable folder or one could be made there; nothing is created.

    Parameters
    ----------
    path : str or Path
    label : str, optional
        What the message names instead of the path (an environment variable, a flag).

    Raises
    ------
    InputError
        A file where the folder or one of its parents should be, or no permission.
    """
    path = Path(path)
    existing = next(p for p in [path, *path.parents] if p.exists() or p == p.parent)
    if existing.exists() and not existing.is_dir():
        raise InputError(label or path, "exists and is not a folder" if existing == path
                         else f"cannot be made a folder ({existing} is not a folder)")
    writable_place(existing, label or path)
    return path


def writable_place(folder: str | os.PathLike, label: str | os.PathLike) -> None:
    """Refuse a folder in which nothing can be made, tried for real: a temporary folder is made there and removed
    (permission bits do not tell a read-only mount, a pseudo-filesystem such as ``/proc``, or what root may do).

    Parameters
    ----------
    folder : str or Path
        An existing folder (where an output, or the folders above it, would be made).
    label : str or Path
        What the message names (the output the user gave).

    Raises
    ------
    InputError
        Nothing can be made in ``folder`` (the message gives the system's reason).
    """
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".agent3d-probe-", dir=folder))
    except OSError as error:
        reason = (error.strerror or "cannot be written").lower()
        raise InputError(label, f"cannot be written: nothing can be made in {folder} ({reason})") from None


def make_folder(path: str | os.PathLike, label: str | None = None) -> Path:
    """:func:`check_folder`, then create the folder and its parents (the same errors, and one for a folder the file
    system still refuses)."""
    path = check_folder(path, label)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(label or path, f"cannot be made a folder ({(error.strerror or 'error').lower()})") from None
    return path
