"""Incident wording in both languages, and the language a request asks for."""

from __future__ import annotations

import pytest

from lifeline import wording
from lifeline.vocabulary import IncidentType, Severity


@pytest.mark.parametrize(
    ("accept", "asked", "expected"),
    [
        (None, None, "zh"),
        ("", None, "zh"),
        ("en-US,en;q=0.9", None, "en"),
        ("zh-CN,zh;q=0.9,en;q=0.8", None, "zh"),
        ("en;q=0.5,zh-TW;q=0.9", None, "zh"),
        ("zh;q=0.2, en-GB;q=0.8", None, "en"),
        ("fr-FR,de;q=0.9", None, "zh"),
        ("fr-FR,en;q=0.1", None, "en"),
        ("en;q=0", None, "zh"),
        ("en;q=bogus,zh", None, "zh"),
        ("zh-CN", "en", "en"),
        ("en", "zh", "zh"),
    ],
)
def test_the_language_asked_for(accept: str | None, asked: str | None, expected: str) -> None:
    assert wording.language(accept, asked) == expected


def test_titles_name_the_place_in_both_languages() -> None:
    cell = "320102003003051"
    zh = wording.title(IncidentType.HEATING_LEAK, f"320100:{cell}:heating_leak:1", [cell], [], "zh")
    en = wording.title(IncidentType.HEATING_LEAK, f"320100:{cell}:heating_leak:1", [cell], [], "en")
    assert zh == f"网格{cell}供热泄漏"
    assert en == f"Heating leak in cell {cell}"
    # Off the grid: the asset, else the place the incident was correlated on.
    assert wording.title(IncidentType.BRIDGE_OVERLOAD, "x", [], ["BR-01"], "en") == (
        "Bridge overload at BR-01"
    )
    assert wording.title(
        IncidentType.DEVICE_OFFLINE, "320100:gw-7:device_offline:9", [], [], "zh"
    ) == ("gw-7设备离线")


def test_every_incident_type_and_severity_has_both_wordings() -> None:
    for itype in IncidentType:
        en, zh = wording.EVENT_NAMES[itype]
        assert en.isascii()
        assert not zh.isascii()
    for severity in Severity:
        text = wording.description(
            IncidentType.GAS_LEAK, severity, "acknowledged", "open", ["c"], ["a"], "zh"
        )
        assert wording.SEVERITY_NAMES[severity][1] in text
        assert "已确认" in text
        english = wording.description(
            IncidentType.GAS_LEAK, severity, "acknowledged", "open", ["c"], ["a"], "en"
        )
        assert english.isascii()
        assert "acknowledged" in english
