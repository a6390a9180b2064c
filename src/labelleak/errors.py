"""Errors that the command line and the pipeline turn into one-line messages."""


class LabelleakError(Exception):
    """Bad input a user can fix: printed as one line, never as a traceback."""


class UpdateFileError(LabelleakError):
    """A missing, corrupt or wrong-shaped update file, or one with NaN/Inf values."""


class ConfigError(LabelleakError):
    """A config value that does not match the schema; the message names the key."""


class DatasetError(LabelleakError):
    """A dataset path that is missing or not in the expected layout."""


class NotApplicable(LabelleakError):
    """An attack whose assumptions do not hold for this update (e.g. RLG with S >= min(d, C)).

    The pipeline records it as an explicit "n/a" result row, never as a number.
    """
