"""Errors of the domain.

LifelineError
└── RecordError       bytes or fields that do not make a valid wire record
"""


class LifelineError(Exception):
    """Base of the domain's errors."""


class RecordError(LifelineError, ValueError):
    """A payload is not a valid record; the message says which field and why."""
