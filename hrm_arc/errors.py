"""The error every reader of user files raises, in a module of its own so all of them can."""


class DatasetError(ValueError):
    """Bad input data; the message names the file, task and pair."""
