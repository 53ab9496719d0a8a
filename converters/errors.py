"""The converter's user-facing error type.

Everything a user can cause (a bad folder, a corrupt shard, a full disk, no
network) is raised as :class:`ConvertError` with a message that names the
problem; the command line prints it as one ``error: ...`` line and exits 2.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from ..app.errors import Web2CodeError


class ConvertError(Web2CodeError):
    """A problem in the input or the environment that the user can fix (exit status 2)."""

    exit_code = 2
