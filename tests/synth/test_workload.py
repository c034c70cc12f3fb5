from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from replay.synth.workload import zipf_ranks


@given(st.integers(1, 1 << 20), st.floats(0.3, 2.5))
def test_zipf_ranks_stay_in_range(n: int, exponent: float) -> None:
    u = np.random.default_rng(n).random(2000)
    r = zipf_ranks(np.concatenate([u, [0.0, 1 - 1e-12]]), n, exponent)
    assert r.min() >= 0
    assert r.max() <= n - 1


def test_zipf_ranks_follow_the_power_law() -> None:
    """Rank frequency falls as rank ** -s: with s = 1, ranks 10..19 draw about as often as
    ranks 100..199 (each block's weight is ln 2), and rank 0 far more than rank 1000."""
    u = np.random.default_rng(1).random(2_000_000)
    r = zipf_ranks(u, 100_000, 1.0)
    counts = np.bincount(r, minlength=100_000)
    a, b = counts[10:20].sum(), counts[100:200].sum()
    assert abs(a - b) / b < 0.1
    assert counts[0] > 50 * counts[1000]
    # Uniform at s -> 0: near-equal shares.
    r0 = zipf_ranks(u, 100, 1e-6 + 0.0001)
    c0 = np.bincount(r0, minlength=100)
    assert c0.min() > 0.8 * c0.mean()
