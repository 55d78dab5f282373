"""The error a user can act on. Stdlib only, so every layer may raise it.

The CLI prints a ``CpcbenchError`` as one line (``error: <message>``) and exits with status 2; anything
else is a bug and keeps its traceback. Messages say what to do, not just what went wrong.
"""


class CpcbenchError(Exception):
    """Bad input or a missing resource: a missing/malformed file, unknown name, wrong shape, corrupt checkpoint."""


class DataError(CpcbenchError):
    """A data root, shard, manifest or annotation file that is missing or malformed."""
