#!/usr/bin/env bash
# The lab's Task 2 without any concurrency library: start N independent workers on one spool
# from a shell loop, wait for all of them, and fail if any of them failed.
#
#   jobrunner plan --step 0.001 --tiles 4x4
#   scripts/run_workers.sh 4          # then: jobrunner reduce
#
# Options of `jobrunner work` (--spool, --outputs, --retries) can follow the count.  Each
# worker's output goes to worker-logs/worker-N.log (replaced on every run).
# Set JOBRUNNER to the command to run (default: jobrunner).
set -u
count=${1:-2}
shift || true
read -r -a runner <<< "${JOBRUNNER:-jobrunner}"

logs=worker-logs  # one log per worker, this run's only
rm -rf "$logs" && mkdir -p "$logs"
pids=()
for ((i = 1; i <= count; i++)); do
  "${runner[@]}" work "$@" > "$logs/worker-$i.log" 2>&1 &
  pids+=($!)
done

status=0
for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}"; then
    echo "worker $((i + 1)) failed: see $logs/worker-$((i + 1)).log" >&2
    status=1
  fi
done
tail -q -n 1 "$logs"/worker-*.log
exit $status
