"""Simulated kube-apiserver audit logs of a cluster delivering Pods, with ground truth.

``Simulation(SimConfig(...))`` yields the audit lines a real cluster would write and then
the truth rows (one per Pod: scenario, expected diagnosis reason, outcome, stages).
"""

from __future__ import annotations

from lunettes.simulate.engine import SimConfig, Simulation
from lunettes.simulate.policy import POLICIES
from lunettes.simulate.scenarios import SCENARIOS, Scenario, parse_mix
from lunettes.simulate.writer import open_output, write_events, write_truth

__all__ = [
    "POLICIES",
    "SCENARIOS",
    "Scenario",
    "SimConfig",
    "Simulation",
    "open_output",
    "parse_mix",
    "write_events",
    "write_truth",
]
