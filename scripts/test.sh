#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian machine, then run the whole suite.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

# Chromium + chromedriver for the Selenium envs (Debian packages; Selenium Manager never downloads).
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver
fi

# CPU torch pin lives here, not in pyproject (GPU users bring their own CUDA torch).
python -m pip install -q -c constraints/cpu.txt -e ".[dev]"

export HF_HUB_OFFLINE=1 SE_OFFLINE=true SE_AVOID_STATS=true
# A throwaway cache so the run proves the embedded world and indexes build from nothing.
export MEM1_GYM_CACHE="${MEM1_GYM_CACHE:-$(mktemp -d)/mem1-gym-cache}"
exec python -m pytest "$@"
