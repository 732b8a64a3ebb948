"""Errors of the composition root.

CityOpsError
├── ConfigError      settings missing or invalid; says which variable to set
└── StackError       a local service could not be installed, started or reached
"""


class CityOpsError(Exception):
    """Base of every error the CLI reports as a message instead of a traceback."""


class ConfigError(CityOpsError):
    """The configuration is missing or invalid."""


class StackError(CityOpsError):
    """A local stack service could not be installed, started or reached."""
