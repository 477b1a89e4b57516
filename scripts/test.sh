#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian machine, then run the whole suite.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
# Scratch files of this run (pip's report, the throwaway cache) go here and go away on exit.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

# Chromium + chromedriver for the Selenium envs (Debian packages; Selenium Manager never downloads).
# Without --no-install-recommends apt pulls ~116 packages (systemd, cups helpers, ...) a headless
# browser never uses (issue 24).
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver
fi

# CPU torch pin lives in constraints/cpu.txt, not in pyproject (GPU users bring their own CUDA torch).
# PyPI's Linux torch wheel is the CUDA build (several GB of nvidia-* wheels); the CPU build comes from
# a local wheel folder (pip's find-links) or PyTorch's own index. Ask pip which wheel it would take,
# without downloading it, and stop before a multi-GB CUDA install nobody asked for.
torch_report="$scratch/torch-report.json"
python -m pip install -q --dry-run --no-deps --report "$torch_report" -c constraints/cpu.txt torch
if python - "$torch_report" <<'EOF'
import json, sys
wanted = json.load(open(sys.argv[1]))["install"]  # empty: a torch that satisfies the pin is installed
sys.exit(0 if any("nvidia" in r for w in wanted for r in w["metadata"].get("requires_dist") or []) else 1)
EOF
then
    pin="$(grep '^torch' constraints/cpu.txt)"
    cat >&2 <<EOF
scripts/test.sh: pip would install the CUDA build of $pin (several GB): this machine's pip has no CPU wheel.
Install the CPU build first, then rerun this script:
    python -m pip install "$pin" --index-url https://download.pytorch.org/whl/cpu
or, to test with the CUDA build anyway: python -m pip install -c constraints/cpu.txt torch
EOF
    exit 1
fi
python -m pip install -q -c constraints/cpu.txt -e ".[dev]"

export HF_HUB_OFFLINE=1 SE_OFFLINE=true SE_AVOID_STATS=true
# A throwaway cache so the run proves the embedded world and indexes build from nothing (a cache
# the caller names in MEM1_GYM_CACHE is theirs and stays).
export MEM1_GYM_CACHE="${MEM1_GYM_CACHE:-$scratch/mem1-gym-cache}"
python -m pytest "$@"
