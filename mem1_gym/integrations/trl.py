"""TRL ``GRPOTrainer`` over mem1-gym envs, through ``rollout_func`` (issue 22, requirement 1).

Why ``rollout_func`` and not ``environment_factory``: ``environment_factory`` exposes env methods as
tools, so the model must write tool calls that its chat template parses (transformers >= 5.2) and
every family would need a tool vocabulary of its own; our envs already speak a tag protocol
(``<search>q</search>``, ``<answer>...</answer>``, WebShop's ``<answer>click[...]</answer>``) that
any causal LM, chat template or not, can be trained on. ``rollout_func`` hands us token ids in and
out, so the model plays the protocol as is, and ``env_mask`` takes env tokens out of the loss.

What the trainer trains on, per dataset row (one episode of one task)::

    prompt_ids      = the first observation (one user turn, assistant opened, if the tokenizer has a chat template)
    completion_ids  = turn 1 | observation 1 | turn 2 | observation 2 | ... | last turn
    env_mask        =  1...1 |    0...0      |  1...1 |    0...0      | ... |  1...1

The context is **append-only**: turn k is sampled from the prompt and everything before it, which is
what TRL's one causal forward pass over ``prompt + completion`` re-scores. MEM1's bounded context
(task prompt + latest internal state + latest observation) cannot be expressed: each of its turns is
sampled from a context that is not a prefix of one sequence, so it needs one training sample per
turn, and ``rollout_func`` must return exactly one sample per prompt (GRPO groups are fixed-size).

The task comes from the prompt: TRL passes ``rollout_func`` only the prompts, so :class:`EnvRollout`
maps each prompt of :func:`task_dataset` back to its row (env id, split, task index). The episode's
reward (the sum of the env's rewards) reaches the reward function :func:`env_reward` as the
``episode_reward`` column.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mem1_gym.integrations.tasks import TextEpisode, make_env, task_rows

Generate = Callable[[Sequence[Sequence[int]], tuple[str, ...], int], list[list[int]]]
"""``generate(contexts, stop_strings, max_new_tokens) -> new ids per context`` (one model turn each)."""


def task_dataset(env_id: str, split: str = "train", *, limit: int | None = None,
                 env_kwargs: Mapping[str, Any] | None = None) -> Any:
    """A ``datasets.Dataset`` of the tasks of ``split``: the task row columns plus "prompt", the task's
    first observation (what the model reads before its first turn)."""
    from datasets import Dataset

    rows = task_rows(env_id, split, limit=limit, env_kwargs=env_kwargs)
    episode = TextEpisode(make_env(env_id, split, **dict(env_kwargs or {})))
    try:
        prompts = [episode.reset(row["task_index"]) for row in rows]
    finally:
        episode.close()
    return Dataset.from_list([{"prompt": prompt, **row} for prompt, row in zip(prompts, rows, strict=True)])


def env_reward(completions: list[Any], episode_reward: list[float] | None = None, **_: Any) -> list[float]:
    """GRPO reward function: each completion's episode reward, as the env gave it to :class:`EnvRollout`."""
    if episode_reward is None:
        raise ValueError("env_reward reads the 'episode_reward' column that EnvRollout returns; pass "
                         "rollout_func=EnvRollout(dataset) to GRPOTrainer")
    return [float(reward) for reward in episode_reward]


@dataclass(frozen=True)
class RolloutConfig:
    """How :class:`EnvRollout` plays episodes."""

    max_turn_tokens: int = 512
    """Most tokens the model generates in one turn (the whole completion is capped by the trainer's
    ``max_completion_length``, env tokens included, since the trainer re-scores all of them)."""
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    """Keyword arguments of ``gym.make`` (as given to :func:`task_dataset`)."""

    def __post_init__(self) -> None:
        if self.max_turn_tokens < 1:
            raise ValueError(f"max_turn_tokens must be >= 1, got {self.max_turn_tokens}")


@dataclass
class Rollout:
    """One episode as TRL trains on it."""

    prompt_ids: list[int]
    completion_ids: list[int] = field(default_factory=list)
    """Model turns and the env observations between them, in order."""
    env_mask: list[int] = field(default_factory=list)
    """Per completion token: 1 if the model sampled it, 0 if the env wrote it (out of the loss)."""


