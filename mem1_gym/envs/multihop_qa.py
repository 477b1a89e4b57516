"""Multi-objective multi-hop retrieval QA: ``MEM1-MultiHopQA-{1,2,3,4,6,8,16}``."""

from __future__ import annotations

import atexit
import threading
from typing import Any, NamedTuple

from mem1_gym import protocol
from mem1_gym.data.tasks import Task
from mem1_gym.envs.qa_base import QAEnvBase
from mem1_gym.envs.qa_common import QAConfig
from mem1_gym.protocol import ActionType, ParsedAction
from mem1_gym.retrieval.base import Doc, RetrievalError, Retriever

_ACTION_NAMES = {ActionType.SEARCH: "search", ActionType.ANSWER: "answer", ActionType.INVALID: "invalid"}


class MultiHopQAEnv(QAEnvBase):
    """N questions answered in one episode by searching a local index, MEM1-style.

    ## Description
    The multi-objective QA task of MEM1 (Zhou, Qu et al., 2025): N questions (single-hop and
    two-hop bridge/comparison) are composed into one task; the agent searches a passage index one
    query per turn and finally answers all N at once. It is the horizon knob of the paper: train on
    N = 2, evaluate on N = 1…16. The embedded default is a generated encyclopedia of invented
    entities (no downloads, no pretraining contamination); real FlashRAG/Search-R1/MEM1 data loads
    by path through the same code.

    ## Action Space
    :class:`~mem1_gym.core.UnicodeText`: any string. A full model turn
    ``<think>state</think><search>query</search>`` or ``<think>state</think><answer>a1; a2</answer>``
    (the first complete action block counts; text after it is ignored), or a bare
    ``search[query]`` / ``answer[a1; a2]``. Anything else is an invalid action (never an exception).

    ## Observation Space
    :class:`~mem1_gym.core.UnicodeText`. After ``reset``: the task prompt (instructions, turn budget,
    the N questions). After a search: exactly the text to append to the model's context,
    ``"\\n\\n<information>[HINT]You have 4 turns left.[/HINT]\\n\\nDoc 1(Title: \\"X\\") ...\\n</information>\\n\\n"``.
    After an invalid action: the same block with a message that restates the expected syntax.
    After the answer: ``""``.

    ## Rewards
    0 on every step but the last (minus ``invalid_action_penalty`` for an invalid turn). On the
    answer: ``reward_scale`` x (EM count, the number of questions answered exactly, 0…N) or x summed
    F1 with ``reward="f1"``. Missing answers score 0 and extra answers are ignored. No answer
    before the budget runs out: 0. With ``evidence_bonus=b`` the last step (answer or truncation)
    also gets ``reward_scale x b x sum(info["evidence"])`` (off by default).

    ## Starting State
    A task drawn uniformly from the split by the seeded generator, or ``options["task_index"]``.
    The same seed gives the same task and the same observations.

    ## Episode End
    * Termination: the agent answers (a valid ``<answer>`` block).
    * Truncation: ``max_turns`` turns were used without an answer.

    ## Information
    Every step: ``turn`` (turns used), ``turns_left``, ``max_turns``, ``task_id``, ``task_index``,
    ``n_questions``, ``action_type`` ("search", "answer", "invalid"; "" after reset),
    ``valid_action``, ``error`` (why the action was invalid or the search failed; ""), ``query``,
    ``has_think``, ``consumed_chars`` (characters of the action the env read, through the action's
    closing tag: trainers should cut the model turn there), ``doc_ids`` (retrieved passage ids),
    ``injected`` (the exact text the env injected into the transcript: the observation).
    On the last step also: ``em`` and ``f1`` (per question, in order), ``em_sum`` (EM count),
    ``f1_sum``, ``n_correct``, ``success`` (all correct), ``answered``, ``n_answers`` (answers given),
    ``answer_count_mismatch``, and, when every question of the task lists its supporting passages
    (the synthetic world does), ``evidence``: per question, the fraction of its supporting passages
    that some search of the episode retrieved (supporting-passage recall: did the agent find what it
    needed, whatever it then answered).

    ## Arguments
    See :class:`~mem1_gym.envs.qa_common.QAConfig`; every field is a ``gym.make`` kwarg, e.g.
    ``gym.make("MEM1-MultiHopQA-4", split="test", retriever="http://127.0.0.1:8013/retrieve")``.
    ``retriever`` defaults to "auto": bm25s on the synthetic world and small corpora, tantivy
    (memory-mapped BM25, a log line says so) for a ``corpus_path`` over 1 GiB such as wiki-18.
    ``prompt_format="mem1"`` (default ``"mem1gym"``) shows MEM1's released checkpoint the text it was
    trained on: the prompt stored in MEM1's parquet (``qa_path=``; MEM1's layout, in our words, for
    tasks without one) and ``"\\n\\n<information>{hint}\\n\\n{docs}</information>\\n\\n"`` with MEM1's
    hints ("...You must answer the question in the next turn.", none on the last turn). Only the text
    changes: rewards, parsing and episode ends stay as above.

    ## Example
    >>> import gymnasium as gym, mem1_gym
    >>> env = gym.make("MEM1-MultiHopQA-2")
    >>> obs, info = env.reset(seed=0)
    >>> info["n_questions"], info["turns_left"]
    (2, 6)
    >>> obs, reward, terminated, truncated, info = env.step("<think>nothing yet</think><search>hello</search>")
    >>> obs.lstrip().startswith("<information>[HINT]You have 5 turns left.[/HINT]"), reward, terminated
    (True, 0.0, False)
    >>> env.step("bad")[4]["valid_action"]
    False
    >>> env.close()
    """

    def _open_backend(self, corpus_path: str | None) -> None:
        if self.config.evidence_bonus and not all(item.hops for task in self.tasks for item in task.items):
            raise ValueError("evidence_bonus needs every question's supporting passages (hops), which these QA "
                             "files do not list; use the synthetic world or evidence_bonus=0")
        self._retriever, self._owns_retriever = _get_retriever(self.config, corpus_path)

    def _close_backend(self) -> None:
        if self._owns_retriever:
            self._retriever.close()

    def _prompt(self, task: Task) -> str:
        return protocol.qa_prompt(task.questions, self.max_turns)

    def _idle_info(self) -> dict:
        return {"query": "", "doc_ids": []}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        self._retrieved: set[str] = set()  # passage ids any search of this episode returned
        return super().reset(seed=seed, options=options)

    @property
    def retriever(self) -> Retriever:
        """The search backend (one instance serves every env of a :class:`MultiHopQAVectorEnv`)."""
        return self._retriever

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        pending = self.parse_step(action)
        found = None if pending.query is None else search_all(self._retriever, [pending.query], self.config)[0]
        return self.finish_step(pending, found)

    # ``step`` in two halves around the search, so that a vector env can send the queries of all its
    # envs in one ``Retriever.search`` call (issue 7, requirement 5).

    def parse_step(self, action: str) -> PendingStep:
        """Count the turn and parse ``action``; the search, if any, is left to the caller."""
        turns_left = self._begin_step()
        parsed = protocol.parse_action(action)
        info = self._info(action_type=_ACTION_NAMES[parsed.type], valid=parsed.valid, error=parsed.error,
                          has_think=parsed.think is not None, consumed=parsed.end)
        info.update(query=parsed.content if parsed.type is ActionType.SEARCH else "", doc_ids=[])
        return PendingStep(parsed, info, turns_left)

    def finish_step(
        self, pending: PendingStep, found: list[Doc] | RetrievalError | None
    ) -> tuple[str, float, bool, bool, dict]:
        """Complete the step of :meth:`parse_step` with the result of its search (None if it has no query)."""
        parsed, info = pending.parsed, pending.info
        if parsed.type is ActionType.ANSWER:
            return self._with_evidence(self._end_step("", self._answer(parsed.content, info), True, info))
        reward = 0.0
        if parsed.type is ActionType.SEARCH:
            body, info["doc_ids"], info["error"] = _render_search(found)
            self._retrieved.update(info["doc_ids"])
        else:
            body = f"{protocol.INVALID_ACTION_MESSAGE} ({parsed.error})"
            reward = -self.config.invalid_action_penalty
        obs = self._observation(pending.turns_left, body)
        return self._with_evidence(self._end_step(obs, reward, False, info))

    def _with_evidence(self, step: tuple[str, float, bool, bool, dict]) -> tuple[str, float, bool, bool, dict]:
        """Add ``info["evidence"]`` (and ``evidence_bonus``'s reward) to the last step of an episode
        whose questions list their supporting passages."""
        obs, reward, terminated, truncated, info = step
        items = self._task.items
        if (terminated or truncated) and all(item.hops for item in items):
            info["evidence"] = [sum(hop.doc_id in self._retrieved for hop in item.hops) / len(item.hops)
                                for item in items]
            reward += self.config.reward_scale * self.config.evidence_bonus * sum(info["evidence"])
        return obs, reward, terminated, truncated, info


