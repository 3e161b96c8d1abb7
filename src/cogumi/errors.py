"""Project error types. Each message names the offending file, key or value."""


class CogumiError(Exception):
    """Base class: the entry points print these as one line and exit non-zero."""

    exit_code = 1


class ConfigError(CogumiError):
    """A user mistake in configuration or overrides: exit 2, before any heavy work."""

    exit_code = 2


class AssetMissingError(CogumiError):
    """An offline asset (model, data file, converter) is not in the cache: run the setup."""


class ModelLoadError(CogumiError):
    """A model id or path could not be loaded (offline hub id, missing folder, bad files)."""


class ArtifactError(CogumiError):
    """An artifact reference does not resolve, or an artifact fails its integrity check."""
