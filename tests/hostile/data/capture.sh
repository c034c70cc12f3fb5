#!/usr/bin/env bash
# Record one run of vmm.py three ways at once (README.md): a tracefs instance's trace file
# (ftrace layout), trace-cmd extract + report of the same instance, and perf record + perf
# script. Run as root. Every event enabled here is disabled again and the instance removed.
set -euo pipefail
cd "$(dirname "$0")"
I=/sys/kernel/tracing/instances/hostile18
EVENTS="kvm_mmu_get_page kvm_mmu_prepare_zap_page kvm_mmu_spte_requested kvm_mmu_zap_all_fast kvm_mmu_set_spte"
OUT=${OUT:-/tmp/vmm-capture}
mkdir -p "$OUT" $I
cleanup() {
  for e in $EVENTS; do { echo 0 > $I/events/kvmmmu/$e/enable; } 2>/dev/null || true; done
  rmdir $I 2>/dev/null || true
}
trap cleanup EXIT
for e in $EVENTS; do echo 1 > $I/events/kvmmmu/$e/enable; done
echo 1 > $I/tracing_on
PERF_EVENTS=()
for e in $EVENTS; do PERF_EVENTS+=(-e "kvmmmu:$e"); done
timeout 60 perf record -q "${PERF_EVENTS[@]}" -a -o "$OUT/perf.data" -- python3 vmm.py "$@"
echo 0 > $I/tracing_on
cat $I/trace > "$OUT/vmm-ftrace.txt"
timeout 60 trace-cmd extract -B hostile18 -o "$OUT/trace.dat" > /dev/null
timeout 60 trace-cmd report -i "$OUT/trace.dat" > "$OUT/vmm-trace-cmd.txt" 2> /dev/null
timeout 60 perf script -i "$OUT/perf.data" > "$OUT/vmm-perf-script.txt" 2> /dev/null
wc -l "$OUT"/vmm-*.txt
