"""The prefix-cache layout is exact: log-probs, entropies, values and gradients equal per-turn samples'.

Per-turn samples are the reference (exact by construction, and checked against the sampling
log-probs in test_train_layouts). The trajectories are MEM1-shaped (prompt + last state/action +
last observation per turn) and sampled from the tiny model, so the recorded sampling log-probs are
a second, independent reference.
"""

import pytest
import torch
from mem1_agent.train.layouts import (
    PrefixCacheBatch,
    TurnTokens,
    collate,
    per_turn_samples,
    prefix_cache_attention_mask,
    prefix_cache_sample,
    stitched_sample,
)
from mem1_agent.train.learner import LearnerConfig
from mem1_agent.train.ppo import ValueHead, forward, masked_mean
from mem1_agent.train.samples import build_samples, token_index
from mem1_agent.train.sft import SFTConfig, sft
from mem1_agent.train.sft import oracle_trajectories as play_oracle
from test_train_layouts import VOCAB, mem1_trajectory, per_token, tiny_model

import mem1_gym  # noqa: F401  (registers the env ids)


def shifted(turns, extra):
    """The same turns behind a longer task prompt: another prefix length and other log-probs."""
    return [TurnTokens(list(extra) + list(t.context), t.generated) for t in turns]


def by_turn(batch, values):
    """{(batch row, turn): [value of each of its sampled tokens, in order]} of a collated batch."""
    out = {}
    for row in range(values.shape[0]):
        for slot in torch.nonzero(batch.loss_mask[row]).flatten().tolist():
            out.setdefault((row, int(batch.turn_index[row, slot])), []).append(float(values[row, slot]))
    return out


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_prefix_cache_equals_per_turn_equals_sampling(attn):
    model = tiny_model(attn)
    trajectories = [mem1_trajectory(model, n_turns, seed) for seed, n_turns in enumerate([5, 8])]
    for turns, recorded in trajectories:
        a = per_token(model, per_turn_samples(turns))
        c = per_token(model, [prefix_cache_sample(turns)])
        assert sorted(c) == list(range(len(turns)))
        for j, lps in enumerate(recorded):
            assert c[j] == pytest.approx(lps, abs=1e-4)
            assert c[j] == pytest.approx(a[j], abs=1e-5)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@torch.no_grad()
def test_a_padded_batch_of_unlike_trajectories_equals_each_alone(attn):
    """Different prefix lengths, turn counts and row lengths in one batch; no shared prefix; a single turn."""
    model = tiny_model(attn)
    short, _ = mem1_trajectory(model, 5, seed=3)
    long_, _ = mem1_trajectory(model, 8, seed=4)
    long_ = shifted(long_, range(1, 12))  # prefix 33 tokens instead of 23
    unshared = [TurnTokens([5, 6, 7], [8, 9]), TurnTokens([10, 11], [12, 13, 14])]  # cached prefix: empty
    single = short[1:2]  # one turn: pass 1 only
    trajectories = [short, long_, unshared, single]
    batch = collate([prefix_cache_sample(t) for t in trajectories])
    assert isinstance(batch, PrefixCacheBatch) and batch.lead_ids.shape[0] == 4
    assert len(batch.row_ids) == 4 + 7 + 1 + 0  # every turn but each trajectory's lead runs in pass 2
    together = by_turn(batch, forward(model, batch).logprobs)
    for row, turns in enumerate(trajectories):
        alone = per_token(model, per_turn_samples(turns))
        for j in range(len(turns)):
            assert together[row, j] == pytest.approx(alone[j], abs=1e-5)
    # a batch with no pass 2 at all
    only_leads = collate([prefix_cache_sample(single), prefix_cache_sample(short[3:4])])
    assert len(only_leads.row_ids) == 0
    lead_alone = by_turn(only_leads, forward(model, only_leads).logprobs)
    assert lead_alone[0, 0] == pytest.approx(together[3, 0], abs=1e-5)
    assert lead_alone[1, 0] == pytest.approx(per_token(model, per_turn_samples(short[3:4]))[0], abs=1e-5)


