"""One exception for mistakes a user can fix (the CLI prints its one line and exits with 2), and
the one line an operating-system error becomes."""

from __future__ import annotations

import errno
import os
import re

# errno -> what the user can do about it
OS_FIXES = {
    errno.ENOSPC: "free space there or write to another disk",
    errno.EDQUOT: "free space within your quota or write elsewhere",
    errno.EROFS: "write to a writable folder",
    errno.EACCES: "check the permissions of the path or write elsewhere",
    errno.EPERM: "check the permissions of the path or write elsewhere",
    errno.EISDIR: "give a file path, not a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder; fix the path",
    errno.ENOENT: "check the path",
    errno.EEXIST: "remove it or choose another path",
    errno.EMFILE: "raise the open-file limit (ulimit -n)",
    errno.EIO: "the device reported an I/O error; check the disk",
}


class UserError(ValueError):
    """Bad input or state the user can fix. The message names the file, the problem and the fix.

    Subclasses ``ValueError`` so callers that already catch ``ValueError`` keep working.
    """


def os_error_line(err: OSError) -> str:
    """``<path>: <errno meaning> (<ERRNO>); <fix>``, or the error's own text when it carries no
    errno (then the code that raised it wrote the message)."""
    if err.errno is None:
        return " ".join(str(err).split()) or type(err).__name__
    name = errno.errorcode.get(err.errno, str(err.errno))
    meaning = os.strerror(err.errno)
    paths = [p for p in (err.filename, err.filename2) if p is not None]
    where = " -> ".join(str(os.fsdecode(p)) for p in paths) if paths else "(no path given)"
    fix = OS_FIXES.get(err.errno, "fix the cause and run again")
    return f"{where}: {meaning} ({name}); {fix}"


def error_line(err: BaseException) -> str:
    """``<ExceptionType>: <first line of its message>``: a library's error, quoted in one line."""
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"


# How the libraries the project uses spell an errno inside their own exceptions: safetensors
# 0.8 "(os error 28)", older safetensors / Rust io "Os { code: 28", Python "[Errno 28]".
_ERRNO_IN_TEXT = re.compile(r"\(os error (\d+)\)|\bOs \{ code: (\d+)|\[Errno (\d+)\]")


def as_os_error(err: BaseException, path: str | os.PathLike | None = None) -> OSError | None:
    """The ``OSError`` (errno, meaning, ``path``) that a library error wraps, found in its text
    or its causes, or None when it wraps none. ``os_error_line`` then makes its one line."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return OSError(seen.errno, os.strerror(seen.errno),
                           seen.filename if path is None else os.fspath(path))
        found = _ERRNO_IN_TEXT.search(str(seen))
        if found:
            code = int(next(g for g in found.groups() if g))
            return OSError(code, os.strerror(code), None if path is None else os.fspath(path))
        seen = seen.__cause__ or seen.__context__
    return None
