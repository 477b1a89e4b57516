"""What tests/train/test_distributed.py runs on each rank under torchrun (2 CPU processes, gloo).

    python -m torch.distributed.run --nproc_per_node 2 tests/train/dist_worker.py step OUT.pt
    python -m torch.distributed.run --nproc_per_node 2 tests/train/dist_worker.py train OUT ITERATIONS [FAULT]

``step``: one update on a fixed batch split unequally across the ranks; rank 0 saves loss, gradient norm, full
weights, and whether its weights and gradients were sharded after every backward.
``train``: the learner on the word bandit, checkpointing every iteration. FAULT is JSON
``{"rank": r, "iteration": i, "where": "collect" | "commit"}``: that rank raises in the collect step
of that iteration, or dies (``os._exit``, as a kill) inside the checkpoint commit of that iteration.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from word_toys import WordBandit, make_word_codec, make_word_model  # noqa: E402

from mem1_agent.train import checkpoint, distributed, learner  # noqa: E402
from mem1_agent.train.layouts import TurnTokens, prefix_cache_sample  # noqa: E402
from mem1_agent.train.learner import LearnerConfig, make_state, train, update  # noqa: E402
from mem1_agent.train.logger import log_to_console  # noqa: E402
from mem1_agent.train.ppo import PPOConfig, forward  # noqa: E402
from mem1_agent.train.samples import Prepared, Samples, gather_from_batch  # noqa: E402

# Four trajectories of 3, 1, 1 and 2 turns. Rank 0 gets the first three (3 micro-batches; pass 2 needed by
# the first only), rank 1 the last (1 micro-batch): ranks differ in micro-batches and in the passes their
# data needs, and must still make the same FSDP collectives.
TRAJECTORIES = (
    [([2, 3], [3, 4]), ([2, 3, 4], [5]), ([2, 3, 6], [7, 3, 3])],
    [([2, 3], [4, 4, 5])],
    [([2, 5], [3])],
    [([2, 3], [6, 8]), ([2, 3, 9], [3, 4])],
)


def step_config() -> LearnerConfig:
    # one step over the whole batch: 4 samples per rank per mini-batch, rank 1 has only 1
    ppo = PPOConfig(lr=1e-2, mini_batch_size=8, micro_batch_size=1, ent_coef=0.01, max_grad_norm=0.5)
    return LearnerConfig(env_id="word-bandit", tasks_per_iteration=2, concurrency=2, device="cpu", ppo=ppo)


def fixed_batch(model: torch.nn.Module, pad_id: int) -> tuple[Samples, Prepared]:
    """The fixed batch: prefix-cache samples, old log-probs of ``model`` (ratio 1), seeded advantages and returns."""
    samples = [prefix_cache_sample([TurnTokens(c, g) for c, g in turns]) for turns in TRAJECTORIES]
    data = Samples(samples, list(range(len(samples))), [0] * len(samples), [s.n_sampled for s in samples])
    from mem1_agent.train.layouts import collate

    with torch.no_grad():
        batch = collate(samples, pad_id)
        old = gather_from_batch(forward(model, batch).logprobs, batch.loss_mask)
    generator = torch.Generator().manual_seed(0)
    advantages = [torch.randn(len(lp), generator=generator) for lp in old]
    returns = [torch.rand(len(lp), generator=generator) for lp in old]
    return data, Prepared(old, advantages, returns, old_values=[torch.zeros(len(lp)) for lp in old])


SHARES = (slice(0, 3), slice(3, 4))  # the trajectories of rank 0 and of rank 1


def share(data: Samples, prepared: Prepared, rank: int) -> tuple[Samples, Prepared]:
    part = SHARES[rank]
    return Samples(data.samples[part], data.trajectory[part], data.offset[part], data.lengths), prepared.select(part)


def sharded_now(model: torch.nn.Module) -> bool:
    """Every parameter and gradient of ``model`` is a shard (an FSDP2 DTensor), none a whole tensor."""
    from torch.distributed.tensor import DTensor

    return all(isinstance(p, DTensor) and (p.grad is None or isinstance(p.grad, DTensor)) for p in model.parameters())


def watch_sharding(state: learner.State) -> list[bool]:
    """Whether the weights and gradients were sharded before each micro-batch and before the optimizer step,
    i.e. after every backward of the update: FSDP2 resharded and reduce-scattered them right away."""
    seen: list[bool] = []
    micro_loss, step = learner._micro_loss, learner.clipped_step

    def watched_micro_loss(*args, **kwargs):
        seen.append(sharded_now(state.model) and sharded_now(state.value_head))
        return micro_loss(*args, **kwargs)

    def watched_step(*args, **kwargs):
        seen.append(sharded_now(state.model) and sharded_now(state.value_head))
        return step(*args, **kwargs)

    learner._micro_loss, learner.clipped_step = watched_micro_loss, watched_step
    return seen


def one_step(out: Path) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    codec, config = make_word_codec(), step_config()
    device = distributed.setup(config.device)
    model = make_word_model(codec)
    data, prepared = share(*fixed_batch(model, codec.pad_id), distributed.rank())
    state = make_state(model, config, device)
    sharded = watch_sharding(state)
    stats = update(state, data, prepared, codec.pad_id, config, device)
    whole = StateDictOptions(full_state_dict=True, cpu_offload=True)
    weights = get_model_state_dict(state.model, options=whole)
    head = get_model_state_dict(state.value_head, options=whole)
    if distributed.is_main():
        torch.save({"loss": stats["train/loss"], "grad_norm": stats["train/grad_norm"], "weights": weights, "value_head": head,
                    "sharded": sharded}, out)


def run_training(out: Path, iterations: int, fault: dict | None) -> None:
    ppo = PPOConfig(lr=3e-3, epochs=1, mini_batch_size=4, micro_batch_size=2, kl_coef=0.01)  # a sharded reference
    config = LearnerConfig(env_id="word-bandit", tasks_per_iteration=4, concurrency=2, max_new_tokens=4,
                           device="cpu", out=out, save_every=1, tensorboard=False, iterations=iterations, ppo=ppo)
    if fault and fault["rank"] == int(os.environ["RANK"]):
        _inject(fault)
    codec = make_word_codec()
    log_to_console()  # rank 0's iteration and resume lines on stdout, as `mem1-agent train` prints them
    train(make_word_model(codec), codec, config, make_env=WordBandit)


def _inject(fault: dict) -> None:
    if fault["where"] == "collect":
        collect = learner.collect

        def failing(state, *args, **kwargs):
            if state.iteration + 1 == fault["iteration"]:
                raise RuntimeError(f"injected failure on rank {fault['rank']}")
            return collect(state, *args, **kwargs)

        learner.collect = failing
    else:
        commit = checkpoint.commit

        def killed(tmp, out, tokenizer, iteration, config):
            if iteration == fault["iteration"]:
                os._exit(9)  # as SIGKILL: no cleanup, no exception handler
            return commit(tmp, out, tokenizer, iteration, config)

        checkpoint.commit = killed


def main() -> int:
    torch.set_num_threads(1)
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "step":
        one_step(Path(args[0]))
    else:
        run_training(Path(args[0]), int(args[1]), json.loads(args[2]) if len(args) > 2 else None)
    return 0


if __name__ == "__main__":
    distributed.exit_on_failure(main)
