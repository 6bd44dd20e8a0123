"""Reading an `.npz` (a data file or a checkpoint) that may have been made by an attacker.

`np.load` trusts the archive: a member holding pickled objects raises only once it is
read, a member that is not a `.npy` at all surfaces as an odd exception, and a member
whose header declares a billion elements (or a zip bomb of a few KB) is allocated and
inflated before anyone checks. Here every member is looked at first, from the zip
directory and the `.npy` header alone:

- a regular file no larger than the budget (`neurolocal.files.regular_file`);
- the sum of the members' uncompressed sizes within the same budget;
- every member named `*.npy`, with a readable `.npy` header of a plain (non-object)
  dtype — nothing is ever unpickled;
- the header's shape times the item size no larger than the member's stored size.

Only then are the arrays read, with `allow_pickle=False`.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import Type

import numpy as np

from neurolocal.errors import NeurolocalError, param
from neurolocal.files import regular_file

MAX_MEMBERS = 100_000


def read_npz(path: str | Path, limit: int, error: Type[NeurolocalError],
             what: str = "data file") -> dict[str, np.ndarray]:
    """Every array of the archive by name, or one `error` saying what is wrong with it."""
    source = str(path)
    regular_file(path, limit, error, what)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise error(f"not a readable .npz archive ({type(exc).__name__})",
                    source=source) from None
    with archive:
        members = archive.infolist()
        if len(members) > MAX_MEMBERS:
            raise error(f"archive has {len(members)} members, more than {MAX_MEMBERS}",
                        source=source)
        inflated = sum(m.file_size for m in members)
        if inflated > limit:
            raise error(f"archive inflates to {inflated} bytes, more than the budget of "
                        f"{limit}; raise it with {param('budget')} data_bytes=N (or "
                        "NEUROLOCAL_BUDGET)",
                        source=source)
        arrays: dict[str, np.ndarray] = {}
        for member in members:
            name = member.filename
            if not name.endswith(".npy") or member.is_dir():
                raise error(f"member {name[:80]!r} is not a .npy array", source=source)
            key = name[:-len(".npy")]
            if key in arrays:
                raise error(f"member {name[:80]!r} appears twice", source=source)
            try:
                _check_header(archive, member)
                with archive.open(member) as stream:
                    arrays[key] = np.lib.format.read_array(stream, allow_pickle=False)
            except NeurolocalError as exc:
                raise error(exc.detail, source=source) from None
            except Exception as exc:  # zlib.error, BadZipFile (CRC), EOFError, ValueError...
                raise error(f"member {name[:80]!r} is not a readable .npy array "
                            f"({type(exc).__name__})", source=source) from None
    return arrays


def _check_header(archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> None:
    name = member.filename[:80]
    with archive.open(member) as stream:
        try:
            version = np.lib.format.read_magic(stream)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
            else:
                raise NeurolocalError(f"member {name!r} has .npy format {version}, "
                                      "expected 1.0 or 2.0")
        except NeurolocalError:
            raise
        except Exception as exc:
            raise NeurolocalError(f"member {name!r} is not a .npy array "
                                  f"({type(exc).__name__})") from None
    if dtype.hasobject:
        raise NeurolocalError(f"member {name!r} holds pickled Python objects; refused "
                              "without unpickling (save plain numeric arrays)")
    nbytes = math.prod(int(d) for d in shape) * dtype.itemsize
    if nbytes > member.file_size:
        raise NeurolocalError(f"member {name!r} declares {nbytes} bytes of data but holds "
                              f"{member.file_size}")
