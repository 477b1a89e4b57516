"""Stand-ins for vLLM (which cannot be installed here), and what tests/train/test_rollout_backend.py runs on each rank.

    python -m torch.distributed.run --nproc_per_node 2 tests/train/vllm_worker.py OUT_DIR LORA_RANK

Two iterations of the learner on the word bandit (LoRA adapters of that rank; 0: full fine-tuning), FSDP2
over 2 gloo ranks, each rank with its own :class:`StandInEngine` (the real
:meth:`VLLMRolloutEngine.sync_weights` into a stand-in ``vllm.LLM``).
Each rank saves to ``OUT_DIR/rank{r}.pt`` what its engine received: the (name, shape) of every
``load_weights`` call, whether the learner's weights were still sharded during every sync and
every sampling call, the engine's weights after the first sync, whether they equalled the
learner's whole weights at every sync, and how many envs the rank built.
"""

from __future__ import annotations

import sys
import weakref
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).parent))
from word_toys import WordBandit, make_word_codec, make_word_model  # noqa: E402

from mem1_agent.policies.base import TokenCodec  # noqa: E402
from mem1_agent.policies.hf import TransformersPolicy  # noqa: E402
from mem1_agent.policies.vllm_backend import VLLMRolloutEngine  # noqa: E402
from mem1_agent.train import distributed, learner, lora  # noqa: E402
from mem1_agent.train.learner import LearnerConfig  # noqa: E402
from mem1_agent.train.ppo import PPOConfig  # noqa: E402


class StandInModel:
    """Stand-in for the engine's ``nn.Module``: ``load_weights(weights=iterable of (name, tensor))`` copies each
    tensor into the same-named parameter of a plain module of its own (vLLM copies into its fused parameters).

    It records every call's ``(name, shape, device type)`` and fails when a tensor of an earlier call is still
    alive: the sender must stream one whole tensor at a time and keep none (vLLM keeps none either).
    """

    def __init__(self, module: torch.nn.Module, events: list[str]) -> None:
        self.module, self.events = module, events
        self.params = dict(module.named_parameters())
        self.calls: list[list[tuple[str, tuple[int, ...], str]]] = []
        self._earlier: list[weakref.ref] = []

    def load_weights(self, weights):
        alive = [ref() for ref in self._earlier if ref() is not None]
        assert not alive, f"{len(alive)} whole tensor(s) of an earlier load_weights call still alive"
        call, self._earlier = [], []
        for name, tensor in weights:
            with torch.no_grad():
                self.params[name].copy_(tensor)
            call.append((name, tuple(tensor.shape), tensor.device.type))
            self._earlier.append(weakref.ref(tensor))
        self.calls.append(call)
        self.events.append("load")
        return {name for name, _, _ in call}


class StandInLLM:
    """Stand-in for an in-process ``vllm.LLM`` (V1 engine, ``VLLM_ENABLE_V1_MULTIPROCESSING=0``): the model
    at ``llm_engine.model_executor.driver_worker.worker.model_runner.model``, ``reset_prefix_cache()`` and
    the sleep mode's ``sleep(level)`` / ``wake_up()``."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.events: list[str] = []
        self.model = StandInModel(module, self.events)
        worker = SimpleNamespace(model_runner=SimpleNamespace(model=self.model))
        self.llm_engine = SimpleNamespace(model_executor=SimpleNamespace(driver_worker=SimpleNamespace(worker=worker)),
                                          model_config=SimpleNamespace(max_model_len=64))

    def reset_prefix_cache(self) -> bool:
        self.events.append("reset")
        return True

    def sleep(self, level: int) -> None:
        self.events.append(f"sleep{level}")

    def wake_up(self, tags: list[str]) -> None:
        self.events.append(f"wake:{','.join(tags)}")


def whole_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The learner's weights, whole, under the Hugging Face names, LoRA merged by the checkpoint code (gathered by
    the test after a sync, to check what the engine received)."""
    if distributed.world_size() == 1:
        weights = {name: p.detach().clone() for name, p in model.named_parameters()}
    else:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        weights = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    return lora.merged_state_dict(model, weights) if lora.is_lora(model) else weights


def sharded_now(model: torch.nn.Module) -> bool:
    """Every parameter of ``model`` is an FSDP2 shard (a DTensor): nothing gathered whole."""
    from torch.distributed.tensor import DTensor

    return all(isinstance(p, DTensor) for p in model.parameters())


class StandInEngine(VLLMRolloutEngine):
    """The real sync path into a stand-in engine whose copy of the model samples with the transformers
    policy (vLLM's sampler cannot run here). At every sync it records whether the copy equals the
    learner's whole weights, and (with several ranks) whether the learner was still sharded."""

    def __init__(self, learner_model: torch.nn.Module, codec: TokenCodec) -> None:
        self.copy = make_word_model(codec, seed=1)
        self._tmp = None
        self._attach(StandInLLM(self.copy), codec, "stand-in", sleep_mode=False)
        self.learner_model = learner_model
        self.synced: list[dict[str, torch.Tensor]] = []
        self.matched: list[bool] = []
        self.sharded: list[bool] = []
        self.closed = False

    def sync_weights(self, model):
        self.sharded.append(sharded_now(model))
        count = super().sync_weights(model)
        self.synced.append({name: p.detach().clone() for name, p in self.copy.named_parameters()})
        whole = whole_weights(model)
        self.matched.append(all(torch.equal(whole[name], p) for name, p in self.synced[-1].items()))
        return count

    def policy(self, sampling):
        policy = TransformersPolicy.from_model(self.copy, self.codec, sampling, name="vllm:live")
        generate = policy.generate

        def watched(requests):
            self.sharded.append(sharded_now(self.learner_model))
            return generate(requests)

        policy.generate = watched
        return policy

    def close(self):
        self.closed = True


def main() -> int:
    torch.set_num_threads(1)
    out, lora_rank = Path(sys.argv[1]), int(sys.argv[2])
    codec = make_word_codec()
    engines: list[StandInEngine] = []

    def make_engine(model, codec, config, device):
        engines.append(StandInEngine(model, codec))
        return engines[-1]

    envs = []

    def make_env():
        envs.append(WordBandit())
        return envs[-1]

    learner.make_rollout_engine = make_engine
    ppo = PPOConfig(lr=3e-3, warmup_steps=0, mini_batch_size=4, micro_batch_size=2)
    config = LearnerConfig(env_id="word-bandit", iterations=2, tasks_per_iteration=4, concurrency=8, max_new_tokens=4,
                           device="cpu", tensorboard=False, lora_rank=lora_rank, ppo=ppo)
    learner.train(make_word_model(codec), codec, config, make_env=make_env)
    [engine] = engines
    torch.save({"calls": engine.llm.model.calls, "events": engine.llm.events, "sharded": engine.sharded,
                "first_sync": engine.synced[0], "last_sync": engine.synced[-1], "matched": engine.matched,
                "envs": len(envs), "closed": engine.closed}, out / f"rank{distributed.rank()}.pt")
    return 0


if __name__ == "__main__":
    distributed.exit_on_failure(main)
