"""Typed errors: every failure the user can cause has a class and a readable message."""


class EqBridgeError(Exception):
    """Base class for errors caused by input, configuration or environment (never a bug)."""


class PhraseError(EqBridgeError, ValueError):
    """A phrase that cannot be turned into a curve (empty, too long, unknown script, ...)."""


class ConfigError(EqBridgeError):
    """A config file or flag that cannot be used; the message says where and why."""


class ModelFileError(EqBridgeError):
    """A shipped model file is missing or unreadable; run `eqbridge train`."""


class MappingError(EqBridgeError):
    """A plugin mapping is unknown, malformed or inconsistent."""


class PluginError(EqBridgeError):
    """A plugin cannot be loaded or is not an EQ."""


class ProfileError(EqBridgeError):
    """A user profile cannot be opened or used (corrupt, newer schema, bad name); the file is kept."""
