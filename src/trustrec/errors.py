"""Exception types raised by trustrec. Every error names what was wrong and where."""


class TrustrecError(Exception):
    """Base class of every error trustrec raises on purpose."""


class DataFormatError(TrustrecError, ValueError):
    """A data file is malformed: wrong columns, a bad value, a truncated row.

    The message names the file and, where known, the line and the field.
    """


class UnknownNameError(TrustrecError, KeyError):
    """A name (dataset, model, method, selection) is not registered."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0]) if self.args else ""


class InvalidRequestError(TrustrecError, ValueError):
    """A forget request is empty, has duplicates, or names unknown ids."""


class ConfigError(TrustrecError, ValueError):
    """A configuration has an unknown key (a typo) or a value out of range."""


class ChecksumError(TrustrecError):
    """A downloaded or cached file does not have the expected sha256."""


class UnsupportedRequestError(TrustrecError, NotImplementedError):
    """A well-formed forget request of a grain (user / interaction / item) that the
    unlearning method does not support."""


class IntegrityError(DataFormatError):
    """A stored file is missing, truncated, altered or inconsistent with its manifest or
    its model description. The message names the file."""
