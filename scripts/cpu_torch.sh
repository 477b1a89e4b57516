# Sourced by the test scripts: stop before pip installs PyPI's CUDA torch (several GB of nvidia-*
# wheels) for the CPU pin in constraints/cpu.txt. The CPU build comes from a local wheel folder
# (pip's find-links) or PyTorch's own index; pip is asked which wheel it would take, downloading nothing.
# Usage: require_cpu_torch PYTHON SCRATCH_DIR   (returns 1, with the remedy on stderr, for a CUDA build)
require_cpu_torch() {
    local python="$1" report="$2/torch-report.json" pin
    "$python" -m pip install -q --dry-run --no-deps --report "$report" -c constraints/cpu.txt torch
    if "$python" - "$report" <<'PY'
import json, sys
wanted = json.load(open(sys.argv[1]))["install"]  # empty: a torch that satisfies the pin is installed
sys.exit(0 if any("nvidia" in r for w in wanted for r in w["metadata"].get("requires_dist") or []) else 1)
PY
    then
        pin="$(grep '^torch' constraints/cpu.txt)"
        cat >&2 <<MSG
$0: pip would install the CUDA build of $pin (several GB) with $python: this machine's pip has no CPU wheel.
Install the CPU build first, then rerun $0:
    $python -m pip install "$pin" --index-url https://download.pytorch.org/whl/cpu
or, to test with the CUDA build anyway: $python -m pip install -c constraints/cpu.txt torch
MSG
        return 1
    fi
}
