"""The vectorised samples, batches and views equal a straightforward token-by-token reference on random ragged data.

The references below are the plain loops the library replaced (one Python step per token); the library
must give the same tensors, dtypes and shapes on trajectories of random lengths, prefixes and turn counts.
"""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
import torch
from mem1_agent.train.layouts import (
    Batch,
    PrefixCacheBatch,
    PrefixCacheSample,
    SequenceSample,
    TurnTokens,
    collate,
    per_turn_samples,
    prefix_cache_sample,
    stitched_sample,
)
from mem1_agent.train.samples import (
    Samples,
    gather_from_batch,
    scatter_to_batch,
    to_sample_view,
    to_trajectory_view,
    token_rewards,
)

NEG = torch.finfo(torch.float32).min


def random_turns(rng: random.Random) -> list[TurnTokens]:
    """MEM1-shaped turns over a 5-token vocabulary (so that contexts share more than the prompt by chance)."""
    draw = lambda lo, hi: [rng.randrange(5) for _ in range(rng.randrange(lo, hi))]  # noqa: E731
    prompt, last, turns = draw(1, 6), [], []
    for _ in range(rng.randrange(1, 5)):
        generated = draw(1, 5)
        turns.append(TurnTokens(prompt + last, generated))
        last = generated + draw(0, 4) if rng.random() < 0.8 else []  # sometimes nothing re-read
    return turns


def reference_sequence_batch(rows: list[tuple[list[int], list[int], int, list[int], list[tuple]]],
                             pad_id: int) -> Batch:
    """Rows of (ids, positions, prefix length, segment lengths, [(slot, predicting slot, turn)]), one token at a time."""
    b, total = len(rows), max(len(r[0]) for r in rows)
    out = Batch(torch.full((b, total), pad_id), torch.zeros(b, total, dtype=torch.long),
                torch.full((b, 1, total, total), NEG), torch.zeros(b, total, dtype=torch.long),
                torch.zeros(b, total, dtype=torch.long), torch.zeros(b, total), torch.full((b, total), -1))
    for row, (ids, positions, prefix_len, segments, targets) in enumerate(rows):
        segment_of = [0] * prefix_len + [j + 1 for j, n in enumerate(segments) for _ in range(n)]
        for q in range(total):
            out.input_ids[row, q] = ids[q] if q < len(ids) else pad_id
            out.position_ids[row, q] = positions[q] if q < len(ids) else 0
            for k in range(q + 1):
                sees = k < prefix_len or k == q or (q < len(segment_of) and segment_of[k] == segment_of[q])
                out.attention_mask[row, 0, q, k] = 0.0 if sees else NEG
        for slot, previous, turn in targets:
            out.target_ids[row, slot], out.logit_index[row, slot] = ids[slot], previous
            out.loss_mask[row, slot], out.turn_index[row, slot] = 1.0, turn
    return out


def reference_per_turn(turns: list[TurnTokens]) -> list[tuple]:
    rows = []
    for j, (context, generated) in enumerate(turns):
        ids = list(context) + list(generated)
        targets = [(len(context) + i, len(context) + i - 1, j) for i in range(len(generated))]
        rows.append((ids, list(range(len(ids))), len(ids), [], targets))
    return rows


def reference_stitched(turns: list[TurnTokens]) -> tuple:
    p = 0
    while all(len(t.context) > p and t.context[p] == turns[0].context[p] for t in turns):
        p += 1
    ids, positions, segments, targets = list(turns[0].context[:p]), list(range(p)), [], []
    for j, (context, generated) in enumerate(turns):
        rest = list(context[p:])
        for i in range(len(generated)):
            slot = len(ids) + len(rest) + i
            targets.append((slot, slot - 1 if rest or i else p - 1, j))
        positions += list(range(p, p + len(rest) + len(generated)))
        segments.append(len(rest) + len(generated))
        ids += rest + list(generated)
    return ids, positions, p, segments, targets


def reference_prefix_cache(trajectories: list[list[TurnTokens]], pad_id: int, two_passes: bool) -> PrefixCacheBatch:
    """Layout (c) of several trajectories, token by token (the cached prefix: the shared one less one token)."""
    samples = []
    for turns in trajectories:
        p = 0
        while all(len(t.context) > p and t.context[p] == turns[0].context[p] for t in turns):
            p += 1
        cached = max(p - 1, 0)
        rows = [list(t.context[cached:]) + list(t.generated) for t in turns]
        lead = min(range(len(rows)), key=lambda j: len(rows[j]))
        reads = [(j, len(t.context) - cached + i) for j, t in enumerate(turns) for i in range(len(t.generated))]
        samples.append((list(turns[0].context[:cached]), rows, lead, reads))
    others = [(owner, row) for owner, (_, rows, lead, _) in enumerate(samples) for j, row in enumerate(rows)
              if j != lead] or ([(0, [pad_id])] if two_passes else [])
    b, width = len(samples), max(len(s[3]) for s in samples)
    lead_width = max(len(prefix) + len(rows[lead]) for prefix, rows, lead, _ in samples)
    row_len = max((len(row) for _, row in others), default=0)
    lead_ids, row_ids = torch.full((b, lead_width), pad_id), torch.full((len(others), row_len), pad_id)
    row_positions, mask = torch.zeros(len(others), row_len, dtype=torch.long), torch.full(
        (len(others), 1, row_len, lead_width + row_len), NEG)
    for owner, (prefix, rows, lead, _) in enumerate(samples):
        for c, token in enumerate(prefix + rows[lead]):
            lead_ids[owner, c] = token
    for r, (owner, row) in enumerate(others):
        n_prefix = len(samples[owner][0])
        for q in range(row_len):
            row_ids[r, q] = row[q] if q < len(row) else pad_id
            row_positions[r, q] = n_prefix + q
            for k in range(lead_width + row_len):
                mask[r, 0, q, k] = 0.0 if k < n_prefix or lead_width <= k <= lead_width + q else NEG
    read_row, read_col = torch.zeros(b, width, dtype=torch.long), torch.zeros(b, width, dtype=torch.long)
    target_ids, loss_mask, turn_index = torch.zeros(b, width, dtype=torch.long), torch.zeros(b, width), \
        torch.full((b, width), -1)
    next_row = b
    for owner, (prefix, rows, lead, reads) in enumerate(samples):
        row_of = {}
        for j in range(len(rows)):
            if j != lead:
                row_of[j], next_row = next_row, next_row + 1
        for k, (j, col) in enumerate(reads):
            read_row[owner, k] = owner if j == lead else row_of[j]
            read_col[owner, k] = len(prefix) + col - 1 if j == lead else col - 1
            target_ids[owner, k], loss_mask[owner, k], turn_index[owner, k] = rows[j][col], 1.0, j
    return PrefixCacheBatch(lead_ids, row_ids, row_positions, torch.tensor([o for o, _ in others], dtype=torch.long),
                            mask, read_row, read_col, target_ids, loss_mask, turn_index)


