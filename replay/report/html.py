"""The report as one self-contained HTML file: inline CSS, plots as data URIs, no script.

It opens offline in any browser and can be mailed or attached to a bug as a single file.
"""

from __future__ import annotations

import base64
import html
from typing import TYPE_CHECKING, Any

from replay._version import __version__
from replay.report.plots import shrinker_stall_ns
from replay.run.fidelity import FIDELITY_TITLE, NEVER_SEEN, fidelity_rows, share
from replay.run.table import TITLE, policy_rows

if TYPE_CHECKING:
    from replay.report.data import RunSeries

CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
       max-width: 1080px; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.8em 0; font-variant-numeric: tabular-nums; }
th, td { padding: 0.25em 0.8em; border-bottom: 1px solid #eee; text-align: right; }
th:first-child, td:first-child { text-align: left; white-space: pre; }
thead th { border-bottom: 2px solid #999; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
.note { color: #8a4b00; }
code { font-size: 0.9em; }
"""


def _e(text: Any) -> str:
    return html.escape(str(text))


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def headline(r: RunSeries) -> str:
    """One sentence: what the shrinker freed in this run and what it cost the guests."""
    t = r.totals
    freed = t["pages_freed"]
    stall_ms = shrinker_stall_ns(t) / 1e6
    attr = t["faults_by_attribution"]
    caused = attr["zapped_page_tables"] + attr["cache_eviction"]
    if freed == 0:
        return (
            f"{r.label}: the shrinker freed nothing; {caused:,} faults are attributed to it "
            f"(est. {stall_ms:,.1f} ms)."
        )
    per = t["stall_per_freed_page"]
    return (
        f"{r.label}: the shrinker freed {freed:,} pages ({freed * 4 / 1024:,.1f} MiB) and caused "
        f"{caused:,} guest faults ({attr['zapped_page_tables']:,} on zapped page tables, "
        f"{attr['cache_eviction']:,} refilling emptied caches): est. {stall_ms:,.1f} ms of guest "
        f"stall, {per:,.0f} ns per freed page."
    )


def fidelity_sentence(r: RunSeries) -> str | None:
    """A faults-only run: how many logged faults the model explains, in words."""
    t = r.totals
    if "logged_faults" not in t:
        return None
    logged, unexplained = int(t["logged_faults"]), int(t.get("faults_unexplained", 0))
    explained = logged - unexplained
    return (
        f"{r.label}: the model explains {explained:,} of {logged:,} logged faults "
        f"({share(explained, logged)}); it replays the other {unexplained:,} "
        f"({share(unexplained, logged)}) as hits, faults it does not explain."
    )


def _fidelity(runs: list[RunSeries], docs: list[dict[str, Any]]) -> list[str]:
    """The fidelity section, first (faults-only runs only): words, numbers, likely reasons."""
    rows = fidelity_rows(docs)
    if not rows:
        return []
    sentences = [s for s in (fidelity_sentence(r) for r in runs) if s is not None]
    reasons = list(dict.fromkeys(x for d in docs for x in d["trace"].get("likely_reasons", [])))
    return [
        f"<h2>{_e(FIDELITY_TITLE)}</h2>",
        "<p>Every fault of a faults-only trace happened; one the model replays as a hit is a "
        "fault it does not explain. Read the rest of this report in that light.</p><ul>",
        *(f"<li>{_e(s)}</li>" for s in sentences),
        "</ul>",
        _table(["", *(r.label for r in runs)], [[label, *cells] for label, cells in rows]),
        "<p>Likely reasons for faults not explained:</p><ul>",
        *(f"<li>{_e(x)}</li>" for x in [*reasons, NEVER_SEEN]),
        "</ul>",
    ]


def render(
    runs: list[RunSeries], figures: list[tuple[str, str, bytes]], png_names: dict[str, str]
) -> str:
    """The whole HTML document."""
    docs = [r.run.summary for r in runs]
    labels = [r.label for r in runs]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>kvm-mmu-replay report: {_e(', '.join(labels))}</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>KVM MMU shrinker replay</h1>",
        f"<p>{len(runs)} run{'s' if len(runs) != 1 else ''} of kvm-mmu-replay {_e(__version__)}. "
        "Every stall figure is an estimate from the cost model, not a measurement.</p>",
        *_fidelity(runs, docs),
        "<h2>Headline</h2><ul>",
        *(f"<li>{_e(headline(r))}</li>" for r in runs),
        "</ul>",
    ]
    fingerprints = {r.run.fingerprint for r in runs}
    if len(fingerprints) > 1:
        parts.append('<p class="note">These runs replayed different traces.</p>')
    caveats = sorted({c for d in docs for c in d.get("caveats", [])})
    parts += [f'<p class="note">Note: {_e(c)}.</p>' for c in caveats]
    parts += [
        f"<h2>{_e(TITLE)}</h2>",
        _table(["", *labels], [[label, *cells] for label, cells in policy_rows(docs)]),
        "<h2>Runs</h2>",
        _table(
            ["run", "policy", "engine", "trace", "rows", "coverage", "bucket"],
            [
                [
                    r.label,
                    d["policy"],
                    d["engine"],
                    d["trace"].get("path", ""),
                    f"{d['trace'].get('rows', 0):,}",
                    d["trace"].get("coverage", ""),
                    f"{d['config']['bucket_ns'] / 1e6:g} ms",
                ]
                for r, d in zip(runs, docs, strict=True)
            ],
        ),
        "<h2>Plots</h2>",
    ]
    for name, caption, png in figures:
        data = base64.b64encode(png).decode("ascii")
        parts.append(
            f'<figure id="{_e(name)}"><img alt="{_e(caption)}" '
            f'src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(caption)} (also <code>{_e(png_names[name])}</code>)</figcaption>"
            "</figure>"
        )
    parts.append("</body></html>\n")
    return "\n".join(parts)
