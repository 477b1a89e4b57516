#!/usr/bin/env bash
# The GPU check (issue 25): one prepared run on a GPU machine, well under 10 minutes.
#   on a CPU machine first:  bash scripts/fetch_gpu_wheels.sh          # wheels/gpu, git-ignored, ~53 MB
#   on the GPU machine:      bash scripts/gpu_check.sh OUT_DIR         # (the device tool: carry wheels/gpu)
# Installs only the packages the machine lacks (from wheels/gpu, no network), runs the `gpu` tests, the
# learner benchmark with Qwen2.5-0.5B's shape (random init: no weights needed), the layout benchmark at
# 8 and 16 turns, and the dry-run memory plan when the CLI has one; writes every result into OUT_DIR.
# A failing step is recorded in OUT_DIR/summary.json and the next step still runs.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:?usage: bash scripts/gpu_check.sh OUT_DIR}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD:$PWD/agents" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export MEM1_GYM_CACHE="${TMPDIR:-/tmp}/mem1-gym-gpu-cache"

python - wheels/gpu > "$OUT/install.log" 2>&1 <<'PY'
"""Install, without network, each wheel whose distribution is not installed (never upgrade torch's numpy)."""
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
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", *missing], check=True)
PY

declare -A RC
step() {  # step NAME TIMEOUT_S COMMAND...: run, log to OUT/NAME.log, remember the exit status
    local name="$1" limit="$2"; shift 2
    echo "== $name: $*"
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    RC[$name]=$?
    tail -n 15 "$OUT/$name.log"
}
step install_check 60 python -c "import torch, transformers, gymnasium, bm25s, mem1_gym, mem1_agent; print(torch.__version__, torch.cuda.get_device_name(0), transformers.__version__)"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
step gpu_tests 300 python -m pytest -p no:cacheprovider -m gpu -rA --junitxml="$OUT/gpu_tests.xml" \
    tests/train/test_gpu.py tests/train/test_rollout_backend.py
step bench_train 180 python benchmarks/bench_train.py --device cuda --shape qwen2.5-0.5b --turns 8 \
    --trajectories 4 --rollouts 32 --out "$OUT/gpu_train.json"
step bench_layouts 180 python benchmarks/bench_layouts.py --device cuda --hidden 896 --layers 24 --vocab 151936 \
    --turns 8 16 --repeats 3 --out "$OUT/gpu_layouts.json"
if python -m mem1_agent.cli train --help 2>/dev/null | grep -q -- "--dry-run"; then
    step dry_run 60 python -m mem1_agent.cli train --config examples/recipes/qwen2.5-0.5b-1gpu.yaml --dry-run
fi

python - "$OUT" "${!RC[@]}" -- "${RC[@]}" <<'PY'
import json, sys
out, rest = sys.argv[1], sys.argv[2:]
split = rest.index("--")
names, codes = rest[:split], rest[split + 1:]
summary = {name: int(code) for name, code in zip(names, codes)}
json.dump(summary, open(f"{out}/summary.json", "w"), indent=2)
print("summary:", summary)
PY
