#!/usr/bin/env bash
# The verl adapter's tests, in their own cached venv: verl pins its own transformers, which would
# downgrade the main environment's (issue 22), so it never shares a venv with the rest of the suite.
# Usage: bash scripts/test_verl.sh [pytest args...]
# The venv lives in ${MEM1_GYM_VENVS:-~/.cache/mem1-gym/venvs}/verl and is reinstalled only when
# pyproject.toml or constraints/cpu.txt change (a hash of both is stamped into it).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/cpu_torch.sh
venv="${MEM1_GYM_VENVS:-$HOME/.cache/mem1-gym/venvs}/verl"
stamp="$venv/mem1-gym-install.sha256"
wanted="$(cat pyproject.toml constraints/cpu.txt | sha256sum | cut -d' ' -f1)"

if [ ! -x "$venv/bin/python" ]; then
    python -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    rm -f "$stamp"  # a failed install below must not leave the old stamp claiming a good venv
    scratch="$(mktemp -d)"
    trap 'rm -rf "$scratch"' EXIT
    # torch first, and only its CPU build: verl's own requirements would otherwise let pip pick
    # PyPI's CUDA torch.
    require_cpu_torch "$venv/bin/python" "$scratch"
    "$venv/bin/python" -m pip install -q -c constraints/cpu.txt torch
    "$venv/bin/python" -m pip install -q -c constraints/cpu.txt -e ".[verl,test]"
    echo "$wanted" >"$stamp"
fi

export HF_HUB_OFFLINE=1 MEM1_GYM_REQUIRE_VERL=1
"$venv/bin/python" -m pytest tests/verl_adapter "$@"
