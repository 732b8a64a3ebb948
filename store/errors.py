"""Errors of the store.

StoreError
├── MigrationError    a migration could not be applied
└── StoreUnavailable  the database cannot be reached (callers pause and retry)
"""


class StoreError(Exception):
    """Base of the store's errors."""


class MigrationError(StoreError):
    """A migration could not be applied; nothing of it was kept."""


class StoreUnavailable(StoreError):
    """The database cannot be reached right now."""
