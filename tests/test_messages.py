"""Every reason code is recognised in the real message texts of upstream Kubernetes
(scheduler, kubelet, controllers, admission), containerd and CRI-O, 1.24 to the newest
release (and the older scheduler forms still met): tests/data/messages/, one file per code,
each text with the component, repository, path, versions and format template it comes from
(see tests/data/messages/README.md). The texts are the expectation, not our rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from lunettes.analyzers.diagnosis import DiagnosisAnalyzer
from lunettes.analyzers.diagnosisdefs import DiagnosisConfig
from lunettes.analyzers.stagedefs import StageSet
from lunettes.model.hyperevent import ConditionChange, ContainerChange, HyperEvent
from lunettes.model.timeline import PodTimeline
from lunettes.pipeline import DEFAULT_CONFIG_DIR

MESSAGES = Path(__file__).parent / "data" / "messages"
STAGE_NAMES = tuple(s.name for s in StageSet.load(DEFAULT_CONFIG_DIR / "stages.yaml").stages)
CONFIG = DiagnosisConfig.load(DEFAULT_CONFIG_DIR / "diagnosis.yaml", STAGE_NAMES)
FIXTURES = {p.stem: yaml.safe_load(p.read_text()) for p in sorted(MESSAGES.glob("*.yaml"))}
S = 1_000_000


def _cases() -> list[Any]:
    cases = []
    for code, fixture in FIXTURES.items():
        if fixture.get("derived"):
            continue
        for i, text in enumerate(fixture["texts"]):
            for carrier in ("event", "status", "create"):
                if carrier in text:
                    cases.append(pytest.param(code, text, carrier,
                                              id=f"{code}-{i}-{carrier}"))
    return cases


def _carried(text: dict[str, Any], carrier: str) -> HyperEvent:
    """The HyperEvent that carries the text: the Event, the status change, the create."""
    message = text["text"]
    if carrier == "create":
        return HyperEvent(S, 2, "create", "u", source="admin", code=text["create"]["code"],
                          message=message)
    if carrier == "event":
        event = text["event"]
        return HyperEvent(S, 2, "event", "u", source=text["component"], reason=event["reason"],
                          event_type=event["type"], message=message,
                          container=event.get("container", ""), init=event.get("init", False))
    status = text["status"]
    source = status.get("source", "kubelet")
    if "condition" in status:
        cond = status["condition"]
        change = ConditionChange(cond["type"], cond["status"], cond["reason"],
                                 status.get("text", message))
        return HyperEvent(S, 2, "status", "u", source=source, conditions=(change,))
    if "container" in status:
        c = status["container"]
        container = ContainerChange("app", c["init"], c["state"], c["reason"],
                                    c.get("text", message), exit_code=c.get("exit_code"),
                                    previous_run=c.get("previous_run", False),
                                    image="registry.example/app:1")
        return HyperEvent(S, 2, "status", "u", source=source, containers=(container,))
    pod = status["pod"]
    return HyperEvent(S, 2, "status", "u", source=source, reason=pod["reason"],
                      message=pod.get("text", message), phase="Failed")


@pytest.mark.parametrize(("code", "text", "carrier"), _cases())
def test_upstream_text_gives_its_code(code: str, text: dict[str, Any], carrier: str) -> None:
    """As an Event, as the status the component writes, or as the refused create's
    response: the first finding is the fixture's code."""
    timeline = PodTimeline("u", "ns", "p", created_us=0, events=[
        HyperEvent(0, 1, "create", "u", source="admin", code=201), _carried(text, carrier)])
    findings = DiagnosisAnalyzer(CONFIG).findings(timeline)
    assert [f.code.name for f in findings][:1] == [code], text["text"]
    assert "?" not in findings[0].message.split(), findings[0].message


def test_every_code_has_an_upstream_text_fixture() -> None:
    assert set(FIXTURES) == set(CONFIG.codes), "add tests/data/messages/<code>.yaml"
    for code, fixture in FIXTURES.items():
        assert fixture["code"] == code
        if fixture.get("derived"):
            continue
        assert fixture["texts"], code
        for text in fixture["texts"]:
            source = text["source"]
            assert source["repo"] and source["path"] and source["versions"], code
            assert source["template"] and text["component"], code
            assert {"event", "status", "create"} & set(text), code


def test_derived_codes_are_derived_and_their_records_are_stage_markers() -> None:
    """Codes without a message of their own come from timings, the lifecycle or the
    absence of any finding; the upstream Events they rest on are the stages' markers."""
    derived = {code for code, f in FIXTURES.items() if f.get("derived")}
    from_config = ({s.code for s in CONFIG.slow if s.code} | set(CONFIG.stuck.values())
                   | {"NoProgress", "Unknown", "DeletedBeforeDelivered"})
    assert derived <= from_config
    marker_reasons = set(_reasons(yaml.safe_load((DEFAULT_CONFIG_DIR / "stages.yaml").read_text())))
    for code in derived:
        for text in FIXTURES[code]["texts"]:
            if text["event"]["reason"] in ("Scheduled", "Killing"):
                continue  # scheduled is the binding's Event; Killing follows the delete
            assert text["event"]["reason"] in marker_reasons, (code, text["event"])


def _reasons(node: Any) -> list[str]:
    """Every Event reason a stage marker names."""
    if isinstance(node, dict):
        found = [r for k, v in node.items() if k == "reason"
                 for r in (v if isinstance(v, list) else [v])]
        return found + [r for v in node.values() for r in _reasons(v)]
    if isinstance(node, list):
        return [r for v in node for r in _reasons(v)]
    return []


def test_taint_messages_of_every_scheduler_version_name_the_taint() -> None:
    """The taint filter's three forms (1.18-1.23, 1.24-1.34.1, 1.34.2 and 1.35)."""
    messages = []
    for text in FIXTURES["UntoleratedTaint"]["texts"]:
        timeline = PodTimeline("u", "ns", "p", created_us=0,
                               events=[_carried(text, "status")])
        messages.append(DiagnosisAnalyzer(CONFIG).findings(timeline)[0].message)
    assert messages[0] == "3 node(s) have a taint the Pod does not tolerate {dedicated: gpu}"
    assert messages[1] == messages[0]
    assert messages[-1] == "3 node(s) have a taint the Pod does not tolerate"
