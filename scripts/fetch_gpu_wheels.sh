#!/usr/bin/env bash
# Download, on a CPU machine with PyPI access, the cp312 wheels that the GPU machine lacks, into the
# git-ignored folder wheels/gpu (<= 64 MiB: what one device run may carry). scripts/gpu_check.sh installs
# them there with --no-index. The GPU machine has Python 3.12, torch, transformers, tokenizers, peft and
# accelerate, and no network (SETUP-NOTES); what our GPU tests import beyond that is listed here.
# Usage: bash scripts/fetch_gpu_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=wheels/gpu
rm -rf "$DEST" && mkdir -p "$DEST"
PACKAGES=(
    gymnasium farama-notifications cloudpickle typing-extensions   # the envs
    bm25s PyStemmer scipy numpy                                    # the embedded retrieval index
    requests urllib3 idna certifi charset-normalizer               # mem1_gym.http
    pytest pluggy iniconfig packaging pytest-timeout psutil        # the GPU tests
    pyyaml tyro docstring-parser typeguard                         # the train CLI (--config, --dry-run)
)
python -m pip download -q --dest "$DEST" --only-binary=:all: --no-deps --implementation cp --python-version 3.12 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any "${PACKAGES[@]}"
du -sh "$DEST"
ls "$DEST"
