"""What tests/train/test_precision.py runs on each of 2 gloo ranks: one bf16-mixed iteration of the learner.

    python -m torch.distributed.run --nproc_per_node 2 tests/train/dist_precision_worker.py OUT REPORT.json

Rank 0 writes REPORT.json: the dtypes the first decoder layer's MLP computed in, the stored dtypes of the policy
and of the reference copy, whether the weights of both are FSDP2 shards, and whether the loss was finite.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from word_toys import WordBandit, make_word_codec, make_word_model  # noqa: E402

from mem1_agent.train import distributed, learner  # noqa: E402
from mem1_agent.train.learner import LearnerConfig, train  # noqa: E402
from mem1_agent.train.ppo import PPOConfig  # noqa: E402


def main() -> int:
    from torch.distributed.tensor import DTensor

    torch.set_num_threads(1)
    out, report = Path(sys.argv[1]), Path(sys.argv[2])
    ppo = PPOConfig(lr=1e-2, epochs=1, mini_batch_size=4, micro_batch_size=2, ent_coef=0.01, kl_coef=0.01)
    config = LearnerConfig(env_id="word-bandit", tasks_per_iteration=4, concurrency=2, max_new_tokens=4,
                           device="cpu", out=out, tensorboard=False, iterations=1, precision="bf16-mixed", ppo=ppo)
    codec = make_word_codec()
    model = make_word_model(codec)
    computed: set[str] = set()
    model.model.layers[0].mlp.register_forward_hook(lambda module, args, output: computed.add(str(output.dtype)))
    references = []
    make_state = learner.make_state

    def keep_state(*args, **kwargs):  # to read the reference copy after the run
        state = make_state(*args, **kwargs)
        references.append(state.reference)
        return state

    learner.make_state = keep_state
    history = train(model, codec, config, make_env=WordBandit)
    if distributed.is_main():
        report.write_text(json.dumps({
            "computed": sorted(computed),
            "stored": sorted({str(p.dtype) for p in model.parameters()}),
            "reference": sorted({str(p.dtype) for p in references[0].parameters()}),
            "sharded": all(isinstance(p, DTensor) for module in (model, references[0]) for p in module.parameters()),
            "finite": math.isfinite(history[0]["train/loss"]),
        }))
    return 0


if __name__ == "__main__":
    distributed.exit_on_failure(main)
