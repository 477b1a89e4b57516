"""The MEM1 learner: PPO (value head + token-level GAE) or GRPO/RLOO (group baselines), CleanRL style.

One iteration, top to bottom in :func:`train`:

1. **collect**: play ``tasks_per_iteration × group_size`` episodes with the *current* weights
   (rollout backends below): each group is one task drawn from the env protocol's task list and
   played ``group_size`` times with distinct reset seeds; its id travels in the records;
2. **prepare**: build exact samples of the chosen layout, recompute old log-probs and values
   (and reference log-probs when ``kl_coef > 0``) without gradients, then advantages: GAE over each
   trajectory's sampled tokens with the outcome reward on the last one (an episode cut by the turn
   budget is terminal: no bootstrap, :mod:`mem1_agent.train.advantages` says why), or
   ``reward − group baseline`` broadcast to every token, never re-centred across groups;
3. **update**: ``epochs`` passes of mini-batches, each the token-mean of micro-batches with
   gradient accumulation, AdamW with warm-up and gradient clipping;
4. **log** (``rollout/…`` and ``train/…`` scalars: :mod:`mem1_agent.train.logger`) and **checkpoint**
   (:mod:`mem1_agent.train.checkpoint`, resumable).

The same loop runs on every rank of ``torchrun -m mem1_agent.train`` (:mod:`mem1_agent.train.distributed`):
each rank plays its share of whole task groups, FSDP2 shards the update, rank 0 logs the ranks'
combined scalars and checkpoints go through :mod:`mem1_agent.train.dist_checkpoint`.

Rollout backends (``rollout_backend``; issue 4, requirement 5), with the same records either way:

* ``transformers``: :meth:`TransformersPolicy.from_model` on the learner's own module, CPU or CUDA
  (bf16 autocast there), gathered whole on each rank for the collection; all of a rank's live
  episodes in one batch per turn, decoded with the KV cache;
* ``vllm`` (CUDA only): one :class:`~mem1_agent.policies.vllm_backend.VLLMRolloutEngine` per rank,
  colocated on the rank's GPU and started without weights; at every iteration, before collecting,
  the learner's weights are streamed into it tensor by tensor (each FSDP2 parameter all-gathered
  alone: the whole model never sits on one rank) and its prefix cache is reset. **Written against
  vLLM's documented internals but never run on a GPU** (none was available); the sync wiring is
  tested with stand-in engines, at 1 and 2 ranks;
* ``auto``: vllm when the device is CUDA and ``import vllm`` works, else transformers.

Precision: vLLM samples in its engine dtype (bf16 by default) while the learner holds fp32 weights
(bf16 autocast on CUDA). The sampled log-probs stored in the records are never used for the
update: :func:`prepare` recomputes the old log-probs (and values) with the learner's own forward,
so PPO ratios are exact with respect to the learner. What is not corrected is the small gap between
the engine's sampling distribution and the learner's (the rollouts are slightly off-policy). The
recorded log-probs are comparable across backends because training samples at temperature 1 with
top-p 1, where vLLM's raw log-probs and the tempered ones coincide.
"""

from __future__ import annotations

import copy
import functools
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Any

import torch

from mem1_agent.context import make_strategy
from mem1_agent.policies.base import SamplingConfig, TokenCodec
from mem1_agent.policies.hf import HFConfig, TransformersPolicy
from mem1_agent.policies.vllm_backend import (
    TRAIN_ALTERNATIVE,
    VLLMRolloutEngine,
    require_vllm,
)
from mem1_agent.records import Trajectory
from mem1_agent.rollout import EpisodeSpec, RolloutConfig, rollout
from mem1_agent.train import dist_checkpoint, distributed, lora, precision
from mem1_agent.train.advantages import trajectory_advantages
from mem1_agent.train.device import autocast, to_device
from mem1_agent.train.layouts import TurnTokens, collate, per_turn_samples, prefix_cache_sample
from mem1_agent.train.logger import Logger, log
from mem1_agent.train.memory_plan import ALL_LINEAR
from mem1_agent.train.optim import adamw_with_warmup, clipped_step
from mem1_agent.train.ppo import (
    PPOConfig,
    ValueHead,
    explained_variance,
    forward,
    ppo_loss,
)
from mem1_agent.train.precision import PRECISIONS
from mem1_agent.train.samples import (
    LAYOUTS,
    Prepared,
    Samples,
    build_samples,
    gather_from_batch,
    scatter_to_batch,
    to_sample_view,
    to_trajectory_view,
    token_rewards,
    trajectory_mask,
)
from mem1_gym.protocol import env_protocol

