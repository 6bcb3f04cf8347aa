#!/usr/bin/env bash
# The sanitizer set-up, tested (ctest sanitizer_leak_canary): leak_canary leaks 4096 bytes of ours
# under mpirun -np 2. LeakSanitizer must name leak_canary_alloc, and every leak summary must be that
# one allocation: our leaks are reported, the Open MPI ones are suppressed (lsan.supp). mpirun may
# stop the second rank before its report, so one report is enough.
# usage: leak_canary.sh LEAK_CANARY   (ASAN_OPTIONS without log_path, LSAN_OPTIONS from ctest)
set -uo pipefail
out=$(timeout 300 mpirun -np 2 --oversubscribe "$1" 2>&1)
printf '%s\n' "$out"
summaries=$(grep 'SUMMARY: AddressSanitizer' <<<"$out")
others=$(grep -v -F 'SUMMARY: AddressSanitizer: 4096 byte(s) leaked in 1 allocation(s).' <<<"$summaries")
if grep -q 'in leak_canary_alloc' <<<"$out" && [ -n "$summaries" ] && [ -z "$others" ]; then
    echo "ok - our leak is reported, and it is the only one"
else
    echo "not ok - expected exactly one leak (4096 bytes in leak_canary_alloc) per report"
    exit 1
fi