class EnvRollout:
    """``GRPOTrainer(rollout_func=EnvRollout(dataset), reward_funcs=env_reward)``: plays one episode per prompt.

    ``dataset`` is (a selection of) :func:`task_dataset`'s rows: its prompts identify the tasks. Envs
    are kept open between calls (one per concurrent episode) and closed by :meth:`close`.
    """

    def __init__(self, dataset: Any, config: RolloutConfig = RolloutConfig()) -> None:
        self.config = config
        self.tasks: dict[str, tuple[str, str, int]] = {}
        for row in dataset:
            task = (row["env_id"], row["split"], int(row["task_index"]))
            if self.tasks.setdefault(row["prompt"], task) != task:
                # rollout_func sees only the prompt, so two tasks with one prompt are indistinguishable.
                raise ValueError(f"tasks {self.tasks[row['prompt']]} and {task} have the same prompt, so the rollout "
                                 f"cannot tell which one a prompt is; drop one of them from the dataset")
        self._envs: dict[tuple[str, str], list[TextEpisode]] = {}

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, Any]:
        """TRL's ``rollout_func``: one episode per prompt, generated with the trainer's model."""
        if trainer.use_vllm:
            raise ValueError("EnvRollout generates with the trainer's own model (transformers generate): it needs "
                             "use_vllm=False in GRPOConfig")
        tokenizer = getattr(trainer.processing_class, "tokenizer", trainer.processing_class)
        rollouts, rewards = self.play(prompts, model_generate(trainer, tokenizer), tokenizer,
                                      trainer.args.max_completion_length)
        return {
            "prompt_ids": [r.prompt_ids for r in rollouts],
            "completion_ids": [r.completion_ids for r in rollouts],
            "logprobs": None,  # as TRL's own transformers path: the trainer scores the sampled ids itself
            "env_mask": [r.env_mask for r in rollouts],
            "episode_reward": rewards,
        }

    def play(self, prompts: Sequence[Any], generate: Generate, tokenizer: Any,
             max_completion_tokens: int) -> tuple[list[Rollout], list[float]]:
        """Play one episode per prompt, all turns batched across the episodes still running."""
        episodes = self._episodes([self._task(prompt) for prompt in prompts])
        rollouts = [Rollout(encode_prompt(tokenizer, episode.observations[0])) for episode in episodes]
        running = list(range(len(episodes)))
        while running:
            going_on = []
            for stops, group in _by_stops(running, episodes).items():
                budget = min(self.config.max_turn_tokens,
                             min(max_completion_tokens - len(rollouts[i].completion_ids) for i in group))
                contexts = [rollouts[i].prompt_ids + rollouts[i].completion_ids for i in group]
                for i, turn in zip(group, generate(contexts, stops, budget), strict=True):
                    if _step(episodes[i], rollouts[i], turn, tokenizer, max_completion_tokens):
                        going_on.append(i)
            running = sorted(going_on)
        return rollouts, [episode.reward for episode in episodes]

    def close(self) -> None:
        """Close every env the rollout opened."""
        for pool in self._envs.values():
            for episode in pool:
                episode.close()
        self._envs.clear()

    def _task(self, prompt: Any) -> tuple[str, str, int]:
        if not isinstance(prompt, str):
            raise ValueError(f"EnvRollout needs text prompts (the 'prompt' column of task_dataset), got "
                             f"{type(prompt).__name__}; build the dataset with mem1_gym.integrations.trl.task_dataset")
        if prompt not in self.tasks:
            raise ValueError("a prompt is not among the dataset rows EnvRollout was built with; pass it the same "
                             f"dataset as GRPOTrainer's train_dataset (prompt starts {prompt[:80]!r})")
        return self.tasks[prompt]

    def _episodes(self, tasks: Sequence[tuple[str, str, int]]) -> list[TextEpisode]:
        """One reset episode per task, reusing the envs of earlier calls."""
        used: dict[tuple[str, str], int] = {}
        episodes = []
        for env_id, split, index in tasks:
            pool = self._envs.setdefault((env_id, split), [])
            n = used.get((env_id, split), 0)
            if n == len(pool):
                pool.append(TextEpisode(make_env(env_id, split, **dict(self.config.env_kwargs))))
            used[(env_id, split)] = n + 1
            pool[n].reset(index)
            episodes.append(pool[n])
        return episodes


