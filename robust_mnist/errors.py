"""The package's errors: one base class, :class:`RobustMnistError`, and a subclass per concern.

Every error a user can cause and fix (a malformed study file, a missing model file, a corrupt
image, a run directory in use, two runs that cannot be compared, a magnitude outside a
family's range) is a :class:`RobustMnistError` whose message names the file or value at
fault. The command line reports these as one line; anything else is a bug and keeps its
traceback. The subclasses are also ``ValueError``\\ s, so that code validating arguments the
usual Python way (``except ValueError``) keeps working.
"""

from __future__ import annotations


class RobustMnistError(Exception):
    """A failure the user can fix, with a message that names the file or value at fault."""


class InvalidArgumentError(RobustMnistError, ValueError):
    """An argument outside its allowed set (a family's magnitude range, an image batch's shape)."""


class DataError(RobustMnistError, ValueError):
    """Bundled or user data that cannot be read as expected (checksum, shape, unreadable image)."""


class ModelError(RobustMnistError, ValueError):
    """A model that cannot be trained, loaded, trusted or run as asked."""


class StudyError(RobustMnistError, ValueError):
    """A study file that cannot be used as written."""


class RunDirError(RobustMnistError, ValueError):
    """A run directory that cannot be used as asked (locked, unfinished, damaged, another study...)."""


class ComparisonError(RobustMnistError, ValueError):
    """Runs that cannot be compared (other digits, other perturbations, unfinished)."""