def random_value_head(hidden_size: int) -> ValueHead:
    """A value head that is not identically zero (a fresh one is, which would make values agree trivially)."""
    torch.manual_seed(1)
    head = ValueHead(hidden_size)
    torch.nn.init.normal_(head.proj.weight, std=0.1)  # values of order 1
    torch.nn.init.normal_(head.proj.bias, std=0.1)
    return head


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@torch.no_grad()
def test_entropies_and_values_equal_per_turn(attn):
    model = tiny_model(attn)
    head = random_value_head(model.config.hidden_size)
    turns, _ = mem1_trajectory(model, 6, seed=5)
    a_batch, c_batch = collate(per_turn_samples(turns)), collate([prefix_cache_sample(turns)])
    a, c = forward(model, a_batch, head), forward(model, c_batch, head)
    for name in ("logprobs", "entropy", "values"):
        per_turn = [v for _, vs in sorted(by_turn(a_batch, getattr(a, name)).items(), key=lambda kv: kv[0][1])
                    for v in vs]
        cached = [v for _, vs in sorted(by_turn(c_batch, getattr(c, name)).items()) for v in vs]
        assert len(cached) == len(per_turn) == sum(len(t.generated) for t in turns)
        assert cached == pytest.approx(per_turn, abs=1e-5), name
    assert c.values.abs().max() > 0.1  # the value head really reads the hidden states


def loss_and_grads(model, head, batch):
    """Token-mean NLL - entropy bonus + squared value, and the gradient of every parameter (model and head)."""
    model.zero_grad(set_to_none=True)
    head.zero_grad(set_to_none=True)
    out = forward(model, batch, head)
    loss = (-masked_mean(out.logprobs, batch.loss_mask) - 0.1 * masked_mean(out.entropy, batch.loss_mask)
            + masked_mean(out.values**2, batch.loss_mask))
    loss.backward()
    params = list(model.named_parameters()) + list(head.named_parameters())
    return loss.item(), {name: p.grad.clone() for name, p in params}


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_gradients_equal_per_turn(attn):
    """The gradient flows through the cached prefix K/V: a detached cache would lose the prefix's share."""
    model = tiny_model(attn).train()
    head = random_value_head(model.config.hidden_size)
    trajectories = [mem1_trajectory(model, n, seed)[0] for seed, n in ((6, 5), (7, 6))]
    loss_a, grads_a = loss_and_grads(model, head, collate([s for t in trajectories for s in per_turn_samples(t)]))
    loss_c, grads_c = loss_and_grads(model, head, collate([prefix_cache_sample(t) for t in trajectories]))
    assert loss_c == pytest.approx(loss_a, rel=1e-6)
    assert grads_c.keys() == grads_a.keys()
    for name, grad in grads_a.items():
        assert grad.norm() > 0, name  # every parameter is exercised
        # fp32 summation order differs between the layouts: ~5e-7 relative; a real difference is O(1)
        assert (grads_c[name] - grad).norm() / grad.norm() < 1e-5, name


def test_sample_and_batch_by_hand():
    turns = [TurnTokens([1, 2, 3], [4, 5]), TurnTokens([1, 2, 3, 4, 5, 9], [6])]
    sample = prefix_cache_sample(turns)
    # shared prefix [1 2 3]; cached [1 2]; every row restarts at 3, the token that predicts turn 0's first;
    # the shortest row (turn 0) is the lead, run in pass 1 after the prefix
    assert sample.prefix.tolist() == [1, 2] and [row.tolist() for row in sample.rows] == [[3, 4, 5], [3, 4, 5, 9, 6]]
    assert sample.lead == 0 and sample.turns.tolist() == [0, 0, 1] and sample.cols.tolist() == [1, 2, 4]
    batch = collate([sample], pad_id=0)
    assert batch.lead_ids.tolist() == [[1, 2, 3, 4, 5]]  # pass 1: turn 0's own sample
    assert batch.row_ids.tolist() == [[3, 4, 5, 9, 6]] and batch.row_owner.tolist() == [0]
    assert batch.row_positions.tolist() == [[2, 3, 4, 5, 6]]  # rollout positions
    assert batch.read_row.tolist() == [[0, 0, 1]]  # 0: pass-1 row 0; 1 = B + 0: pass-2 row 0
    assert batch.read_col.tolist() == [[2, 3, 3]]
    assert batch.target_ids.tolist() == [[4, 5, 6]] and batch.loss_mask.tolist() == [[1, 1, 1]]
    assert batch.turn_index.tolist() == [[0, 0, 1]]
    assert batch.attention_mask.shape == (1, 1, 5, 5 + 5)
    # the pass-2 row sees the cached prefix [1 2], not turn 0's [3 4 5] after it
    assert (batch.attention_mask[0, 0, -1] == 0).int().tolist() == [1, 1, 0, 0, 0, 1, 1, 1, 1, 1]
    with pytest.raises(ValueError, match="mixes"):
        collate([sample, stitched_sample(turns)])
    with pytest.raises(ValueError, match="empty context"):
        prefix_cache_sample([TurnTokens([], [1])])


