"""Drills: faults injected into the real services while traffic flows (a broker or a
database restarted or killed, a bridge or a worker killed, a Kafka node lost, hostile
traffic, attacks on the topics, the API and the push endpoint), each counting what was
sent, stored, lost and duplicated and how long recovery took. ``cityops drill`` runs them."""

from drills.suite import CLUSTER_DRILLS, DRILLS, SHORT, Progress, run_drills

__all__ = ["CLUSTER_DRILLS", "DRILLS", "SHORT", "Progress", "run_drills"]
