"""Configuration and task loading shared by the QA families (MultiHopQA, WebQA)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from mem1_gym.data.tasks import Composition, Task, compose
from mem1_gym.protocol import PROMPT_FORMATS

SPLITS = ("train", "validation", "test")
# Names real data sets use for our splits (FlashRAG ships "dev" where we say "validation").
_SPLIT_FILE_STEMS = {"train": ("train",), "validation": ("validation", "dev", "val"), "test": ("test",)}
_QA_SUFFIXES = (".jsonl", ".json", ".parquet")


def default_max_turns(n_questions: int) -> int:
    """Turn budget: 6 for N <= 4 (the paper's setting), 2N + 4 beyond (20 at N = 8, as the paper's
    harder tasks), so that every question of a larger task can still be searched twice."""
    return 6 if n_questions <= 4 else 2 * n_questions + 4


@dataclass(frozen=True)
class QAConfig:
    """Everything that defines a multi-objective QA environment (all ``gym.make`` kwargs)."""

    n_questions: int = 1
    """Questions composed into one episode (the horizon knob N)."""
    split: str = "train"
    """Which questions: "train", "validation" or "test" (disjoint)."""
    max_turns: int | None = None
    """Turn budget; None -> :func:`default_max_turns` (6 for N <= 4)."""
    k: int = 3
    """Passages returned per search (MEM1 and Search-R1 use 3)."""
    retriever: Any = "auto"
    """A backend name ("bm25s", "tantivy", "pyserini", "faiss-flat", "faiss-hnsw"), a Search-R1
    ``/retrieve`` URL ("http://127.0.0.1:8013/retrieve"), or a ``Retriever`` instance. "auto" becomes
    "bm25s" for the synthetic world and small corpora, "tantivy" (memory-mapped BM25, with a log
    line) for a ``corpus_path`` over 1 GiB (``mem1_gym.retrieval.build.AUTO_TANTIVY_BYTES``)."""
    corpus_path: str | None = None
    """Search-R1 corpus jsonl; None -> the embedded synthetic world."""
    qa_path: str | Mapping[str, str] | None = None
    """FlashRAG QA file(s) or a MEM1 multi-objective parquet: one file, a directory holding
    ``train``/``dev``/``test`` files, or a {split: path} mapping. None -> the synthetic world."""
    index_dir: str | None = None
    """Where the index lives or is built; None -> a cache directory keyed by the corpus."""
    world: Any = None
    """A ``WorldConfig`` for the synthetic world (None -> the default world)."""
    task_seed: int = 0
    """Seed of the composition of questions into tasks (not of the episode sampling)."""
    mix_sources: bool = True
    """Mix questions from different sources in one task (False keeps one source per task)."""
    reward: str = "em"
    """Terminal reward: "em" (EM count, 0..N, the paper's) or "f1" (summed F1)."""
    reward_scale: float = 1.0
    """Multiplies the terminal reward (1/N gives a per-objective mean)."""
    invalid_action_penalty: float = 0.0
    """Subtracted on an unparsable turn (0: the paper found format penalties hurt)."""
    evidence_bonus: float = 0.0
    """``MEM1-MultiHopQA`` on hop-annotated data only: the last step's reward also gets
    ``reward_scale x evidence_bonus x sum(info["evidence"])``, credit for retrieving the questions'
    supporting passages (shaping for models too weak to answer yet; 0, the paper's, rewards only answers)."""
    retrieval_timeout: float = 10.0
    """Seconds before a search through an HTTP retriever gives up."""
    on_retrieval_error: str = "observe"
    """"observe": a failed search becomes an observation + ``info["error"]``; "raise": an exception."""
    prompt_format: str = "mem1gym"
    """"mem1gym" (ours) or "mem1": the text MEM1's checkpoint was trained on: the prompt stored in
    MEM1's parquet, verbatim (MEM1's layout, in our words, when the tasks have none), MEM1's hint
    wording and ``<information>`` block (no newline before ``</information>``). Only the text changes."""

    def __post_init__(self) -> None:
        if self.retriever == "auto":
            from mem1_gym.retrieval.build import choose_backend

            object.__setattr__(self, "retriever", choose_backend(self.corpus_path))
        if self.n_questions < 1:
            raise ValueError(f"n_questions must be >= 1, got {self.n_questions}")
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        if self.max_turns is not None and self.max_turns < 1:
            raise ValueError(f"max_turns must be >= 1 (or None for the default), got {self.max_turns}")
        if self.k < 1:
            raise ValueError(f"k (passages per search) must be >= 1, got {self.k}")
        if self.reward not in ("em", "f1"):
            raise ValueError(f"reward must be 'em' or 'f1', got {self.reward!r}")
        if self.on_retrieval_error not in ("observe", "raise"):
            raise ValueError(f"on_retrieval_error must be 'observe' or 'raise', got {self.on_retrieval_error!r}")
        if self.retrieval_timeout <= 0:
            raise ValueError(f"retrieval_timeout must be > 0 seconds, got {self.retrieval_timeout}")
        if self.evidence_bonus < 0:
            raise ValueError(f"evidence_bonus must be >= 0, got {self.evidence_bonus}")
        if self.prompt_format not in PROMPT_FORMATS:
            raise ValueError(
                f"prompt_format must be one of {PROMPT_FORMATS}, got {self.prompt_format!r}; use 'mem1' to show "
                "MEM1's released checkpoint the prompt and observations it was trained on"
            )
        self._check_questions_have_a_corpus()

    def _check_questions_have_a_corpus(self) -> None:
        """Real questions need a real corpus (families that search elsewhere override this)."""
        if self.qa_path is not None and self.corpus_path is None and not _is_url(self.retriever):
            raise ValueError(
                "qa_path was given without corpus_path: the questions would be searched in the synthetic "
                "world. Pass corpus_path='wiki-18.jsonl' (or your corpus), or retriever='http://HOST:PORT/retrieve'."
            )

    @property
    def turn_budget(self) -> int:
        return self.max_turns if self.max_turns is not None else default_max_turns(self.n_questions)


def _is_url(spec: Any) -> bool:
    return isinstance(spec, str) and spec.startswith(("http://", "https://"))


def resolve_qa_file(qa_path: str | Mapping[str, str], split: str) -> Path:
    """The file that holds ``split``: a mapping entry, a file, or ``<dir>/{train,dev,test}.*``."""
    if isinstance(qa_path, Mapping):
        if split not in qa_path:
            raise ValueError(f"qa_path has no entry for split {split!r}; its keys are {sorted(qa_path)}")
        path = Path(qa_path[split])
    else:
        path = Path(qa_path)
        if path.is_dir():
            candidates = [path / f"{stem}{suffix}" for stem in _SPLIT_FILE_STEMS[split] for suffix in _QA_SUFFIXES]
            found = [c for c in candidates if c.is_file()]
            if not found:
                names = ", ".join(c.name for c in candidates)
                raise FileNotFoundError(f"no QA file for split {split!r} in {path} (looked for {names})")
            path = found[0]
    if not path.is_file():
        raise FileNotFoundError(f"QA file not found at {path}; pass qa_path= a FlashRAG jsonl/parquet or a MEM1 parquet")
    return path


def _is_mem1_parquet(path: str) -> bool:
    """MEM1's multi-objective parquet has a ``reward_model`` column and no ``question`` column
    (Search-R1's single-question parquet has both, and is read as FlashRAG rows)."""
    if not path.endswith(".parquet"):
        return False
    import pyarrow.parquet as pq

    names = pq.read_schema(path).names
    return "reward_model" in names and "question" not in names


@functools.lru_cache(maxsize=32)
def _tasks_from_file(path: str, mtime: float, n: int, seed: int, mix: bool, split: str) -> tuple[Task, ...]:
    from mem1_gym.data.formats import load_mem1_parquet, load_qa

    if _is_mem1_parquet(path):
        # MEM1's parquet rows are tasks already composed; their N must match the env's.
        tasks = load_mem1_parquet(path)
        wrong = [t.id for t in tasks if len(t) != n]
        if wrong:
            raise ValueError(
                f"{path} holds tasks of {len(tasks[0])} questions but the env composes {n}; "
                f"use the MEM1-MultiHopQA-{len(tasks[0])} id or pass the FlashRAG source files instead"
            )
        return tuple(tasks)
    items = load_qa(path)
    return tuple(compose(items, Composition(n=n, seed=seed, mix_sources=mix, prefix=split)))


def load_tasks(config: QAConfig) -> tuple[tuple[Task, ...], str | None]:
    """The tasks of ``config.split`` and the corpus they are searched in (None for a URL retriever)."""
    if config.qa_path is None:
        from mem1_gym.data.synthetic import WorldConfig, ensure_world

        world = ensure_world(config.world or WorldConfig())
        qa_file, corpus = world.qa_paths[config.split], config.corpus_path or str(world.corpus_path)
    else:
        qa_file, corpus = resolve_qa_file(config.qa_path, config.split), config.corpus_path
    tasks = _tasks_from_file(
        str(qa_file), qa_file.stat().st_mtime, config.n_questions, config.task_seed, config.mix_sources, config.split
    )
    if not tasks:
        raise ValueError(
            f"{qa_file} has fewer than {config.n_questions} questions for split {config.split!r}: no task can be composed"
        )
    return tasks, corpus
