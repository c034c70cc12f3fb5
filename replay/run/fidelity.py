"""The model's fidelity on a faults-only trace: logged faults it explains, and those it does not.

Every access of a faults-only trace (a converted log) is a fault the kernel took. The replay
turns each into a fault or a hit; a logged fault the model replays as a hit is a fault the model
does not explain (MODEL.md rule 19 and D9). Those are counted as a figure of their own,
``faults_unexplained`` (per run, per VM and per time bucket, beside ``logged_faults``), because
users must see how much of the log the model accounts for before they trust the rest.

The likely reasons come from what the converter warned of, which it records by kind in the
trace footer's ``provenance.warnings`` (``schemas/README.md``), and from what no log shows the
model at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

FAULTS_ONLY = "faults-only"
FIDELITY_TITLE = "Fidelity: logged faults the model explains (a trace of logged faults)"

REASONS: dict[str, str] = {
    "shadow_paging": (
        "the host used shadow paging, whose write protection of guest page tables takes "
        "faults the model does not have"
    ),
    "memslots_inferred": (
        "memslots were inferred from the faulting addresses, not read from the VMs (a guessed "
        "layout and backing)"
    ),
    "single_vm": (
        "the log does not tell VMs apart, so every guest was replayed as one VM (a page one "
        "guest faulted in looks mapped to the others)"
    ),
    "lost_events": (
        "the kernel lost events (an unmap or zap that was lost leaves a page mapped in the model)"
    ),
    "layouts_merged": (
        "logs of different layouts were merged, whose clocks may differ (zaps and faults may be "
        "out of order)"
    ),
}
"""Converter warnings (by kind) that make the model see a mapping the kernel did not have."""

NEVER_SEEN = (
    "what no log shows the model: access tracking (aging), dirty logging's write protection, "
    "spurious faults (two vCPUs faulting on one page at once)"
)


def warnings_of(provenance: Any) -> list[tuple[str, str]]:
    """The converter's warnings recorded in a trace's provenance, as (kind, text).

    Provenance is an open object: entries that are not ``{"kind": str, "text": str}`` (a trace
    of another writer, or one converted before the key existed) are left out.
    """
    raw = provenance.get("warnings") if isinstance(provenance, dict) else None
    if not isinstance(raw, list):
        return []
    return [
        (w["kind"], w["text"])
        for w in raw
        if isinstance(w, dict) and isinstance(w.get("kind"), str) and isinstance(w.get("text"), str)
    ]


def likely_reasons(provenance: Any) -> list[str]:
    """Why logged faults may look like hits to the model, from what the converter warned of."""
    kinds = dict.fromkeys(kind for kind, _ in warnings_of(provenance))
    return [REASONS[kind] for kind in REASONS if kind in kinds]


def fidelity_caveat(reasons: list[str]) -> str:
    """The run's caveat of a faults-only trace: what an unexplained fault is, and why."""
    return (
        "faults-only trace: every logged fault happened, so one the model replays as a hit is a "
        "fault it does not explain (faults_unexplained); likely reasons: "
        + "; ".join([*reasons, NEVER_SEEN])
    )


def with_fidelity(block: dict[str, Any], sampled: int = 0) -> dict[str, Any]:
    """A summary block with ``logged_faults`` and ``faults_unexplained`` first.

    On a faults-only trace every access is a logged fault, and an access replays as at most one
    fault, so the unexplained ones are the accesses less the faults. On a faults+sampled trace
    the faults of region rows (``sampled``, MODEL.md rule 32) are not logged ones: they are left
    out of that difference and counted as ``sampled_faults``.
    """
    logged = int(block["accesses"])
    unexplained = logged - (int(block["faults"]) - sampled)
    return {"logged_faults": logged, "faults_unexplained": unexplained, **block}


SAMPLED_COVERAGES = ("sampled", "faults+sampled")
SAMPLED_ESTIMATES = (
    "faults_by_attribution.zapped_page_tables",
    "faults_by_cause.zapped",
    "sampled_faults",
    "pages_freed",
    "stall_ns_by_attribution.zapped_page_tables",
    "stall_per_freed_page",
)
"""The figures of a replay of a sampled trace that rest on DAMON's sampling (MODEL.md D13)."""
SAMPLING_VALIDATION = {
    "source": "scripts/bench.py damon (README, 'DAMON records: validation against ground truth')",
    "zap_zapped_page_table_faults": (
        "-98% to -100% on the scenarios whose shrinker zaps, where DAMON saw almost no "
        "access; -50% where it saw them (quick at 100x its access rate, one direct scan call "
        "missing from the log), exact per freed page there"
    ),
    "zap_pages_freed": "-16% to -74%",
    "cache_eviction_faults": "-100% to +3% (direct scan calls have no log line)",
    "none_and_cache_faults": "exact (the logged faults)",
    "why": (
        "DAMON checks one page per region every sampling interval: it sees a guest's pages "
        "only where they are touched within most intervals; sparse or scattered access "
        "(few touches of each page per interval) reads as idle, and its zapped pages are "
        "never refaulted in the replay"
    ),
}
"""What the validation measured: how far a sampled replay's estimates fell from the truth."""