class PendingStep(NamedTuple):
    """A step between :meth:`MultiHopQAEnv.parse_step` and :meth:`MultiHopQAEnv.finish_step`."""

    parsed: ParsedAction
    info: dict
    turns_left: int

    @property
    def query(self) -> str | None:
        return self.parsed.content if self.parsed.type is ActionType.SEARCH else None


def search_all(retriever: Retriever, queries: list[str], config: QAConfig) -> list[list[Doc] | RetrievalError]:
    """One batched search; with ``on_retrieval_error="observe"`` a failure is every query's result."""
    try:
        return retriever.search(queries, config.k)
    except RetrievalError as err:
        if config.on_retrieval_error == "raise":
            raise
        return [err] * len(queries)


def _render_search(found: list[Doc] | RetrievalError) -> tuple[str, list[str], str]:
    """The observation body, ``doc_ids`` and ``error`` of one search."""
    if isinstance(found, RetrievalError):
        return f"The search failed: {found}. Try again or answer with what you know.", [], str(found)
    body = protocol.render_docs(found) if found else protocol.EMPTY_RESULTS_MESSAGE
    return body, [d.id for d in found], ""


# In-process indexes are shared by every env of a process (a SyncVectorEnv of 16 envs loads one
# index, not 16) and closed at exit; HTTP clients belong to their env.
_SHARED: dict[tuple, Retriever] = {}
_SHARED_LOCK = threading.Lock()


def _get_retriever(config: QAConfig, corpus_path: str | None) -> tuple[Retriever, bool]:
    from mem1_gym.retrieval import make_retriever

    spec = config.retriever
    if isinstance(spec, Retriever):
        return spec, False
    if isinstance(spec, str) and spec.startswith(("http://", "https://")):
        return make_retriever(spec, timeout=config.retrieval_timeout), True
    key = (spec, corpus_path, config.index_dir)
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = make_retriever(spec, corpus_path=corpus_path, index_dir=config.index_dir)
        return _SHARED[key], False


@atexit.register
def _close_shared() -> None:
    for retriever in _SHARED.values():
        retriever.close()
    _SHARED.clear()
