"""Errors of the store.

StoreError
├── MigrationError    a migration could not be applied
├── Conflict          a write would give two rows what only one may have
└── StoreUnavailable  the database cannot be reached (callers pause and retry)
"""


class StoreError(Exception):
    """Base of the store's errors."""


class MigrationError(StoreError):
    """A migration could not be applied; nothing of it was kept."""


class Conflict(StoreError):
    """A write would give two rows what only one may have (an IMEI, a platform id);
    nothing of it was kept."""


class StoreUnavailable(StoreError):
    """The database cannot be reached right now."""
