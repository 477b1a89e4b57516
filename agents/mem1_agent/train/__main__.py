"""``python -m mem1_agent.train ARGS`` = ``mem1-agent train ARGS``: the entry torchrun launches on every rank.

    torchrun --nproc_per_node 8 -m mem1_agent.train --config examples/recipes/qwen2.5-7b-8gpu.yaml
    torchrun --nproc_per_node 2 -m mem1_agent.train --model runs/tiny --device cpu ...   (CPU: gloo)

A rank that fails exits at once with its error, and torchrun stops the others
(:func:`mem1_agent.train.distributed.exit_on_failure`).
"""

import sys

from mem1_agent.cli import main
from mem1_agent.train.distributed import exit_on_failure

exit_on_failure(lambda: main(["train", *sys.argv[1:]]))
