"""The stitched layout is exact: same log-probs as per-turn samples and as recorded while sampling."""

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from mem1_agent.train.layouts import (
    TurnTokens, collate, per_turn_samples, shared_prefix_length, stitched_attention_mask, stitched_sample,
)
from mem1_agent.train.ppo import token_logprobs

VOCAB = 97


def tiny_model(attn: str) -> Qwen2ForCausalLM:
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         attn_implementation=attn)
    return Qwen2ForCausalLM(config).eval()


@torch.no_grad()
def sample(model, context, n_tokens, generator):
    """Token-by-token sampling from plain causal attention, recording each token's log-prob."""
    ids, out, logprobs = list(context), [], []
    for _ in range(n_tokens):
        logits = model(torch.tensor([ids])).logits[0, -1]
        lp = torch.log_softmax(logits.float(), -1)
        token = int(torch.multinomial(lp.exp(), 1, generator=generator))
        ids.append(token)
        out.append(token)
        logprobs.append(float(lp[token]))
    return out, logprobs


def mem1_trajectory(model, n_turns, seed):
    """Contexts as the MEM1 strategy builds them: prompt + last turn (state + action) + last observation."""
    g = torch.Generator().manual_seed(seed)
    prompt = torch.randint(0, VOCAB, (23,), generator=g).tolist()
    turns, recorded, last = [], [], []
    for j in range(n_turns):
        context = prompt + last
        generated, lps = sample(model, context, int(torch.randint(3, 9, (1,), generator=g)), g)
        observation = torch.randint(0, VOCAB, (int(torch.randint(2, 12, (1,), generator=g)),), generator=g).tolist()
        turns.append(TurnTokens(context, generated))
        recorded.append(lps)
        last = generated + observation
    return turns, recorded


@torch.no_grad()
def per_token(model, samples):
    batch = collate(samples)
    lp = token_logprobs(model, batch)
    out = {}
    for row in range(lp.shape[0]):
        for slot in torch.nonzero(batch.loss_mask[row]).flatten().tolist():
            out.setdefault(int(batch.turn_index[row, slot]), []).append(float(lp[row, slot]))
    return out


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_stitched_equals_per_turn_equals_sampling(attn):
    model = tiny_model(attn)
    trajectories = [mem1_trajectory(model, n_turns, seed) for seed, n_turns in enumerate([5, 6, 8])]
    for turns, recorded in trajectories:
        a = per_token(model, per_turn_samples(turns))
        b = per_token(model, [stitched_sample(turns)])
        for j, lps in enumerate(recorded):
            assert a[j] == pytest.approx(lps, abs=1e-4)
            assert b[j] == pytest.approx(lps, abs=1e-4)
    # several trajectories padded into one batch give the same numbers as one at a time
    batched = per_token(model, [stitched_sample(t) for t, _ in trajectories])
    assert batched[0][:3] == pytest.approx(per_token(model, [stitched_sample(trajectories[0][0])])[0][:3], abs=1e-5)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@torch.no_grad()
def test_a_masked_token_changes_nothing_it_must_not_see(attn):
    model = tiny_model(attn)
    turns, _ = mem1_trajectory(model, 5, seed=11)
    sample_b = stitched_sample(turns)
    batch = collate([sample_b])
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                   position_ids=batch.position_ids).logits[0]  # (S, V)
    p, segs = sample_b.prefix_len, sample_b.segments
    start_2 = p + segs[0]
    changed = batch.input_ids.clone()
    changed[0, p] = (changed[0, p] + 1) % VOCAB  # first token of turn 1's segment
    logits_changed = model(input_ids=changed, attention_mask=batch.attention_mask,
                           position_ids=batch.position_ids).logits[0]
    assert torch.equal(logits[:p], logits_changed[:p])  # the prefix never sees turn 1
    assert torch.equal(logits[start_2:], logits_changed[start_2:])  # turns 2.. never see turn 1
    assert not torch.allclose(logits[p:start_2], logits_changed[p:start_2])  # turn 1 does


def test_mask_table_by_hand():
    mask = stitched_attention_mask(2, [2, 1], 6)[0, 0]
    allowed = (mask == 0).int().tolist()
    assert allowed == [
        [1, 0, 0, 0, 0, 0],  # prefix: causal
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],  # turn 1: prefix + itself, causal
        [1, 1, 1, 1, 0, 0],
        [1, 1, 0, 0, 1, 0],  # turn 2: prefix + itself, not turn 1
        [1, 1, 0, 0, 0, 1],  # padding: prefix + itself only
    ]
    assert mask.dtype == torch.float32 and mask.min() == torch.finfo(torch.float32).min


def test_loss_mask_covers_exactly_the_sampled_tokens():
    turns = [TurnTokens([1, 2, 3], [4, 5]), TurnTokens([1, 2, 3, 4, 5, 9], [6])]
    assert shared_prefix_length([t.context for t in turns]) == 3
    batch = collate([stitched_sample(turns)])
    # stitched: [1 2 3 | 4 5 | 4 5 9 6]: sampled tokens are 4 5 (turn 0) and 6 (turn 1)
    assert batch.input_ids[0].tolist() == [1, 2, 3, 4, 5, 4, 5, 9, 6]
    assert batch.loss_mask[0].tolist() == [0, 0, 0, 1, 1, 0, 0, 0, 1]
    assert batch.position_ids[0].tolist() == [0, 1, 2, 3, 4, 3, 4, 5, 6]
    assert batch.logit_index[0, 3] == 2  # turn 0's first token is predicted by the prompt's last
    per_turn = collate(per_turn_samples(turns))
    assert per_turn.loss_mask.sum() == 3


def test_no_shared_prefix_is_refused():
    with pytest.raises(ValueError, match="share no prefix"):
        stitched_sample([TurnTokens([1], [2]), TurnTokens([3], [4])])


@pytest.mark.parametrize("implementation", ["flash_attention_2", "flash_attention_3", "flex_attention"])
def test_layouts_refuse_attention_that_cannot_take_an_additive_4d_mask(implementation):
    from mem1_agent.train.layouts import TurnTokens, collate, per_turn_samples
    from mem1_agent.train.ppo import token_logprobs

    model = Qwen2ForCausalLM(Qwen2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                         num_key_value_heads=2, intermediate_size=64, vocab_size=50))
    batch = collate(per_turn_samples([TurnTokens([1, 2, 3], [4, 5])]))
    assert token_logprobs(model, batch).shape == batch.loss_mask.shape  # sdpa, the default, is accepted
    model.config._attn_implementation = implementation
    with pytest.raises(ValueError, match=f"attn_implementation='{implementation}'.*sdpa"):
        token_logprobs(model, batch)
