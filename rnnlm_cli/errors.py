"""The library's exceptions. ``cli.py`` turns each into one ``Error: ...`` line and exit 1."""


class RnnlmError(Exception):
    """Base class of every error a user can cause (bad files, bad options)."""


class CorpusError(RnnlmError):
    """A corpus or text file cannot be read: missing, empty, undecodable."""


class ModelFileError(RnnlmError):
    """A model file is missing, corrupt, foreign, or of an unsupported format version."""


class OptionError(RnnlmError):
    """An option value is out of range or inconsistent with the others."""


class TrainingError(RnnlmError):
    """Training could not produce a model (the loss diverged before any epoch finished)."""
