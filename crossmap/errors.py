"""Errors a user can cause. Every message names the object, the quantity, what was needed,
what is available, and a remedy."""

from __future__ import annotations


class CrossmapError(Exception):
    """Base class of every error crossmap raises on user input."""

    exit_code = 1


class ChipSpecError(CrossmapError):
    """A chip spec with impossible or inconsistent values."""

    exit_code = 2


class UsageError(CrossmapError):
    """A command line with a missing, unknown or out-of-range argument."""

    exit_code = 2


class ProgramFormatError(CrossmapError):
    """A program directory that is missing, corrupt, truncated, or written by a newer schema."""

    exit_code = 3


class ProgramError(CrossmapError):
    """A program whose contents violate the chip spec (ranges, shapes, targets)."""

    exit_code = 3


class InputError(CrossmapError):
    """Inputs of the wrong shape, dtype or value range."""

    exit_code = 2


class OutputError(CrossmapError):
    """An output path that cannot be written (a file in the way, a read-only file system)."""

    exit_code = 2


class OutputExistsError(OutputError):
    """An output that exists and was not asked to be overwritten, or may not be replaced."""


class ModelError(CrossmapError):
    """A model file that cannot be read or checked (not ONNX, truncated, missing data)."""

    exit_code = 4


class UnsupportedModelError(ModelError):
    """A model that uses operators or shapes crossmap cannot lower."""


class BinarizeError(CrossmapError):
    """A float network that cannot be turned into chip integers without loss the user did not allow."""

    exit_code = 5


class ResourceError(CrossmapError):
    """A network that needs more of a resource (axons, neurons, cores) than the chip has."""

    exit_code = 6


class PipelineError(CrossmapError):
    """A pipeline spec that names unknown passes or options."""

    exit_code = 2


class DatasetError(CrossmapError):
    """A dataset that cannot be found, downloaded or parsed."""

    exit_code = 7
