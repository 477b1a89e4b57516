"""Serve an index over Search-R1's ``POST /retrieve``; the same as ``mem1-gym serve-retriever``.

    python indexes/serve.py --index indexes/wiki18-bm25s --port 8013
"""

import sys

from mem1_gym.retrieval.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve-retriever", *sys.argv[1:]]))
