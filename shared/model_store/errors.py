"""The model store's errors; each message is meant for an operator."""

from __future__ import annotations


class VersionError(Exception):
    """Base of the store's errors; the message is meant for an operator."""


class VersionExists(VersionError):
    """A version of that name is already published (in the store or in the registry)."""


class VersionNotFound(VersionError):
    pass


class InvalidVersion(VersionError):
    """The folder is not a loadable checkpoint (missing or corrupt files)."""
