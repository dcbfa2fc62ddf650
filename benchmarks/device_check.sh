#!/bin/bash
# The checks for a lent GPU machine, in one call of at most 9.5 minutes (docs/speed.md, "On a
# GPU"): the CUDA tests, update speed on CUDA eager and compiled (TD-MPC 5M on dog-run, Dreamer
# S), then the paper's own sweep (experiment=paper_tdmpc_dmc, dog-run, SAM, one seed) for
# 2 minutes. Each step has its own time limit, so one that hangs leaves the rest their time.
# Results go to $OUT (the device tool's folder): env.txt, tests.log, *_speed.json, paper_run.*.
set -uo pipefail
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,6p' "$0" | sed 's/^# //'
  echo "Usage: bash benchmarks/device_wheels.sh here, then on the GPU machine, from the"
  echo "repository root, carrying .whl: bash benchmarks/device_check.sh"
  exit 0
fi
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/device_check}"
device="${DEVICE:-cuda}"  # DEVICE=cpu tries the script itself on a machine without a GPU
mkdir -p "$out"
# The repository itself is not installed there: its root goes on the path.
export PYTHONUNBUFFERED=1 MUJOCO_GL=egl PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [[ -d .whl ]] && ! python3 -c "import gymnasium, dm_control, hydra" 2> /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
step() {  # step <seconds> <name> <command...>: run it, say how it ended and how long it took
  local limit=$1 name=$2 start=$SECONDS
  shift 2
  timeout "$limit" "$@"
  echo "[$name] exit $? after $((SECONDS - start)) s" | tee -a "$out/env.txt" >&2
}
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
  git log -1 --format='commit %h %s' 2>/dev/null
} > "$out/env.txt" 2>&1
step 120 tests env MBRL_TEST_DEVICE="$device" python3 -m pytest -q -o addopts="" \
  -p no:cacheprovider tests/test_cuda.py tests/objectives > "$out/tests.log" 2>&1
step 200 tdmpc_speed python3 benchmarks/update_speed.py --agent tdmpc --sizes 5M \
  --task dmc/dog-run --device "$device" --repeats 20 --against agent.compile=true \
  > "$out/tdmpc_speed.json" 2> "$out/tdmpc_speed.err"
step 60 dreamer_speed python3 benchmarks/update_speed.py --agent dreamer --sizes S \
  --device "$device" --repeats 10 > "$out/dreamer_speed.json" 2>> "$out/tdmpc_speed.err"
# The paper's setting as a GPU user starts it, cut to one seed and a few minutes; the time limit
# stops it with an evaluation and a checkpoint, and a stopped run is not recorded as finished.
step 170 paper_run python3 sweep.py experiment=paper_tdmpc_dmc task=dmc/dog-run objective=sam \
  device="$device" seeds=1 time_limit_minutes=2 eval_episodes=1 root=/tmp/paper \
  results_dir=/tmp/paper_results report=false > "$out/paper_run.log" 2>&1
run_dir=$(dirname "$(find /tmp/paper -name progress.json | head -1)" 2>/dev/null)
if [[ -n "$run_dir" && -d "$run_dir" ]]; then
  cat "$run_dir/progress.json" "$run_dir/evals.jsonl" > "$out/paper_run.progress" 2>&1
  tail -n 3 "$run_dir/metrics.jsonl" >> "$out/paper_run.progress" 2>&1
fi
cat "$out/env.txt"