def _step(episode: TextEpisode, rollout: Rollout, turn: list[int], tokenizer: Any, max_tokens: int) -> bool:
    """Append a model turn and play it; append the observation and return True if the episode goes on and
    the observation leaves room for another turn (else the episode ends here: its reward is what it has)."""
    rollout.completion_ids += turn
    rollout.env_mask += [1] * len(turn)
    observation = episode.step(tokenizer.decode(turn, skip_special_tokens=True))
    if episode.done:
        return False
    observation_ids = tokenizer.encode(observation, add_special_tokens=False)
    if len(rollout.completion_ids) + len(observation_ids) >= max_tokens:
        return False
    rollout.completion_ids += observation_ids
    rollout.env_mask += [0] * len(observation_ids)
    return True


def _by_stops(running: Sequence[int], episodes: Sequence[TextEpisode]) -> dict[tuple[str, ...], list[int]]:
    """Running episodes grouped by the stop strings of their next turn (the last turn only stops at an answer)."""
    groups: dict[tuple[str, ...], list[int]] = {}
    for i in running:
        episode = episodes[i]
        # every env reports turns_left; one that did not would never be on its last turn
        groups.setdefault(episode.protocol.stops(int(episode.info.get("turns_left", 2))), []).append(i)
    return groups


def encode_prompt(tokenizer: Any, text: str) -> list[int]:
    """The first observation as the model reads it: one user message with the assistant turn opened when
    the tokenizer has a chat template (later turns continue that assistant message, as MEM1 does), else raw."""
    if not getattr(tokenizer, "chat_template", None):
        return tokenizer.encode(text, add_special_tokens=False)
    ids = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                        tokenize=True, return_dict=False)
    return list(ids)


def model_generate(trainer: Any, tokenizer: Any) -> Generate:
    """One model turn per context with the trainer's model and generation settings (sampling, temperature)."""
    import torch
    from trl.models.utils import unwrap_model_for_generation

    eos = set(trainer.eos_token_ids)
    pad = tokenizer.pad_token_id

    def generate(contexts: Sequence[Sequence[int]], stops: tuple[str, ...], max_new_tokens: int) -> list[list[int]]:
        width = max(len(ids) for ids in contexts)
        input_ids = torch.tensor([[pad] * (width - len(ids)) + list(ids) for ids in contexts])  # (B, T) left-padded
        attention_mask = (torch.arange(width) >= torch.tensor([[width - len(ids)] for ids in contexts])).long()
        config = copy.deepcopy(trainer.generation_config)
        config.max_new_tokens, config.stop_strings = max_new_tokens, list(stops) or None
        with (unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator,
                                          gather_deepspeed3_params=trainer.args.ds3_gather_for_generation,
                                          generation_kwargs=trainer.generation_kwargs,
                                          gradient_checkpointing_kwargs=trainer.args.gradient_checkpointing_kwargs)
              as model, torch.no_grad()):
            device = next(model.parameters()).device
            out = model.generate(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                                 generation_config=config, tokenizer=tokenizer)
        return [sampled_turn(row.tolist(), eos, pad, tokenizer, stops) for row in out[:, width:].cpu()]

    return generate


def sampled_turn(ids: list[int], eos: set[int], pad: int | None, tokenizer: Any, stops: Sequence[str]) -> list[int]:
    """The ids the model sampled in one batched turn, without the padding ``generate`` adds after a row ends.

    A row ends at its first EOS (kept: the model sampled it) or at a stop string, after which ``generate``
    fills it with ``pad``. When ``pad`` is an EOS id the first one is padding only if the text before it
    holds a stop string (a row stops at the token that completes one, which may carry text after it).
    """
    for k, token in enumerate(ids):
        if token == pad and (token not in eos or _has_stop(tokenizer.decode(ids[:k]), stops)):
            return ids[:k]
        if token in eos:
            return ids[: k + 1]
    return ids


def _has_stop(text: str, stops: Sequence[str]) -> bool:
    return any(stop in text for stop in stops)