def assert_same(got, expected) -> None:
    assert type(got) is type(expected)
    for name, a, b in zip(expected._fields, got, expected):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), name


@pytest.mark.parametrize("seed", range(20))
def test_collate_equals_the_token_by_token_reference(seed):
    rng = random.Random(seed)
    trajectories = [random_turns(rng) for _ in range(rng.randrange(1, 4))]
    pad_id = rng.randrange(5)
    per_turn = [s for t in trajectories for s in per_turn_samples(t)]
    assert all(type(s) is SequenceSample for s in per_turn)
    assert_same(collate(per_turn, pad_id),
                reference_sequence_batch([r for t in trajectories for r in reference_per_turn(t)], pad_id))
    if all(t[0].context[0] == u.context[0] for t in trajectories for u in t):  # stitched needs a shared prefix
        assert_same(collate([stitched_sample(t) for t in trajectories], pad_id),
                    reference_sequence_batch([reference_stitched(t) for t in trajectories], pad_id))
    for two_passes in (False, True):
        cached = [prefix_cache_sample(t) for t in trajectories]
        assert all(type(s) is PrefixCacheSample for s in cached)
        assert_same(collate(cached, pad_id, two_passes=two_passes),
                    reference_prefix_cache(trajectories, pad_id, two_passes))


def test_collate_refuses_a_mixed_or_untyped_micro_batch():
    turns = [TurnTokens([1, 2], [3]), TurnTokens([1, 2, 3, 4], [5])]
    with pytest.raises(ValueError, match="mixes"):
        collate([prefix_cache_sample(turns), stitched_sample(turns)])
    with pytest.raises(TypeError, match="SequenceSample or PrefixCacheSample"):
        collate([{"ids": [1, 2], "targets": []}])


def reference_token_rewards(turns) -> list[float]:
    rewards, pending = [], 0.0
    for turn in turns:
        pending += turn.reward
        if turn.generated_ids:
            rewards += [0.0] * (len(turn.generated_ids) - 1) + [pending]
            pending = 0.0
    if rewards:
        rewards[-1] += pending
    return rewards


@pytest.mark.parametrize("seed", range(10))
def test_token_rewards_equal_the_reference(seed):
    rng = random.Random(seed)
    for _ in range(50):  # turns that sampled nothing pass their reward on, or back at the end
        turns = [SimpleNamespace(generated_ids=[7] * rng.choice([0, 0, 1, 3]), reward=rng.choice([0.0, 1.0, 2 / 3]))
                 for _ in range(rng.randrange(1, 6))]
        expected = torch.tensor(reference_token_rewards(turns), dtype=torch.float64).float()
        assert torch.equal(token_rewards(SimpleNamespace(turns=turns)), expected)


@pytest.mark.parametrize("seed", range(10))
def test_views_equal_the_reference(seed):
    """Samples of random sizes cut from trajectories of random lengths: the two views and the batch slots."""
    g, rng = torch.Generator().manual_seed(seed), random.Random(seed)
    lengths = [rng.choice([0, 1, 4, 9]) for _ in range(rng.randrange(1, 6))]
    samples, owner, offset, owners = [], [], [], []
    for traj, n in enumerate(lengths):
        first = 0
        while first < n:
            k = rng.randrange(1, n - first + 1)
            samples.append(per_turn_samples([TurnTokens([1], [2] * k)])[0])
            owner.append(traj)
            offset.append(first)
            owners.append([(traj, first + i) for i in range(k)])
            first += k
    data = Samples(samples, owner, offset, lengths)
    vectors = [torch.randn(len(o), generator=g) for o in owners]
    expected = torch.zeros(len(lengths), max(lengths) or 1)
    for values, addresses in zip(vectors, owners):
        for value, (traj, k) in zip(values.tolist(), addresses):
            expected[traj, k] = value
    assert torch.equal(to_trajectory_view(vectors, data), expected)
    per_traj = torch.randn(expected.shape, generator=g)
    back = to_sample_view(per_traj, data)
    assert [v.tolist() for v in back] == [[float(per_traj[t, k]) for t, k in o] for o in owners]
    if samples:
        batch = collate(samples)
        placed = scatter_to_batch(vectors, batch.loss_mask)
        for row, values in enumerate(vectors):
            assert placed[row][batch.loss_mask[row] > 0].tolist() == values.tolist()
        assert placed[batch.loss_mask == 0].eq(0).all()
        assert [v.tolist() for v in gather_from_batch(placed, batch.loss_mask)] == [v.tolist() for v in vectors]
