"""The transformers policy returns the ids it sampled and their log-probs, and honours stop strings."""

from __future__ import annotations

import pytest
import torch
from mem1_agent.policies import SamplingConfig, make_policy
from mem1_agent.policies.base import GenerationRequest
from mem1_agent.records import FinishReason

CONTEXTS = [
    "Answer the following 2 questions:\nQ1: Who founded Eigix College?\n",
    "<think>Q1: pending.</think>\n<search>",
    "\n\n<information>[HINT]You have 3 turns left.[/HINT]\n\nDoc 1(Title: \"Eigix College\") Eigix",
]


def requests(codec, stop=(), max_new_tokens=24):
    return [GenerationRequest(i, codec.encode(t), t, tuple(stop), max_new_tokens, "", 3) for i, t in enumerate(CONTEXTS)]


def recomputed_logprobs(policy, context_ids, generated_ids, temperature):
    """One forward pass over context + generation, no padding, no cache."""
    ids = torch.tensor([list(context_ids) + list(generated_ids)])
    with torch.no_grad():
        logits = policy.model(ids).logits[0].float()  # (T, V)
    logp = torch.log_softmax(logits / (temperature or 1.0), dim=-1)
    start = len(context_ids)
    return logp[start - 1 : -1].gather(1, torch.tensor(generated_ids)[:, None]).squeeze(1)  # (n_o,)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_ids_as_sampled_and_logprobs_match_a_forward_pass(tiny_dir, temperature):
    policy = make_policy(f"hf:{tiny_dir}", SamplingConfig(temperature=temperature, top_p=0.9, seed=3), device="cpu")
    reqs = requests(policy.codec)
    generations = policy.generate(reqs)
    for request, gen in zip(reqs, generations):
        assert gen.ids_as_sampled and len(gen.token_ids) == len(gen.logprobs) > 0
        assert gen.text == policy.codec.decode(gen.token_ids, skip_special_tokens=True)
        expected = recomputed_logprobs(policy, request.context_ids, gen.token_ids, temperature)
        assert torch.allclose(torch.tensor(gen.logprobs), expected, atol=1e-4)
    # A batch gives every row what it would get alone (left padding + position ids are exact).
    if temperature == 0.0:
        alone = [policy.generate([r])[0] for r in reqs]
        assert [g.token_ids for g in alone] == [g.token_ids for g in generations]


def test_sampling_is_seeded(tiny_dir):
    first = make_policy(f"hf:{tiny_dir}", SamplingConfig(temperature=1.0, seed=7), device="cpu")
    second = make_policy(f"hf:{tiny_dir}", SamplingConfig(temperature=1.0, seed=7), device="cpu")
    reqs = requests(first.codec)
    assert [g.token_ids for g in first.generate(reqs)] == [g.token_ids for g in second.generate(reqs)]


def test_generation_stops_at_the_stop_string(tiny_dir):
    policy = make_policy(f"hf:{tiny_dir}", SamplingConfig(temperature=0.0), device="cpu")
    [free] = policy.generate(requests(policy.codec, max_new_tokens=24)[:1])
    assert free.finish is FinishReason.LENGTH and len(free.token_ids) == 24
    # Use a piece of what greedy decoding produces anyway as the stop string: generation must end
    # on the token that completes its first occurrence, and keep that token.
    stop = policy.codec.decode(free.token_ids[8:10])
    [stopped] = policy.generate(requests(policy.codec, stop=[stop], max_new_tokens=24)[:1])
    assert stopped.finish is FinishReason.STOP
    assert stop in stopped.text and stop not in policy.codec.decode(stopped.token_ids[:-1])
    assert stopped.token_ids == free.token_ids[: len(stopped.token_ids)]
