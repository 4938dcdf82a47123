"""Domain exceptions. Adapters translate botocore's ClientError into these."""


class DrError(Exception):
    """Base class of every error the controller raises on purpose."""


class SettingsError(DrError):
    """The function's environment does not describe a usable controller."""


class InvalidRequest(DrError):
    """A request names something that cannot be done; nothing was changed."""


class AliasChanged(DrError):
    """UpdateAlias was refused because the alias changed since it was read (RevisionId mismatch)."""


class ConcurrentUpdate(DrError):
    """A conditional write lost against another writer; re-read and decide again."""
