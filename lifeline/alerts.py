"""The alert lifecycle: which actions are allowed from which status, and the deadlines.

new → acknowledged → dispatched → on_site → resolved → closed, or false_alarm.
Assigning to a department is allowed while the alert is being worked and does not change
its status. Deadlines to acknowledge follow the practice of lifeline operations centres
(dispatch within 10 min; on site for a gas leak within 5 min in Hefei).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from lifeline.vocabulary import Severity

STATUSES = ("new", "acknowledged", "dispatched", "on_site", "resolved", "closed", "false_alarm")
OPEN_STATUSES = ("new", "acknowledged", "dispatched", "on_site")
FINAL_STATUSES = ("closed", "false_alarm")


@dataclass(frozen=True)
class Action:
    name: str
    to_status: str | None  # None: the status stays (assign)
    allowed_from: tuple[str, ...]


ACTIONS: dict[str, Action] = {
    a.name: a
    for a in (
        Action("acknowledge", "acknowledged", ("new",)),
        Action("assign", None, ("new", "acknowledged", "dispatched", "on_site")),
        Action("dispatch", "dispatched", ("acknowledged",)),
        Action("on_site", "on_site", ("dispatched",)),
        Action("resolve", "resolved", ("acknowledged", "dispatched", "on_site")),
        Action("close", "closed", ("resolved",)),
        Action("false_alarm", "false_alarm", ("new", "acknowledged", "dispatched", "on_site")),
    )
}

#: Time allowed to acknowledge a new alert, by severity; each lapse escalates once more.
ACK_DEADLINE: dict[Severity, timedelta] = {
    Severity.RED: timedelta(minutes=5),
    Severity.ORANGE: timedelta(minutes=10),
    Severity.YELLOW: timedelta(minutes=30),
    Severity.BLUE: timedelta(minutes=60),
}
MAX_ESCALATION = 3


class TransitionError(ValueError):
    """An action that the alert's current status does not allow."""


def next_status(action: str, current: str) -> str:
    """The status after ``action`` from ``current``; raises ``TransitionError`` saying why."""
    spec = ACTIONS.get(action)
    if spec is None:
        raise TransitionError(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
    if current not in spec.allowed_from:
        allowed = [a.name for a in ACTIONS.values() if current in a.allowed_from]
        raise TransitionError(
            f"cannot {action} an alert that is {current}; "
            + (f"allowed now: {', '.join(allowed)}" if allowed else "the alert is final")
        )
    return spec.to_status or current


def escalation_due(severity: Severity, status: str, age: timedelta, level: int) -> int | None:
    """The escalation level an unacknowledged alert of ``age`` should be at, if higher
    than ``level``; ``None`` when nothing is due."""
    if status != "new" or level >= MAX_ESCALATION:
        return None
    due = min(MAX_ESCALATION, int(age / ACK_DEADLINE[severity]))
    return due if due > level else None
