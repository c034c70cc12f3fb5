"""The MMU model: constants, the shrinker arithmetic, and the two engines."""

from __future__ import annotations

from replay.mmu.config import POLICIES, CostModel, MmuConfig, Policy, parse_policies

__all__ = ["POLICIES", "CostModel", "MmuConfig", "Policy", "parse_policies"]
