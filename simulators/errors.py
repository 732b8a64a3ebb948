"""Errors of the simulators, reported by the CLI as a message instead of a traceback.

SimulationError
├── PublishError     a device could not connect or was refused by the broker
└── RecordingError   a recording that cannot be replayed; says the file and the line
"""


class SimulationError(Exception):
    """Base of the simulators' errors."""


class RecordingError(SimulationError, ValueError):
    """A recording that cannot be replayed."""
