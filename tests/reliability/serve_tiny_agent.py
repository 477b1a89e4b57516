"""``python serve_tiny_agent.py MODEL_DIR [serve flags]``: build a tiny model in MODEL_DIR and serve it
through ``python -m mem1_agent.serve``'s own ``main``, in one process (torch is imported once).

Its tokenizer is trained on 200 passages instead of 4,000: enough for a server that only has to answer.
"""

import sys

from mem1_agent.serve import main
from mem1_agent.tiny import TinyConfig, make_tiny

if __name__ == "__main__":
    model_dir, *serve_args = sys.argv[1:]
    make_tiny(model_dir, TinyConfig(tokenizer_passages=200))
    sys.exit(main(["--model", model_dir, *serve_args]))
