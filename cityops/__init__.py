"""Composition root of the CityOps platform: settings, CLI and local stack control.

The platform's parts (``lifeline``, ``geo``, ``ingest``, ``streams``, ``store``,
``cockpit_api``, ``simulators``) never import this package; it wires them together.
"""

__version__ = "0.1.0"