IDLE_SHARE = 0.05
"""Below this share of region rows with an access, the record is called nearly idle."""


def sampled_caveat(coverage: str, regions: int = 0, accessed: int = 0) -> str:
    """The caveat of a replay of a ``sampled`` or ``faults+sampled`` trace (MODEL.md D13).

    ``regions`` and ``accessed`` (region rows, and those with ``nr_accesses`` above 0) add a
    warning when DAMON saw almost nothing: its zapped pages are then never refaulted.
    """
    v = SAMPLING_VALIDATION
    idle = ""
    if regions and accessed < IDLE_SHARE * regions:
        idle = (
            f"; DAMON found an access in only {accessed:,} of {regions:,} region observations "
            f"({share(accessed, regions)}): the guests' pages were touched too rarely for its "
            "sampling interval, so the zapped-page-table faults are likely far too low"
        )
    base = (
        f"{coverage} trace: accesses that hit are known only from DAMON's sampling, so under "
        "zap the zapped-page-table faults, the pages freed and the stall figures are estimates "
        f"(validation: zapped-page-table faults {v['zap_zapped_page_table_faults']}, pages "
        f"freed {v['zap_pages_freed']}; {v['why']}){idle}"
    )
    if coverage == "faults+sampled":
        return base + "; under none and cache the faults are the logged ones"
    return base + (
        "; without logged faults nothing is ever mapped, so no replay of it faults: convert "
        "the host's fault log with the DAMON record (faults+sampled)"
    )


def sampling_note(summaries: list[tuple[str, dict[str, Any]]]) -> str | None:
    """One line for runs compared: which of them rest on sampling, and its caveat (D13).

    ``summaries`` are (tag, ``summary.json``) of each run; None when none replayed a
    ``sampled`` or ``faults+sampled`` trace.
    """
    sampled = [
        (tag, doc["caveats"][0])
        for tag, doc in summaries
        if doc.get("trace", {}).get("coverage") in SAMPLED_COVERAGES and doc.get("caveats")
    ]
    if not sampled:
        return None
    tags = " and ".join(tag for tag, _ in sampled)
    return f"estimates from sampling ({tags}): {sampled[0][1]}"


def sampled_counts(
    rows: np.ndarray, vm: np.ndarray, region_rows: np.ndarray
) -> tuple[np.ndarray, dict[int, int]]:
    """Which fault rows are sampled accesses' (their trace row is a region row), and per VM."""
    import numpy as np  # a replay's summary only: readers of runs do without numpy

    mask = np.isin(rows, region_rows)
    ids, n = np.unique(vm[mask], return_counts=True)
    return mask, {int(i): int(c) for i, c in zip(ids, n, strict=True)}


def share(part: int, whole: int) -> str:
    """``part`` as a percentage of ``whole``, for people (``-`` when there is no whole)."""
    return f"{100 * part / whole:.1f}%" if whole else "-"


def fidelity_rows(docs: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """Rows of the fidelity table (one cell per run), or none when no run is of faults-only.

    Per VM rows follow the totals when the trace has more than one VM.
    """
    if not any("logged_faults" in d["totals"] for d in docs):
        return []

    def rows_of(label: str, pick: Any) -> list[tuple[str, list[str]]]:
        blocks = [pick(d) or {} for d in docs]
        pairs = [
            (int(b.get("logged_faults", 0)), int(b.get("faults_unexplained", 0))) for b in blocks
        ]
        return [
            (f"{label}logged faults", [f"{n:,}" for n, _ in pairs]),
            (
                f"{label}  explained (replayed as faults)",
                [f"{n - u:,} ({share(n - u, n)})" for n, u in pairs],
            ),
            (
                f"{label}  not explained (replayed as hits)",
                [f"{u:,} ({share(u, n)})" for n, u in pairs],
            ),
        ]

    out = rows_of("", lambda d: d["totals"])
    vms = list(dict.fromkeys(vm for d in docs for vm in d["per_vm"]))
    if len(vms) > 1:
        for vm in vms:
            name = next((d["per_vm"][vm].get("name", "") for d in docs if vm in d["per_vm"]), "")
            out += rows_of(f"vm {vm} {name}: ", lambda d, vm=vm: d["per_vm"].get(vm))
    return out
