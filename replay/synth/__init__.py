"""Seeded synthetic traces from TOML scenarios (``replay synth``)."""

from __future__ import annotations

from replay.synth.generator import SynthResult, generate, trace_meta
from replay.synth.scenario import Scenario, list_scenarios, load_scenario, resolve_scenario

__all__ = [
    "Scenario",
    "SynthResult",
    "generate",
    "list_scenarios",
    "load_scenario",
    "resolve_scenario",
    "trace_meta",
]