def test_mask_table_by_hand():
    mask = prefix_cache_attention_mask(torch.tensor([2, 1]), prefix_width=2, row_len=3)
    assert mask.shape == (2, 1, 3, 5) and mask.dtype == torch.float32
    assert mask.min() == torch.finfo(torch.float32).min and set(mask.unique().tolist()) == {0.0, mask.min().item()}
    assert (mask[:, 0] == 0).int().tolist() == [
        [[1, 1, 1, 0, 0],  # row of a trajectory with a 2-token prefix: all of it, then the row causally
         [1, 1, 1, 1, 0],
         [1, 1, 1, 1, 1]],
        [[1, 0, 1, 0, 0],  # 1-token prefix: the second cached column is another trajectory's padding
         [1, 0, 1, 1, 0],
         [1, 0, 1, 1, 1]],
    ]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@torch.no_grad()
def test_a_changed_token_moves_exactly_the_turns_that_read_it(attn):
    model = tiny_model(attn)
    turns, _ = mem1_trajectory(model, 5, seed=11)
    base = _logprobs_by_turn(model, turns)

    def changed(j, where):  # turn j with one token of its context or of its sampled tokens changed
        context, generated = list(turns[j].context), list(turns[j].generated)
        tokens = context if where == "context" else generated
        tokens[-1] = (tokens[-1] + 1) % VOCAB
        return [*turns[:j], TurnTokens(context, generated), *turns[j + 1 :]]

    # turn 0 is the lead: its sampled tokens sit in pass 1's cache after the prefix, masked for pass 2
    moved = _logprobs_by_turn(model, changed(0, "generated"))
    assert [moved[j] == base[j] for j in range(5)] == [False, True, True, True, True]
    moved = _logprobs_by_turn(model, changed(2, "context"))  # turn 2's last observation token
    assert [moved[j] == base[j] for j in range(5)] == [True, True, False, True, True]
    prompt = [TurnTokens([(t.context[0] + 1) % VOCAB, *t.context[1:]], t.generated) for t in turns]
    moved = _logprobs_by_turn(model, prompt)  # the shared prefix: every turn
    assert not any(moved[j] == pytest.approx(base[j], abs=1e-6) for j in range(5))


def _logprobs_by_turn(model, turns):
    batch = collate([prefix_cache_sample(turns)])
    return {j: lps for (_, j), lps in by_turn(batch, forward(model, batch).logprobs).items()}


def test_configs_accept_the_layout():
    assert SFTConfig(layout="prefix-cache").layout == "prefix-cache"
    assert LearnerConfig(layout="prefix-cache").layout == "prefix-cache"


@pytest.fixture(scope="module")
def oracle_trajectories(tiny_model_dir):
    return play_oracle("MEM1-MultiHopQA-2", str(tiny_model_dir), episodes=2, concurrency=2)


def test_sft_on_oracle_records_matches_per_turn(tiny_model_dir, oracle_trajectories):
    """Real records end to end (build_samples -> collate -> forward -> backward -> AdamW), two steps."""
    from transformers import AutoModelForCausalLM

    per_turn, cached = (build_samples(oracle_trajectories, layout) for layout in ("per-turn", "prefix-cache"))
    assert min(len(t.turns) for t in oracle_trajectories) >= 3  # multi-turn: the prefix is shared
    assert len(cached.samples) == len(oracle_trajectories) < len(per_turn.samples)
    # the same (trajectory, token) address for every sampled token, in the same order
    assert cached.lengths == per_turn.lengths and torch.equal(token_index(cached), token_index(per_turn))
    losses = {}
    for layout in ("per-turn", "prefix-cache"):
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        # one mini-batch holds every sample of either layout: both steps see the same tokens
        config = SFTConfig(epochs=2, lr=1e-3, warmup_steps=0, micro_batch_size=4, mini_batch_size=64,
                           layout=layout, device="cpu")
        losses[layout] = sft(model, oracle_trajectories, config)
    assert losses["prefix-cache"][0] > 1.0  # an untrained model: a loss that could differ
    assert losses["prefix-cache"] == pytest.approx(losses["per-turn"], abs=1e-5)
