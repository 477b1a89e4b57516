"""What the QA env families share: task choice, the turn budget, the flat ``info``, scoring, rendering."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from gymnasium.error import ResetNeeded

from mem1_gym import protocol
from mem1_gym.core import UnicodeText
from mem1_gym.data.tasks import Task
from mem1_gym.envs.qa_common import QAConfig, load_tasks
from mem1_gym.scoring import AnswerScore, score_answer_text


class QAEnvBase(gym.Env[str, str]):
    """Base of ``MEM1-MultiHopQA-N`` and ``MEM1-WebQA-N``: a subclass sets ``config_cls`` and
    implements :meth:`_open_backend`, :meth:`_prompt` and its own ``step`` around
    :meth:`_begin_step` / :meth:`_answer` / :meth:`_end_step`, and sets ``family_protocol``.

    ``self.protocol`` is that family protocol bound to the split's task ids: what an agent reads to
    drive the env (:class:`~mem1_gym.protocol.EnvProtocol`)."""

    metadata = {"render_modes": ["ansi"], "render_fps": 1}  # fps only silences check_env: text is not animated
    config_cls: type[QAConfig] = QAConfig
    family_protocol: protocol.EnvProtocol = protocol.QA_PROTOCOL

    def __init__(self, n_questions: int = 1, render_mode: str | None = None, **kwargs: Any) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.config = self.config_cls(n_questions=n_questions, **kwargs)
        self.render_mode = render_mode
        self.observation_space = UnicodeText()
        self.action_space = UnicodeText()
        self.tasks, corpus_path = load_tasks(self.config)
        self.protocol = self.family_protocol.with_tasks([task.id for task in self.tasks])
        self.max_turns = self.config.turn_budget
        self._task: Task | None = None
        self._task_index = -1
        self._turn = 0
        self._done = False
        self._last_obs = ""
        self._closed = False
        self._open_backend(corpus_path)

    # ------------------------------------------------------------------ subclass hooks

    def _open_backend(self, corpus_path: str | None) -> None:
        raise NotImplementedError

    def _prompt(self, task: Task) -> str:
        raise NotImplementedError

    def _idle_info(self) -> dict:
        """The family's own ``info`` keys with their no-action values (reported by ``reset``)."""
        return {}

    def _close_backend(self) -> None:
        """Release what the env owns (called once by :meth:`close`)."""

    # ------------------------------------------------------------------ Gymnasium API

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        index = (options or {}).get("task_index")
        if index is None:
            index = int(self.np_random.integers(len(self.tasks)))
        elif not 0 <= int(index) < len(self.tasks):
            raise ValueError(f"task_index must be in [0, {len(self.tasks)}) for split {self.config.split!r}, got {index}")
        self._task_index, self._task = int(index), self.tasks[int(index)]
        self._turn, self._done = 0, False
        self._last_obs = self._task_prompt(self._task)
        info = self._info(action_type="", valid=True, error="", has_think=False, consumed=0)
        info.update(self._idle_info(), injected=self._last_obs)
        return self._last_obs, info

    def render(self) -> str | None:
        return self._last_obs if self.render_mode == "ansi" else None

    def close(self) -> None:
        if not self._closed:
            self._close_backend()
        self._closed = True

    @property
    def task(self) -> Task | None:
        """The current task (questions, gold aliases, hops): for oracles and evaluation, not agents."""
        return self._task

    # ------------------------------------------------------------------ step pieces

    def _task_prompt(self, task: Task) -> str:
        """The first observation: the family's prompt, or with ``prompt_format="mem1"`` the prompt
        stored with the task (MEM1's parquet) and MEM1's layout when it has none."""
        if self.config.prompt_format == "mem1":
            return task.prompt if task.prompt is not None else protocol.mem1_prompt(task.questions)
        return self._prompt(task)

    def _observation(self, turns_left: int, body: str) -> str:
        """A search or invalid step's observation, its turns-left hint included, in the env's ``prompt_format``."""
        return protocol.observation_text(turns_left, body, self.config.prompt_format)

    def _begin_step(self) -> int:
        """Count the turn; returns the turns left after it."""
        if self._task is None or self._done:
            raise ResetNeeded("call reset() before step(), and again after an episode ends")
        self._turn += 1
        return self.max_turns - self._turn

    def _answer(self, answer_text: str, info: dict) -> float:
        """Score an answer block into ``info``; returns the terminal reward."""
        score = score_answer_text(answer_text, self._task.golds)
        info.update(final_info(score, answered=True))
        return self.config.reward_scale * (score.em_sum if self.config.reward == "em" else score.f1_sum)

    def _end_step(self, obs: str, reward: float, terminated: bool, info: dict) -> tuple[str, float, bool, bool, dict]:
        """Truncate on the turn budget, record the injected text, and return the step tuple."""
        truncated = not terminated and self._turn >= self.max_turns
        if truncated:
            info.update(final_info(score_answer_text("", self._task.golds), answered=False))
        self._done = terminated or truncated
        self._last_obs = obs
        info["injected"] = obs
        return obs, float(reward), terminated, truncated, info

    def _info(self, *, action_type: str, valid: bool, error: str, has_think: bool, consumed: int) -> dict:
        """The keys every step of every QA family reports (subclasses add their own)."""
        return {
            "turn": self._turn,
            "turns_left": self.max_turns - self._turn,
            "max_turns": self.max_turns,
            "task_id": self._task.id,
            "task_index": self._task_index,
            "n_questions": len(self._task),
            "action_type": action_type,
            "valid_action": valid,
            "error": error,
            "has_think": has_think,
            "consumed_chars": consumed,
        }


def final_info(score: AnswerScore, answered: bool) -> dict:
    """The keys of the last step, one definition for every QA family."""
    return {
        "em": list(score.em),
        "f1": list(score.f1),
        "em_sum": score.em_sum,
        "f1_sum": score.f1_sum,
        "n_correct": int(score.em_sum),
        "success": answered and score.success,
        "answered": answered,
        "n_answers": score.n_given if answered else 0,
        "answer_count_mismatch": answered and score.count_mismatch,
    }
