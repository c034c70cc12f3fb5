"""The benchmark history: records, and the comparison of a run with the last one like it.

These test the comparison on fabricated records, not the machine.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from benchlib import (
    HISTORY,
    compare,
    count,
    describe,
    finish,
    judge,
    last_like,
    load_history,
    make_record,
    memory,
    rate,
    ratio,
    seconds,
)

MACHINE = {"cores": 2, "memory_mib": 24_000, "platform": "Linux", "python": "3.11"}


def record(figures: dict[str, Any], **extra: Any) -> dict[str, Any]:
    base = {
        "record_version": 1,
        "date": "2026-11-27",
        "commit": "abc123",
        "machine": MACHINE,
        "benchmark": "replay",
        "args": {"accesses": 1000},
        "figures": figures,
        "imported": False,
    }
    return {**base, **extra}


def test_a_time_is_worse_only_beyond_its_margin() -> None:
    old = (2.0, 2.0)
    assert judge(seconds("run_s", 2.3), old) == "worse"  # +15 % > 10 %
    assert judge(seconds("run_s", 2.19), old) == "same"  # +9.5 %
    assert judge(seconds("run_s", 1.81), old) == "same"
    assert judge(seconds("run_s", 1.7), old) == "better"


def test_a_rate_is_better_higher_and_memory_has_a_tighter_margin() -> None:
    assert judge(rate("lines_per_s", 0.85e6, "lines/s"), (1e6, 1e6)) == "worse"
    assert judge(rate("lines_per_s", 1.2e6, "lines/s"), (1e6, 1e6)) == "better"
    assert judge(memory("peak_rss_mib", 530), (500, 500)) == "worse"  # +6 % > 5 %
    assert judge(memory("peak_rss_mib", 520), (500, 500)) == "same"
    assert judge(ratio("engine_ratio", 80, "higher"), (94.5, 94.5)) == "worse"
    assert judge(ratio("run_over_read_first", 1.1, "lower"), (0.92, 0.92)) == "worse"


def test_an_imported_range_is_beaten_or_missed_as_a_whole() -> None:
    """4.0..4.5 M/s: worse below 3.6 (10 % under the range), better above 4.95."""
    span = (4.0e6, 4.5e6)
    assert judge(rate("events_per_s", 3.5e6, "events/s"), span) == "worse"
    assert judge(rate("events_per_s", 3.7e6, "events/s"), span) == "same"
    assert judge(rate("events_per_s", 4.9e6, "events/s"), span) == "same"
    assert judge(rate("events_per_s", 5.0e6, "events/s"), span) == "better"


def test_a_count_must_not_change() -> None:
    assert judge(count("vector_faults", 4711), (4711, 4711)) == "same"
    assert judge(count("vector_faults", 4712), (4711, 4711)) == "changed"


def test_compare_two_records() -> None:
    before = record(
        {
            "run_s": {"value": 5.0, "unit": "s"},
            "engine_ratio": {"value": 90.0, "unit": "x"},
            "vector_faults": {"value": 100, "unit": ""},
            "old_figure": {"value": 1.0, "unit": "s"},
            "peak_rss_mib": {"range": [500, 540], "unit": "MiB"},
        }
    )
    now = [
        seconds("run_s", 6.0),
        ratio("engine_ratio", 99.5, "higher"),
        count("vector_faults", 100),
        memory("peak_rss_mib", 560),
        seconds("new_figure", 1.0),
    ]
    verdicts = {v.name: v.status for v in compare(before, now)}
    assert verdicts == {
        "run_s": "worse",
        "engine_ratio": "better",
        "vector_faults": "same",
        "peak_rss_mib": "same",  # 560 is within 5 % of the range's top, 540
        "new_figure": "new",
        "old_figure": "gone",
    }
    text = describe(before, compare(before, now), MACHINE)
    assert text[0].startswith("compared with the last replay run with the same arguments")
    assert "2026-11-27, commit abc123, measured" in text[0]
    assert text[1] == "  WORSE    run_s: 5 -> 6 s (+20.0 %, beyond the 10 % noise margin)"
    assert "  better   engine_ratio: 90 -> 99.5 x (+10.6 %, beyond the 10 % noise margin)" in text
    assert "  same     peak_rss_mib: 500..540 -> 560 MiB (+3.7 %)" in text
    assert text[-1] == "  1 worse, 0 changed, 1 better, 2 within the noise margin"


def test_describe_says_when_a_count_changed_and_the_machine_differs() -> None:
    before = record({"lines": {"value": 5_000_000, "unit": ""}}, imported=True)
    text = describe(before, compare(before, [count("lines", 4_999_999)]), {"cores": 4})
    assert "imported from the docs" in text[0]
    assert text[1] == "  note: another machine (cores 2 then, 4 now)"
    assert text[2].startswith("  CHANGED  lines: 5,000,000 -> 4,999,999")
    assert "must not change" in text[2]


def test_the_last_record_of_the_same_benchmark_and_arguments() -> None:
    a = record({}, commit="a")
    b = record({}, commit="b", args={"accesses": 2000})
    c = record({}, commit="c", benchmark="synth")
    d = record({}, commit="d")
    assert last_like([a, b, c, d, b], "replay", {"accesses": 1000}) is d
    assert last_like([a, b, c], "replay", {"accesses": 1000}) is a
    assert last_like([b, c], "convert", {}) is None


def test_finish_compares_with_the_history_then_appends(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    history = tmp_path / "history.jsonl"
    first = finish("synth", {"events": 10}, [seconds("synth_s", 1.0)], history)
    assert "nothing to compare" in capsys.readouterr().out
    finish("synth", {"events": 10}, [seconds("synth_s", 1.5)], history)
    out = capsys.readouterr().out
    assert "WORSE    synth_s: 1 -> 1.5 s (+50.0 %" in out
    records = load_history(history)
    assert [r["figures"]["synth_s"]["value"] for r in records] == [1.0, 1.5]
    assert records[0] == json.loads(json.dumps(first))
    assert set(records[0]) >= {"date", "commit", "machine", "benchmark", "args", "figures"}
    assert records[0]["machine"]["cores"] >= 1
    assert finish("synth", {"events": 10}, [seconds("synth_s", 1.0)], None)["imported"] is False
    assert len(load_history(history)) == 2  # no history file: neither compared nor recorded


def test_a_damaged_history_line_is_named(tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    history.write_text(json.dumps(record({})) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"history.jsonl, line 2: not a JSON record"):
        load_history(history)


def test_the_kept_history_matches_what_the_benchmarks_produce() -> None:
    """Every figure of the kept history is one bench.py still produces, under the same argument
    names, so the next run of each benchmark compares with it instead of calling it gone."""
    source = (HISTORY.parent / "bench.py").read_text()
    produced = set(re.findall(r'(?:seconds|rate|ratio|memory|count)\(\s*"(\w+)"', source))
    produced |= set(re.findall(r'"\w[\w ,-]*": "(\w+_s)"', source))  # the compare cases
    history = load_history(HISTORY)
    assert {r["benchmark"] for r in history} >= {"synth", "replay", "compare", "convert"}
    for r in history:
        assert set(r["figures"]) <= produced, (r["benchmark"], set(r["figures"]) - produced)
        options = set(re.findall(r'add_argument\("--([\w-]+)"', source))
        assert {k.replace("_", "-") for k in r["args"]} <= options


def test_a_record_holds_what_it_was_given() -> None:
    rec = make_record(
        "convert",
        {"lines": 5},
        [count("lines", 5)],
        commit="c0ffee",
        machine_info=MACHINE,
        date="2026-12-07T10:00:00+00:00",
    )
    assert rec == {
        "record_version": 1,
        "date": "2026-12-07T10:00:00+00:00",
        "commit": "c0ffee",
        "machine": MACHINE,
        "benchmark": "convert",
        "args": {"lines": 5},
        "figures": {"lines": {"value": 5, "unit": ""}},
        "imported": False,
    }
