from __future__ import annotations

import json
import re
from typing import Any

import pyarrow as pa
import pytest

from replay._schemas import load_schema
from replay.errors import TraceSchemaError, TraceVersionError
from replay.trace.schema import (
    COLUMNS,
    COVERAGES,
    EVENT_CODE,
    FOOTER_KEY,
    Memslot,
    TraceMeta,
    VmSpec,
    arrow_schema,
)
from tests.builders import two_vm_meta


def test_arrow_schema_follows_the_json_definition() -> None:
    doc = load_schema("trace.v2")
    schema = arrow_schema()
    assert schema.names == [c["name"] for c in doc["columns"]] == list(COLUMNS)
    assert schema.field("t_ns").type == pa.int64()
    assert not schema.field("t_ns").nullable
    assert schema.field("gpa").type == pa.uint64()
    assert schema.field("nr_accesses").type == pa.uint32()
    assert schema.field("window_ns").type == pa.uint64()
    assert pa.types.is_dictionary(schema.field("event").type)
    assert doc["footer_key"] == FOOTER_KEY == "replay.trace"
    assert doc["enums"]["event"] == ["access", "reclaim", "shrink", "unmap", "zap_all", "region"]
    assert EVENT_CODE["region"] == 5
    assert COVERAGES == ("all-accesses", "faults-only", "sampled", "faults+sampled")


def test_version_2_only_adds_to_version_1() -> None:
    """Every v1 column, enumeration value and footer key means the same in v2 (v1 still reads)."""
    v1, v2 = load_schema("trace.v1"), load_schema("trace.v2")
    assert v2["columns"][: len(v1["columns"])] == [
        {**c, "doc": d["doc"]} for c, d in zip(v1["columns"], v2["columns"], strict=False)
    ]
    for name, values in v1["enums"].items():
        assert v2["enums"][name][: len(values)] == values
    for part in ("fields", "vm", "memslot"):
        assert set(v1["footer"][part]) <= set(v2["footer"][part])
    assert v2["footer"]["memslot"]["hva_start"]["required"] is False
    assert v2["events"]["region"]["required"] == [
        "vm",
        "gpa",
        "len",
        "nr_accesses",
        "window_ns",
        "sample_ns",
    ]


def test_hva_start_round_trips_and_is_checked() -> None:
    meta = two_vm_meta()
    slot = Memslot(0, 1 << 30, hva_start=0x7F00_0000_0000)
    vm = VmSpec(0, "a", 1, "tdp_mmu", 4, (slot,))
    with_hva = TraceMeta((vm,), "faults+sampled", {"generator": "tests"})
    doc = json.loads(with_hva.to_json())
    assert doc["vms"][0]["memslots"][0]["hva_start"] == 0x7F00_0000_0000
    assert TraceMeta.from_json(with_hva.to_json(), "x") == with_hva
    assert "hva_start" not in json.loads(meta.to_json())["vms"][0]["memslots"][0]
    doc["vms"][0]["memslots"][0]["hva_start"] = 0x7F00_0000_0010
    with pytest.raises(
        TraceSchemaError, match="hva_start 139637976727568 must be a page-aligned host address"
    ):
        TraceMeta.from_dict(doc, "x")


def test_a_version_1_footer_reads_with_version_1_rules() -> None:
    doc = json.loads(two_vm_meta().to_json())
    doc["schema_version"] = 1
    assert TraceMeta.from_dict(doc, "x").schema_version == 1
    doc["coverage"] = "faults+sampled"
    with pytest.raises(TraceSchemaError, match="in a version 1 trace"):
        TraceMeta.from_dict(doc, "x")
    doc["coverage"] = "all-accesses"
    doc["vms"][0]["memslots"][0]["hva_start"] = 0
    with pytest.raises(TraceSchemaError, match="unknown key 'hva_start'"):
        TraceMeta.from_dict(doc, "x")


def test_footer_round_trips_in_the_documented_shape() -> None:
    meta = two_vm_meta()
    doc = json.loads(meta.to_json())
    assert list(doc) == ["schema_version", "coverage", "vms", "provenance", "observed"]
    assert doc["vms"][1]["memslots"][1] == {
        "gpa_start": 4 << 30,
        "size": 1 << 30,
        "backing": "2m",
        "dirty_log": False,
    }
    assert TraceMeta.from_json(meta.to_json(), "x") == meta


def test_design_example_footer_parses() -> None:
    example = """{"schema_version": 1,
     "coverage": "all-accesses",
     "vms": [{"id": 0, "name": "web-1", "vcpus": 4, "mmu_mode": "shadow_direct", "root_level": 4,
              "memslots": [{"gpa_start": 0, "size": 3221225472, "backing": "4k", "dirty_log": false},
                           {"gpa_start": 4294967296, "size": 1073741824, "backing": "2m", "dirty_log": false}]}],
     "provenance": {"generator": "replay synth", "scenario": "legacy-mmu-pressure", "seed": 7},
     "observed": {}}"""
    meta = TraceMeta.from_json(example, "example")
    assert meta.vms[0].guest_pages == (3 << 18) + (1 << 18)


