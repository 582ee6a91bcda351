#!/usr/bin/env bash
# Re-record the committed sample captures (run through `./dev samples`, which sets up the
# tools first). Each capture directory's capture.json records the exact commands, versions
# and flags of its run; sample_traces/README.md describes them.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-${TRACECORR_CACHE:-$HOME/.cache/tracecorr}/venv/bin/python}

# Go 1.27 (wire format "go 1.26") + cgo + libhiredis, frame-pointer callchains; redis-server
# recorded in the same perf session (wakers, critical paths); one pair of goroutines sharing
# a hiredis context and one goroutine that never frees its replies (the findings).
rm -rf sample_traces/go_hiredis
"$PY" -m sample_traces.capture go --sample -o sample_traces/go_hiredis --peer-redis \
    --goroutines 4 --commands 40 --slow-every 10 --slow-ms 50 --decoy-every 20 --decoy-ms 30 \
    --shared-pairs 1 --leakers 1

# redis-py + hiredis parser, py-spy chrometrace + speedscope + raw, perf on the same run.
rm -rf sample_traces/py_hiredis
"$PY" -m sample_traces.capture py --sample -o sample_traces/py_hiredis \
    --threads 3 --commands 24 --slow-every 8 --slow-ms 200 --decoy-every 12 --decoy-ms 30