ROLLOUT_BACKENDS = ("auto", "transformers", "vllm")
REFERENCES = ("copy", "lora-base", "none")


@dataclass(frozen=True)
class LearnerConfig:
    """One training run."""

    env_id: str = "MEM1-MultiHopQA-2"
    """Env to train on."""
    split: str = "train"
    """Split the training tasks are drawn from."""
    context: str = "mem1"
    """Context strategy of the rollouts (mem1, full, truncate:K)."""
    iterations: int = 10
    """Collect/update iterations."""
    tasks_per_iteration: int = 8
    """Distinct tasks per iteration."""
    group_size: int = 1
    """Rollouts per task (GRPO/RLOO need >= 2 to have a baseline)."""
    concurrency: int = 8
    """Episodes played in lock-step (the sampling batch)."""
    temperature: float = 1.0
    """Sampling temperature of the rollouts (the recomputed log-probs assume 1)."""
    max_new_tokens: int = 64
    """Most tokens per turn."""
    layout: str = "prefix-cache"
    """Training samples (all exact, :mod:`mem1_agent.train.layouts`): "prefix-cache" (the task prompt
    computed once per trajectory, attention linear in turns: fastest), "stitched" (one masked sequence
    per trajectory) or "per-turn" (one sample per turn)."""
    seed: int = 0
    """Seed of task draws and sampling."""
    device: str = "auto"
    """"auto" (CUDA + bf16 autocast when available), "cpu" or "cuda"."""
    out: Path | None = None
    """Checkpoint folder (``save_pretrained`` layout); None: no checkpoint."""
    save_every: int = 10
    """Checkpoint every this many iterations, and always at the end (0: only at the end). A killed run resumes
    from its last checkpoint, so 10 loses at most 10 iterations of work while keeping saves (weights plus
    AdamW state: about 12 bytes per parameter written) rare."""
    tensorboard: bool = True
    """Write TensorBoard scalars to ``<out>-tb/`` when ``tensorboard`` is installed."""
    wandb_project: str | None = None
    """Also log to this wandb project (wandb imported only then)."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra ``gym.make`` kwargs."""
    rollout_backend: str = "auto"
    """"transformers", "vllm" (CUDA, weights synced every iteration) or "auto" (vllm on CUDA when installed)."""
    max_minutes: float | None = None
    """Wall-clock cap: stop (and checkpoint) after the iteration that crosses it; None: no cap."""
    vllm_gpu_memory_utilization: float = 0.3
    """Share of its GPU each rank's vLLM engine may take; the rank's learner shards and optimizer share the rest."""
    vllm_engine_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra ``vllm.LLM`` kwargs (e.g. max_model_len, enforce_eager, dtype; enable_sleep_mode: free the engine's
    GPU memory during the update)."""
    precision: str = "fp32"
    """Training dtypes (:mod:`mem1_agent.train.precision`): "fp32" (fp32 weights, gradients and AdamW state,
    bf16 autocast on CUDA), "bf16-mixed" (FSDP2 ``MixedPrecisionPolicy`` at any world size: bf16 compute,
    fp32 master weights, gradients and optimizer) or "bf16" (all bf16: least memory, small updates lost)."""
    gradient_checkpointing: bool = False
    """Recompute each decoder layer in backward (keeps only layer inputs: :mod:`mem1_agent.train.precision`)."""
    lora_rank: int = 0
    """Rank of LoRA adapters through ``peft`` (0: full fine-tuning); only the adapters train."""
    lora_alpha: float = 16.0
    """LoRA scaling numerator (the update is scaled by lora_alpha / lora_rank)."""
    lora_targets: tuple[str, ...] = ALL_LINEAR
    """Linear layers that get adapters (names of a Qwen2/Llama decoder layer)."""
    reference: str = "copy"
    """The KL reference when ``ppo.kl_coef > 0``: "copy" (a frozen copy of the initial weights, sharded and
    stored like the policy), "lora-base" (the base model with the adapters disabled: no second copy; needs
    lora_rank > 0) or "none" (no reference: needs kl_coef 0)."""
    ppo: PPOConfig = PPOConfig()
    """The update's hyper-parameters (algo, clip, KL, lr, batches, ...)."""

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.ppo.algo in ("grpo", "rloo") and self.group_size < 2:
            raise ValueError(f"--algo {self.ppo.algo} compares rollouts of the same task: set group_size >= 2 "
                             f"(got {self.group_size}), or use --algo ppo")
        if min(self.iterations, self.tasks_per_iteration, self.group_size, self.concurrency) < 1:
            raise ValueError("iterations, tasks_per_iteration, group_size and concurrency must be >= 1")
        if self.temperature != 1.0:
            raise ValueError("temperature must be 1: PPO's old log-probs are recomputed at temperature 1")
        make_strategy(self.context)
        if self.rollout_backend not in ROLLOUT_BACKENDS:
            raise ValueError(f"rollout_backend must be one of {ROLLOUT_BACKENDS}, got {self.rollout_backend!r}")
        if self.save_every < 0:
            raise ValueError(f"save_every must be >= 0 (0: checkpoint only at the end), got {self.save_every}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ValueError(f"max_minutes must be > 0 (or None for no cap), got {self.max_minutes}")
        self._check_memory_options()
        if not 0 < self.vllm_gpu_memory_utilization <= 1:
            raise ValueError(f"vllm_gpu_memory_utilization must be in (0, 1], got {self.vllm_gpu_memory_utilization}")
        if self.rollout_backend == "vllm":
            if self.device == "cpu":
                raise ValueError("rollout_backend 'vllm' needs a CUDA GPU; use --rollout-backend transformers "
                                 "with --device cpu")
            require_vllm(TRAIN_ALTERNATIVE)  # fails here, before any model, engine or env is built

    def _check_memory_options(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.lora_rank < 0 or self.lora_alpha <= 0:
            raise ValueError(f"need lora_rank >= 0 (0: no LoRA) and lora_alpha > 0, got {self.lora_rank}, "
                             f"{self.lora_alpha}")
        unknown = sorted(set(self.lora_targets) - set(ALL_LINEAR))
        if unknown or not self.lora_targets:
            raise ValueError(f"lora_targets must be a non-empty subset of {ALL_LINEAR}, got {self.lora_targets}")
        if self.reference not in REFERENCES:
            raise ValueError(f"reference must be one of {REFERENCES}, got {self.reference!r}")
        if self.reference == "lora-base" and self.lora_rank == 0:
            raise ValueError("reference 'lora-base' is the base under LoRA adapters: set lora_rank > 0, "
                             "or use reference 'copy'")
        if self.reference == "none" and self.ppo.kl_coef > 0:
            raise ValueError(f"ppo.kl_coef {self.ppo.kl_coef} needs a KL reference: set reference 'copy' (or "
                             "'lora-base' with LoRA), or ppo.kl_coef 0")


def resolve_rollout_backend(name: str, device: torch.device) -> str:
    """"auto" -> "vllm" on CUDA when ``import vllm`` works, else "transformers"; others are returned as given."""
    if name != "auto":
        return name
    if device.type != "cuda":
        return "transformers"
    try:
        require_vllm(TRAIN_ALTERNATIVE)
    except RuntimeError:
        return "transformers"
    return "vllm"


def make_rollout_engine(model: torch.nn.Module, codec: TokenCodec, config: LearnerConfig,
                        device: torch.device) -> VLLMRolloutEngine | None:
    """This rank's vLLM engine, colocated on its GPU (None: transformers rollouts on the learner's module)."""
    if resolve_rollout_backend(config.rollout_backend, device) != "vllm":
        return None
    if device.type != "cuda":
        raise ValueError(f"rollout_backend 'vllm' needs a CUDA device, got {device}; "
                         "use --rollout-backend transformers")
    # One engine per rank on the rank's own GPU; its own seed, as the transformers backend's (see collect).
    return VLLMRolloutEngine(model, codec, seed=config.seed + 1_000_003 * distributed.rank(),
                             gpu_memory_utilization=config.vllm_gpu_memory_utilization,
                             world_size=distributed.world_size(), **config.vllm_engine_kwargs)


@dataclass
class State:
    """Everything a checkpoint restores."""

    model: torch.nn.Module  # the policy: a peft model when lora_rank > 0
    value_head: ValueHead | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    iteration: int = 0
    reference: torch.nn.Module | None = None


def make_state(model: torch.nn.Module, config: LearnerConfig, device: torch.device) -> State:
    """The policy (``model``, wrapped with LoRA adapters when ``lora_rank > 0``), value head, reference and
    optimizer of a run, in the run's dtypes (:mod:`mem1_agent.train.precision`) and sharded (FSDP2)."""
    model.to(device)
    model = lora.wrap(model, config)
    precision.cast(model, config.precision)
    value_head = ValueHead(model.config.hidden_size).to(device) if config.ppo.algo == "ppo" else None
    # The frozen reference is the model passed in (before a resumed checkpoint is loaded over it): a copy
    # stored like the policy's frozen weights, or the LoRA base itself.
    reference = None
    if config.ppo.kl_coef > 0 and config.reference == "copy":
        reference = copy.deepcopy(model).eval().requires_grad_(False)
        precision.cast(reference, config.precision)
    if config.gradient_checkpointing:  # the policy only: the reference never runs backward
        precision.enable_gradient_checkpointing(model)
    # FSDP2 with several ranks, or for bf16-mixed; before the optimizer: sharding replaces the parameters
    distributed.shard(model, value_head, reference, mp_policy=precision.mixed_precision_policy(config.precision))
    if config.ppo.kl_coef > 0 and config.reference == "lora-base":
        reference = lora.AdaptersDisabled(model)
    params = [p for p in model.parameters() if p.requires_grad] + (list(value_head.parameters()) if value_head else [])
    optimizer, scheduler = adamw_with_warmup(params, config.ppo.lr, config.ppo.weight_decay, config.ppo.warmup_steps)
    return State(model, value_head, optimizer, scheduler, reference=reference)


def train(model: torch.nn.Module, codec: TokenCodec, config: LearnerConfig, resume: bool = True,
          make_env: Callable[[], Any] | None = None) -> list[dict[str, float]]:
    """Train ``model`` in place; returns one dict of logged scalars per iteration."""
    device = distributed.setup(config.device)  # joins the torchrun job, if any: the same loop at any world size
    _check_world(config)
    state = make_state(model, config, device)
    if resume and config.out is not None and dist_checkpoint.recover(config.out) is not None:
        dist_checkpoint.load_into(state, config.out)
        log.info("resuming from %s after iteration %d", config.out, state.iteration)
    engine = make_rollout_engine(state.model, codec, config, device)  # before any env: fails fast
    make_env = make_env or _env_factory(config)
    episodes = config.tasks_per_iteration // distributed.world_size() * config.group_size  # this rank's
    envs = [make_env() for _ in range(min(config.concurrency, episodes))]
    logger = Logger(config.out, config.tensorboard, config.wandb_project, config, first_step=state.iteration + 1)
    history, run_started = [], time.perf_counter()
    try:
        while state.iteration < config.iterations:
            started = time.perf_counter()
            trajectories = collect(state, codec, envs, config, device, engine)
            collected = time.perf_counter()
            data = build_samples(trajectories, config.layout)
            with distributed.gathered(state.model, state.value_head, state.reference):
                batch = prepare(state, data, trajectories, codec.pad_id, config, device)
            stats = update(state, data, batch, codec.pad_id, config, device)
            state.iteration += 1
            done = time.perf_counter()
            stats |= rollout_stats(trajectories, collected - started)
            stats["train/tokens_per_s"] = sum(data.lengths) * config.ppo.epochs / max(done - collected, 1e-9)
            stats["train/explained_variance"] = batch.explained_variance
            stats = distributed.combine_stats(stats)
            logger.log(stats, state.iteration)
            history.append(stats)
            # rank 0's clock decides for all: a rank stopping alone would leave the others waiting
            out_of_time = distributed.broadcast(config.max_minutes is not None and
                                                done - run_started > 60 * config.max_minutes)
            if config.out is not None and (state.iteration == config.iterations or out_of_time or
                                           (config.save_every and state.iteration % config.save_every == 0)):
                dist_checkpoint.save(state, codec.tokenizer, config.out, config)
            if out_of_time:
                log.info("stopping after iteration %d: the %s-minute cap is spent", state.iteration,
                         config.max_minutes)
                break
    finally:
        for env in envs:
            env.close()
        logger.close()
        if engine is not None:
            engine.close()
    return history


def _env_factory(config: LearnerConfig) -> Callable[[], Any]:
    import gymnasium as gym

    import mem1_gym  # noqa: F401  (registers the env ids)

    return lambda: gym.make(config.env_id, split=config.split, **config.env_kwargs)


def collect(state: State, codec: TokenCodec, envs: list[Any], config: LearnerConfig, device: torch.device,
            engine: VLLMRolloutEngine | None = None) -> list[Trajectory]:
    """Play this rank's episodes of the iteration with the current weights; each trajectory records its task and
    group. All live episodes sample together: one batch per turn (``concurrency`` caps it).

    With ``engine`` the learner's weights are first streamed into it tensor by tensor (never gathered
    whole) and vLLM samples; without, the transformers backend samples from ``state.model`` itself,
    gathered whole for the collection (any number of forward calls then makes no collective), with
    its KV cache, under bf16 autocast on CUDA (:class:`TransformersPolicy`).
    """
    specs = group_specs(env_protocol(envs[0]).n_tasks, config, state.iteration)
    mine = distributed.split_tasks(config.tasks_per_iteration, distributed.rank(), distributed.world_size())
    specs = specs[mine.start * config.group_size : mine.stop * config.group_size]  # this rank's whole groups
    # each rank samples its own noise (rank 0's seed is the single-process one)
    sampling = SamplingConfig(config.temperature, 1.0, config.max_new_tokens,
                              config.seed + state.iteration + 1_000_003 * distributed.rank())
    play = functools.partial(rollout, envs, strategy=make_strategy(config.context), episodes=specs,
                             config=RolloutConfig(config.max_new_tokens, env_id=config.env_id))
    if engine is None:
        with distributed.gathered(state.model):
            return play(TransformersPolicy.from_model(state.model.eval(), codec, sampling,
                                                      HFConfig(max_batch=len(envs))))
    engine.sync_weights(state.model)
    trajectories = play(engine.policy(sampling))
    engine.sleep()  # with vLLM's sleep mode: its GPU memory goes back to the update
    return trajectories


def group_specs(n_tasks: int, config: LearnerConfig, iteration: int) -> list[EpisodeSpec]:
    """``tasks_per_iteration`` groups: a task drawn once, then ``group_size`` specs naming it, with distinct
    reset seeds. The group travels in the spec (and so in the trajectory): a baseline compares rollouts of
    one task whatever order they finish in and whatever the env draws from a seed (issue 19, 1c)."""
    if n_tasks < 1:
        raise ValueError(f"{config.env_id} has no tasks in split {config.split!r}; use another split")
    rng = random.Random(config.seed * 1_000_003 + iteration)
    specs = []
    for group in range(config.tasks_per_iteration):
        index, seed = rng.randrange(n_tasks), rng.randrange(2**31)
        specs += [EpisodeSpec(seed=seed + k, task_index=index, group=group) for k in range(config.group_size)]
    return specs


@torch.no_grad()
def prepare(state: State, data: Samples, trajectories: Sequence[Trajectory], pad_id: int,
            config: LearnerConfig, device: torch.device) -> Prepared:
    """Old log-probs, values, reference log-probs and advantages/returns, one vector per sample.

    GRPO/RLOO baselines compare the trajectories of one group, as recorded in ``Trajectory.group``.

    The old log-probs are recomputed by the learner, never read from the records: a vLLM rollout
    samples in its own dtype, and the PPO ratio must compare the learner with itself.
    """
    old_lp, old_values, ref_lp = [], [], []
    for start in range(0, len(data.samples), config.ppo.micro_batch_size):
        batch = to_device(collate(data.samples[start : start + config.ppo.micro_batch_size], pad_id), device)
        with autocast(device):
            out = forward(state.model, batch, state.value_head)
            ref = forward(state.reference, batch) if state.reference is not None else None
        old_lp += gather_from_batch(out.logprobs, batch.loss_mask)
        if out.values is not None:
            old_values += gather_from_batch(out.values, batch.loss_mask)
        if ref is not None:
            ref_lp += gather_from_batch(ref.logprobs, batch.loss_mask)
    mask = trajectory_mask(data)  # (N, T)
    if config.ppo.algo == "ppo":
        rewards = torch.zeros_like(mask)
        for i, trajectory in enumerate(trajectories):
            r = token_rewards(trajectory)
            rewards[i, : len(r)] = r
        values = to_trajectory_view(old_values, data)  # (N, T)
        advantages, returns = trajectory_advantages(config.ppo, mask, rewards, values)
        ev = explained_variance(values, returns, mask)
    else:
        if any(t.group is None for t in trajectories):
            raise ValueError(f"--algo {config.ppo.algo} needs the rollout group of every trajectory; collect them "
                             "with learner.collect (EpisodeSpec.group)")
        rewards = torch.tensor([sum(t.reward for t in traj.turns) for traj in trajectories])
        groups = torch.tensor([t.group for t in trajectories])
        advantages, returns = trajectory_advantages(config.ppo, mask, rewards, groups=groups)
        ev = float("nan")
    return Prepared(old_lp, to_sample_view(advantages, data), to_sample_view(returns, data),
                    old_values if state.value_head is not None else None,
                    ref_lp if state.reference is not None else None, ev)


def update(state: State, data: Samples, prepared: Prepared, pad_id: int, config: LearnerConfig,
           device: torch.device) -> dict[str, float]:
    """``epochs`` passes of clipped-PPO mini-batch steps over this iteration's samples; returns the ``train/``
    scalars (loss, grad_norm, lr and :func:`~mem1_agent.train.ppo.ppo_loss`'s, each the mean over steps).

    With N ranks a mini-batch is every rank's next ``mini_batch_size / N`` samples and its loss the
    token-mean over all of them, so a step equals the one-process step on the same samples. FSDP
    averages the ranks' gradients, hence each rank's loss is scaled by N / (tokens of all ranks).

    FSDP2 all-gathers a layer's weights in each model call and reduce-scatters its gradients in each
    backward, so every rank must make the same calls: each runs as many micro-batches as the rank with
    the most (a rank out of samples runs :func:`_placeholder_loss`), and each prefix-cache micro-batch
    calls the model twice (``collate(two_passes=True)``) whether or not its turns need pass 2.
    """
    ppo, params = config.ppo, [p for group in state.optimizer.param_groups for p in group["params"]]
    world = distributed.world_size()
    share = ppo.mini_batch_size // world  # this rank's samples per mini-batch (train() checked it divides)
    steps = distributed.max_over_ranks(math.ceil(len(data.samples) / share))  # every rank takes every step
    state.model.train()
    rng = random.Random(config.seed + 7919 * state.iteration)
    stats: dict[str, list[float]] = {}
    for _ in range(ppo.epochs):
        order = list(range(len(data.samples)))
        rng.shuffle(order)
        for step in range(steps):
            mini = order[step * share : (step + 1) * share]
            tokens = distributed.sum_over_ranks(sum(data.samples[i].n_sampled for i in mini))
            micros = [mini[start : start + ppo.micro_batch_size] for start in range(0, len(mini), ppo.micro_batch_size)]
            placeholders = distributed.max_over_ranks(len(micros)) - len(micros)  # before any: a collective
            mini_loss = 0.0
            for micro in micros:
                loss, micro_stats = _micro_loss(state, data, prepared, micro, pad_id, config, device)
                micro_tokens = sum(data.samples[i].n_sampled for i in micro)
                (loss * micro_tokens * world / tokens).backward()
                mini_loss += loss.item() * micro_tokens / tokens
                for key, value in micro_stats.items():
                    stats.setdefault(key, []).append(value)
            for _ in range(placeholders):
                _placeholder_loss(state, pad_id, config, device).backward()
            stats.setdefault("loss", []).append(distributed.sum_over_ranks(mini_loss))
            stats.setdefault("grad_norm", []).append(
                clipped_step(params, state.optimizer, state.scheduler, ppo.max_grad_norm))
    state.model.eval()
    out = {f"train/{key}": fmean(values) for key, values in stats.items()}
    out["train/lr"] = state.scheduler.get_last_lr()[0]
    return out


def _placeholder_loss(state: State, pad_id: int, config: LearnerConfig, device: torch.device) -> torch.Tensor:
    """A one-token micro-batch of the run's layout through the policy and value head, times 0: what a rank
    with fewer micro-batches than another runs, so that it makes the same FSDP collectives (see update)."""
    turn = TurnTokens([pad_id], [pad_id])
    sample = prefix_cache_sample([turn]) if config.layout == "prefix-cache" else per_turn_samples([turn])[0]
    batch = to_device(collate([sample], pad_id, two_passes=True), device)
    with autocast(device):
        out = forward(state.model, batch, state.value_head)
    return 0.0 * (out.logprobs.sum() + (out.values.sum() if out.values is not None else 0.0))


def _check_world(config: LearnerConfig) -> None:
    """With several ranks: whole task groups and whole micro-batches per rank."""
    world = distributed.world_size()
    if world == 1:
        return
    distributed.check_shares(config.tasks_per_iteration, config.ppo.mini_batch_size, config.ppo.micro_batch_size,
                             world)


def _micro_loss(state: State, data: Samples, prepared: Prepared, micro: list[int], pad_id: int,
                config: LearnerConfig, device: torch.device) -> tuple[torch.Tensor, dict[str, float]]:
    # at world size > 1 every micro-batch calls the model alike: FSDP2's collectives (see update)
    batch = to_device(collate([data.samples[i] for i in micro], pad_id, two_passes=distributed.world_size() > 1),
                      device)
    mine = prepared.select(micro)

    def placed(vectors: list[torch.Tensor] | None) -> torch.Tensor | None:
        return None if vectors is None else scatter_to_batch(vectors, batch.loss_mask)  # (B, S)

    with autocast(device):
        new = forward(state.model, batch, state.value_head)
    return ppo_loss(new, placed(mine.old_logprobs), placed(mine.advantages), batch.loss_mask, config.ppo,
                    old_values=placed(mine.old_values), returns=placed(mine.returns),
                    ref_logprobs=placed(mine.ref_logprobs))


def rollout_stats(trajectories: Sequence[Trajectory], seconds: float) -> dict[str, float]:
    """The ``rollout/`` scalars of one collection: mean reward and EM (over objectives) per trajectory, valid
    actions per turn, turns per trajectory and sampling throughput."""
    sampled = sum(len(turn.generated_ids) for t in trajectories for turn in t.turns)
    return {
        "rollout/reward_mean": fmean(sum(turn.reward for turn in t.turns) for t in trajectories),
        "rollout/em_mean": fmean(fmean(t.em) if t.em else 0.0 for t in trajectories),
        "rollout/valid_action_rate": fmean(turn.valid_action for t in trajectories for turn in t.turns),
        "rollout/turns_mean": fmean(len(t.turns) for t in trajectories),
        "rollout/tokens_per_s": sampled / max(seconds, 1e-9),
    }
