"""The benchmark's scale section: the 10-million-object model comes from the planning code, figures consistent."""

from __future__ import annotations

import json
from pathlib import Path

from drcore.aws.job_estimates import LAMBDA_MAX_SECONDS, USD_PER_1000_WRITES, FanOut
from embedded.bench import main
from embedded.bench_manifest_memory import ENTRIES, STREAMED
from embedded.bench_scale import OBJECTS


def test_the_scale_section_models_ten_million_objects_both_ways_and_is_written_to_the_report(tmp_path: Path) -> None:
    # When the bench runs its scale section alone
    report = tmp_path / "bench.json"
    assert main(["--sections", "scale", "--report", str(report)]) == 0
    scale = json.loads(report.read_text())["scale"]
    # Then a first snapshot copies every object once, at S3's COPY price at least
    first = scale["first_snapshot"]
    alone, fanned = first["one_invocation_after_another"], first["fanned_out"]
    assert scale["objects"] == OBJECTS and alone["requests"]["copies"] == OBJECTS
    assert alone["cost_usd"] >= OBJECTS * USD_PER_1000_WRITES / 1000
    # and alone it needs one invocation per 840 s of its time, where fanned out it runs as shards of 10,000 keys
    assert alone["invocations"] == -(-alone["seconds"] // (LAMBDA_MAX_SECONDS - 60)) and alone["shards"] == 1
    assert fanned["shards"] == OBJECTS // FanOut().shard_objects and fanned["seconds"] < alone["seconds"] / 10
    # after its census has listed every key name once, one page after another, before the shards run
    counting = OBJECTS // 1000 * fanned["assumptions"]["list_page_seconds"]
    assert fanned["bounds"]["counted first"] == counting and fanned["seconds"] > counting
    assert fanned["requests"]["lists"] == alone["requests"]["lists"] + OBJECTS // 1000
    # A second snapshot lists everything but copies only what changed
    second = scale["second_snapshot"]["one_invocation_after_another"]
    assert second["requests"]["copies"] == scale["changed_between_snapshots"]
    assert second["requests"]["lists"] >= OBJECTS // 1000
    # A full restore copies everything back and reads it back
    restore = scale["full_restore"]["fanned_out"]
    assert restore["requests"]["copies"] == OBJECTS and restore["requests"]["heads"] >= OBJECTS
    # and every figure names what it assumed
    assert restore["assumptions"]["prefixes"] == 16
    # and says which way the functions run each job today: fanned out, all three
    built = {job: [way for way, figure in scale[job].items() if figure["built"]]
             for job in ("first_snapshot", "second_snapshot", "full_restore")}
    assert built == {"first_snapshot": ["fanned_out"], "second_snapshot": ["fanned_out"],
                     "full_restore": ["fanned_out"]}
    # Beside the model, what a manifest costs in memory is measured: read back whole, its peak no less than what it
    # holds, and the objects a function's memory can read a manifest of follow from that peak
    memory = scale["manifest_memory"]
    assert memory["entries"] == ENTRIES and 0 < memory["held_per_entry"] <= memory["read_peak_per_entry"]
    readable = memory["function_mb"] * 1024**2 / memory["read_peak_per_entry"]  # the peak per entry is rounded
    assert abs(memory["readable_in_function"] - readable) <= readable / 100
    # and streamed by the fan-out's planner and merge, measured at two sizes: what grows with the objects, and what
    # does not, from which the objects a function's memory handles follow
    for name in STREAMED:
        streamed = memory[name]
        assert 0 < streamed["peak_per_entry"] < memory["held_per_entry"] and streamed["peak_besides"] >= 0
        handled = (memory["function_mb"] * 1024**2 - streamed["peak_besides"]) / streamed["peak_per_entry"]
        assert abs(streamed["handled_in_function"] - handled) <= handled / 100
