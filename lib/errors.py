"""One exception for mistakes a user can fix: the CLI prints its one line and exits with 2."""

from __future__ import annotations


class UserError(ValueError):
    """Bad input or state the user can fix. The message names the file, the problem and the fix.

    Subclasses ``ValueError`` so callers that already catch ``ValueError`` keep working.
    """
