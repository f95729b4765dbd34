"""The project's exception types for user mistakes, one per kind.

Every mistake a user can make (a wrong shape, a bad config value, a malformed file) raises a subclass of
:class:`UsageError`. They are ordinary ``ValueError``/``TypeError`` subclasses, so ``except ValueError``
keeps working; the ``tinygpt`` command line catches :class:`UsageError` alone and prints it as one line,
so every other exception (a real bug) keeps its traceback.

Raise them at the public boundary (an op's entry, a config's ``__post_init__``, a file reader), with the
shapes or values involved in the message. Kernels do not validate: they state their preconditions
(``tinytensor.kernels.spec``), and only the NumPy reference twin checks them.
"""
from __future__ import annotations


class UsageError(ValueError):
    """A user mistake: the message says what was wrong and with which value."""


class ShapeError(UsageError):
    """Array shapes that do not fit together (the message names every shape)."""


class DTypeError(UsageError, TypeError):
    """A wrong dtype or argument type (also a ``TypeError``)."""


class ConfigError(UsageError):
    """A configuration value out of its range (names the field and the value)."""


class FileFormatError(UsageError):
    """A file that is missing, unreadable or malformed (names the file and what is wrong)."""


class OutputError(UsageError):
    """A file or folder that cannot be written: disk full, read-only, a file where a folder should be (names
    the path and the operating system's reason)."""


__all__ = ["UsageError", "ShapeError", "DTypeError", "ConfigError", "FileFormatError", "OutputError"]