def _footer(**changes: object) -> dict[str, object]:
    doc: dict[str, object] = json.loads(two_vm_meta().to_json())
    doc.update(changes)
    return doc


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schema_version": 3}, "schema version 3 is not supported"),
        ({"schema_version": "1"}, "no integer schema_version"),
        ({"coverage": "some"}, "coverage is 'some'"),
        ({"vms": []}, "non-empty list"),
        ({"extra": 1}, "unknown key 'extra'"),
    ],
)
def test_footer_errors_name_the_problem(change: dict[str, object], message: str) -> None:
    with pytest.raises(TraceSchemaError, match=message):
        TraceMeta.from_dict(_footer(**change), "t.parquet")


def test_future_version_says_to_upgrade() -> None:
    with pytest.raises(TraceVersionError, match="upgrade kvm-mmu-replay"):
        TraceMeta.from_dict(_footer(schema_version=9), "t.parquet")


def _vm_change(**changes: object) -> dict[str, object]:
    doc = _footer()
    vms = doc["vms"]
    assert isinstance(vms, list)
    vms[0].update(changes)
    return doc


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"mmu_mode": "shadow_paging"}, "is out of scope"),
        ({"mmu_mode": "nested"}, "nested guests"),
        ({"mmu_mode": "ept"}, "mmu_mode is 'ept'"),
        ({"root_level": 3}, "root_level 3 must be 4 or 5"),
        ({"vcpus": 0}, "vcpus 0 must be in 1..65535"),
        ({"id": 5}, "VM id 5 appears twice"),
        ({"memslots": []}, "has no memslots"),
        (
            {"memslots": [{"gpa_start": 0, "size": 100, "backing": "4k", "dirty_log": False}]},
            "size 100 must be a positive multiple of 4096",
        ),
        (
            {"memslots": [{"gpa_start": 0, "size": 8192, "backing": "3m", "dirty_log": False}]},
            "backing is '3m'",
        ),
        (
            {
                "memslots": [
                    {"gpa_start": 0, "size": 8192, "backing": "4k", "dirty_log": False},
                    {"gpa_start": 4096, "size": 8192, "backing": "4k", "dirty_log": False},
                ]
            },
            "overlapping memslots",
        ),
        (
            {"memslots": [{"gpa_start": 0, "size": 8192, "backing": "4k"}]},
            "required key 'dirty_log' is missing",
        ),
    ],
)
def test_vm_table_errors_name_the_problem(change: dict[str, object], message: str) -> None:
    with pytest.raises(TraceSchemaError, match=message):
        TraceMeta.from_dict(_vm_change(**change), "t.parquet")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["vms"][0].update(mmu_mode=["tdp_mmu"]), "'mmu_mode' must be a string"),
        (lambda d: d["vms"][0].update(mmu_mode={"a": 1}), "'mmu_mode' must be a string"),
        (lambda d: d["vms"][0]["memslots"][0].update(backing=4), "'backing' must be a string"),
        (lambda d: d.update(coverage=None), "'coverage' must be a string"),
        (
            lambda d: d.update(observed={"per_vm": {"0": {"sp_new_l1": "x"}}}),
            "per_vm.0.sp_new_l1 is 'x'",
        ),
        (
            lambda d: d.update(observed={"kvm_shrinker_scans": {"calls": -1}}),
            "kvm_shrinker_scans.calls is -1",
        ),
        (lambda d: d.update(observed={"per_vm": [1]}), "per_vm must be a JSON object"),
        (lambda d: d.update(observed={"lost_events": True}), "lost_events is True"),
    ],
)
def test_footer_fields_of_the_wrong_shape_are_one_clear_error(mutate: Any, message: str) -> None:
    """Issue 12 item 10: enumerations as lists or objects, and observed counts that are not
    counts, were a TypeError (in the reader, or in replay run after writing every run)."""
    doc = json.loads(two_vm_meta().to_json())
    mutate(doc)
    with pytest.raises(TraceSchemaError, match=re.escape(message)):
        TraceMeta.from_json(json.dumps(doc), "t.parquet")


def test_a_footer_nested_thousands_deep_is_one_clear_error() -> None:
    """Issue 12 item 10: JSON nested 200,000 deep was a RecursionError."""
    with pytest.raises(TraceSchemaError, match="nests too deeply"):
        TraceMeta.from_json("[" * 200_000 + "]" * 200_000, "t.parquet")


def test_a_long_bad_value_is_quoted_short() -> None:
    doc = json.loads(two_vm_meta().to_json())
    doc["vms"][0]["name"] = list(range(10_000))
    with pytest.raises(TraceSchemaError) as info:
        TraceMeta.from_json(json.dumps(doc), "t.parquet")
    assert len(str(info.value)) < 200
