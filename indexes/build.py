"""Build a retrieval index; the same command as ``mem1-gym build-index`` (recipes: indexes/README.md).

    python indexes/build.py --backend bm25s --corpus wiki-18.jsonl --out indexes/wiki18-bm25s
"""

import sys

from mem1_gym.retrieval.cli import main

if __name__ == "__main__":
    sys.exit(main(["build-index", *sys.argv[1:]]))
