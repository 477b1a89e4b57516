#!/usr/bin/env bash
# The GPU check (issue 25): one prepared run on a GPU machine, well under 10 minutes.
#   on a CPU machine first:  bash scripts/fetch_gpu_wheels.sh          # wheels/gpu, git-ignored, ~53 MB
#   on the GPU machine:      bash scripts/gpu_check.sh OUT_DIR         # (the device tool: carry wheels/gpu)
# Installs only the packages the machine lacks (from wheels/gpu, no network), runs the `gpu` tests, the
# learner benchmark with Qwen2.5-0.5B's shape (random init: no weights needed) with the memory plan of the
# same update beside its measured peak, the layout benchmark at 8 and 16 turns, and the recipe's dry-run
# memory plan; writes every result into OUT_DIR.
# A failing step is recorded in OUT_DIR/summary.json and the next step still runs; each step has a time
# limit, and the limits add up to under 9 minutes. OUT_DIR gets five files (the device tool brings back at
# most eight): check.log (every step's output, appended as it ends), gpu_tests.xml, gpu_train.json,
# gpu_layouts.json and summary.json.
# The machine's interpreter is `python3` (there may be no `python`): PYTHON overrides it. To rehearse the
# script on a CPU machine: GPU_CHECK_DEVICE=cpu GPU_CHECK_SMALL=1 bash scripts/gpu_check.sh OUT_DIR
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:?usage: bash scripts/gpu_check.sh OUT_DIR}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
DEVICE="${GPU_CHECK_DEVICE:-cuda}"
# The missing packages go to a folder of their own: never into the image's environment, never over its numpy.
SITE="${TMPDIR:-/tmp}/mem1-gym-gpu-site"
export PYTHONPATH="$PWD:$PWD/agents:$SITE" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export MEM1_GYM_CACHE="${TMPDIR:-/tmp}/mem1-gym-gpu-cache"

LOG="$OUT/check.log"
{ date -u; nvidia-smi; } > "$LOG" 2>&1
timeout 120 "$PY" - wheels/gpu "$SITE" >> "$LOG" 2>&1 <<'INSTALL'
"""Install, without network, each wheel whose distribution is not installed, into SITE."""
import importlib.metadata, pathlib, subprocess, sys
missing = []
for wheel in sorted(pathlib.Path(sys.argv[1]).glob("*.whl")):
    name = wheel.name.split("-")[0]
    try:
        print(f"have {name} {importlib.metadata.version(name)}")
    except importlib.metadata.PackageNotFoundError:
        missing.append(str(wheel))
if missing:
    print("installing", *missing, sep="\n  ")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--target", sys.argv[2], *missing], check=True)
INSTALL

declare -A RC
step() {  # step NAME TIMEOUT_S COMMAND...: run, append its output to check.log, remember the exit status
    local name="$1" limit="$2" started=$SECONDS; shift 2
    echo "== $name: $*" | tee -a "$LOG"
    timeout "$limit" "$@" >> "$LOG" 2>&1
    RC[$name]=$?
    echo "== $name: exit ${RC[$name]} after $((SECONDS - started)) s" | tee -a "$LOG"
}
step install_check 40 "$PY" -c "import torch, transformers, gymnasium, bm25s, mem1_gym, mem1_agent; print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA', transformers.__version__)"
if [ -n "${GPU_CHECK_SMALL:-}" ]; then  # the rehearsal: tiny shapes, seconds each
    SHAPE=(--shape tiny); LAYOUT_SHAPE=(--hidden 64 --layers 2 --vocab 2048)
else
    SHAPE=(--shape qwen2.5-0.5b); LAYOUT_SHAPE=(--hidden 896 --layers 24 --vocab 151936)
fi
step gpu_tests 150 "$PY" -m pytest -p no:cacheprovider -m gpu -rA --junitxml="$OUT/gpu_tests.xml" \
    tests/train/test_gpu.py tests/train/test_rollout_backend.py
step bench_train 120 "$PY" benchmarks/bench_train.py --device "$DEVICE" "${SHAPE[@]}" --turns 8 \
    --trajectories 4 --rollouts 32 --processes --out "$OUT/gpu_train.json"
step bench_layouts 150 "$PY" benchmarks/bench_layouts.py --device "$DEVICE" "${LAYOUT_SHAPE[@]}" \
    --turns 8 16 --repeats 3 --out "$OUT/gpu_layouts.json"
step dry_run 30 "$PY" -m mem1_agent.cli train --config examples/recipes/qwen2.5-0.5b-1gpu.yaml --dry-run

"$PY" - "$OUT" "${!RC[@]}" -- "${RC[@]}" <<'SUMMARY'
import json, sys
out, rest = sys.argv[1], sys.argv[2:]
split = rest.index("--")
names, codes = rest[:split], rest[split + 1:]
summary = {name: int(code) for name, code in zip(names, codes)}
json.dump(summary, open(f"{out}/summary.json", "w"), indent=2)
print("summary:", summary)
SUMMARY
