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
# Stop before a multi-GB CUDA install nobody asked for (scripts/cpu_torch.sh says how to get the CPU build).
source scripts/cpu_torch.sh
require_cpu_torch python "$scratch"
python -m pip install -q -c constraints/cpu.txt -e ".[dev]"

export HF_HUB_OFFLINE=1 SE_OFFLINE=true SE_AVOID_STATS=true
# A throwaway cache so the run proves the embedded world and indexes build from nothing (a cache
# the caller names in MEM1_GYM_CACHE is theirs and stays).
export MEM1_GYM_CACHE="${MEM1_GYM_CACHE:-$scratch/mem1-gym-cache}"
python -m pytest "$@"
# The verl adapter's tests run in their own cached venv (verl pins its own transformers): never skipped.
bash scripts/test_verl.sh "$@"
