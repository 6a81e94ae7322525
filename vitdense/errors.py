"""The errors vitdense raises for problems a user can fix, at the bottom of the import graph.

Every module may import this one; it imports nothing from vitdense. The tools print any :class:`UserError` as
one line, ``error: <message>``, and exit with status 2; every other exception is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem the user can fix (input, data, settings); the message is one actionable line."""


class ConfigError(UserError, ValueError):
    """A config value a model cannot use (an unknown arch, a negative window size, out_indices out of range).

    A ``ValueError`` too, so code that validates arguments the Python way keeps catching it."""


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be used as asked (not a checkpoint, another family, shapes that do not fit)."""


class DataError(UserError):
    """Training data that cannot be used (labels outside the head's classes, unreadable annotations)."""


class ImageError(UserError):
    """An image file that cannot be decoded or has a layout the pipeline cannot use."""


class LossNotFiniteError(UserError):
    """The loss became NaN or infinite during training."""
