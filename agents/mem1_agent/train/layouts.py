"""Training batches built from what the policy actually saw: per turn, stitched, or a cached shared prefix.

A MEM1 rollout re-reads a different context at every turn (task prompt + last internal state + last
action + last observation), so a trajectory is not one causal sequence. Three exact layouts:

(a) **per turn**: sample j is ``context_j + generated_j``; loss on ``generated_j``. Exact by
    construction, but every sample recomputes the task prompt.
(b) **stitched**: the prefix every context shares (at least the task prompt) once, then for each
    turn its re-read remainder and its generated tokens::

        [ prefix | rest_1 gen_1 | rest_2 gen_2 | ... ]      rest_j = context_j[len(prefix):]

    with position ids restarting after the prefix for each turn (turn j's tokens sit at the
    positions they had in the rollout) and an additive mask (:func:`stitched_attention_mask`) so
    that turn j sees the prefix and its own segment only. Every sampled token then has exactly
    its rollout context, and the prefix is computed once per trajectory; but the mask is dense
    (S x S over the whole trajectory), so attention grows with the square of the number of turns.
(c) **prefix cache**: two forward passes. Pass 1 runs, per trajectory, the shared prefix and one
    whole turn after it (the shortest: usually turn 0, whose context *is* the prefix) with plain
    causal attention and ``use_cache=True``, with gradient. Pass 2 runs every other turn as one
    row that reads its trajectory's prefix keys and values from that cache::

        pass 1:  [ prefix | rest_0 gen_0 ]                   one row per trajectory, K/V cached
        pass 2:  [ rest_1 gen_1 ]  [ rest_2 gen_2 ]  ...     one row per other turn: its trajectory's
                                                               prefix K/V (not turn 0's), then itself

    Every turn's tokens sit at their rollout positions and see exactly their rollout context
    (:func:`prefix_cache_attention_mask`); the gradient of every row flows back through the shared
    K/V into pass 1, so loss and gradients are those of (a). The prefix is computed once, like
    (b), and attention is linear in the number of turns, like (a). The cached prefix stops one
    token short of the shared one, which starts every row instead, so that the token predicting
    a row's first sampled token is in that row. Running the shortest turn in pass 1 spares pass 2
    its padding (MEM1's turn 0 samples ~40 tokens; the other turns also re-read ~450).

A sample is a typed record: :class:`SequenceSample` for (a) and (b) (one model row each, which
:func:`collate` pads into a :class:`Batch`) and :class:`PrefixCacheSample` for (c) (a
:class:`PrefixCacheBatch`). Building and collating them are tensor operations; the only Python loops
run over turns and samples, never over tokens. Running the model on a batch is
:mod:`mem1_agent.train.ppo`'s job (:func:`~mem1_agent.train.ppo.read_outputs`), next to the PPO maths.

The original MEM1 stitched layout was not exact: its 0/1 mask was added to the scores as +1/+0
(masking nothing), it hid the previous internal state, and it used global positions
(reference/mem1.md §2.3–2.4). Tests check (b) and (c) against (a) and against the sampling log-probs.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch.nn.utils.rnn import pad_sequence


class TurnTokens(NamedTuple):
    """One turn as sampled: the exact context ids fed to the policy and the ids it generated."""

    context: Sequence[int]
    generated: Sequence[int]


class SequenceSample(NamedTuple):
    """A sample of layout (a) or (b): one model row, and where its sampled tokens sit in it.

    Per turn it is ``context + generated`` with plain causal attention (``prefix_len`` = every slot,
    no segments); stitched it is the prefix then each turn's segment (:func:`stitched_attention_mask`).
    """

    ids: torch.Tensor  # (S,) int64
    positions: torch.Tensor  # (S,) int64: the position each slot had in the rollout
    prefix_len: int  # leading slots every later slot sees (per turn: all S, i.e. plain causal attention)
    segments: tuple[int, ...]  # lengths of the turn segments after the prefix (per turn: none)
    slots: torch.Tensor  # (K,) int64: slot of each sampled token, in generation order
    logit_slots: torch.Tensor  # (K,) int64: slot whose logits predict it
    turns: torch.Tensor  # (K,) int64: the turn that sampled it

    @property
    def n_sampled(self) -> int:
        return len(self.slots)


class PrefixCacheSample(NamedTuple):
    """A sample of layout (c): one trajectory as a cached prefix, one row per turn, and its lead turn."""

    prefix: torch.Tensor  # (P,) int64: the cached prefix (the shared one less its last token)
    rows: tuple[torch.Tensor, ...]  # per turn (J,), (L_j,) int64: its context after the prefix, then its sampled ids
    lead: int  # the turn run in pass 1 after the prefix (the shortest row)
    turns: torch.Tensor  # (K,) int64: the turn of each sampled token, in generation order
    cols: torch.Tensor  # (K,) int64: its column in that turn's row

    @property
    def n_sampled(self) -> int:
        return len(self.turns)


Sample = SequenceSample | PrefixCacheSample


class Batch(NamedTuple):
    """Model inputs plus where the sampled tokens are. Padding is on the right."""

    input_ids: torch.Tensor  # (B, S) int64
    position_ids: torch.Tensor  # (B, S) int64
    attention_mask: torch.Tensor  # (B, 1, S, S) additive float: 0 allowed, finfo.min masked
    target_ids: torch.Tensor  # (B, S) the token whose log-prob is read at this slot (0 where unused)
    logit_index: torch.Tensor  # (B, S) index of the slot whose logits predict target_ids (0 where unused)
    loss_mask: torch.Tensor  # (B, S) float, 1 exactly on sampled tokens
    turn_index: torch.Tensor  # (B, S) which turn a sampled token belongs to (-1 elsewhere)


class PrefixCacheBatch(NamedTuple):
    """Model inputs of layout (c): B trajectories, R turn rows in pass 2. Padding is on the right.

    The model runs on the first five fields; the last five are per trajectory, slot k of row b
    being the k-th sampled token of trajectory b, so that the learner's per-sample vectors line up
    with ``loss_mask`` exactly as they do for a :class:`Batch`.
    """

    lead_ids: torch.Tensor  # (B, W) int64: pass 1, the cached prefix then the trajectory's lead turn
    row_ids: torch.Tensor  # (R, L) int64: pass 2, one row per other turn: rest of its context, sampled tokens
    row_positions: torch.Tensor  # (R, L) int64: rollout positions (the owner's cached prefix length + arange)
    row_owner: torch.Tensor  # (R,) int64: the trajectory (pass-1 row) whose prefix K/V row r reads
    attention_mask: torch.Tensor  # (R, 1, L, W + L) additive float over [pass-1 keys | row]
    read_row: torch.Tensor  # (B, T) output row predicting this slot's token: b < B in pass 1, B + r in pass 2
    read_col: torch.Tensor  # (B, T) column of that output in its row
    target_ids: torch.Tensor  # (B, T) the sampled token (0 where unused)
    loss_mask: torch.Tensor  # (B, T) float, 1 on the first (number of sampled tokens) slots
    turn_index: torch.Tensor  # (B, T) which turn a sampled token belongs to (-1 elsewhere)


def _ids(tokens: Sequence[int]) -> torch.Tensor:
    return torch.as_tensor(tokens, dtype=torch.long)


def shared_prefix_length(contexts: Sequence[Sequence[int]]) -> int:
    """Length of the longest prefix common to every context (the task prompt, at least)."""
    n = min(len(c) for c in contexts)
    heads = torch.stack([_ids(c[:n]) for c in contexts])  # (J, n)
    differs = torch.nonzero((heads != heads[:1]).any(0))
    return int(differs[0]) if len(differs) else n


def stitched_attention_mask(prefix_len: int, segment_lens: Sequence[int], total_len: int,
                            dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The one place the stitched masking rule lives. Returns an additive (1, 1, total_len, total_len) mask.

    Who attends to whom (query row -> key column), ``P`` = prefix, ``S_j`` = segment of turn j::

        query \\ key   P          S_1        S_2        padding
        P             causal     -          -          -
        S_1           all        causal     -          -
        S_2           all        -          causal     -
        padding       all        -          -          itself

    0 where allowed, ``torch.finfo(dtype).min`` where not. Never a bool mask added as a float:
    with eager attention that adds +1/+0 and masks nothing (SETUP-NOTES; the original MEM1 bug).
    Padding rows attend to the prefix and themselves so that no row is fully masked (a fully
    masked softmax gives NaN); their outputs are never read.
    """
    n_turns, end = len(segment_lens), prefix_len + sum(segment_lens)
    # segment of every slot: 0 the prefix, j + 1 turn j, a distinct id for each padding slot (it sees only itself)
    segment = torch.cat([torch.zeros(prefix_len, dtype=torch.long),
                         torch.arange(1, n_turns + 1).repeat_interleave(torch.tensor(segment_lens, dtype=torch.long)),
                         torch.arange(n_turns + 1, n_turns + 1 + total_len - end)])  # (S,)
    causal = torch.ones(total_len, total_len, dtype=torch.bool).tril()
    allowed = causal & ((segment[None, :] == 0) | (segment[:, None] == segment[None, :]))
    mask = torch.zeros(total_len, total_len, dtype=dtype)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[None, None]  # (1, 1, S, S)


def prefix_cache_attention_mask(prefix_lens: torch.Tensor, prefix_width: int, row_len: int,
                                dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The one place layout (c)'s pass-2 masking rule lives. Returns an additive (R, 1, row_len, prefix_width + row_len) mask.

    Row r's keys are pass 1's cache (``prefix_width`` of them: its trajectory's prefix ``P``, the
    lead turn ``S_lead``, padding) followed by the row ``S_j`` itself (query row -> key column)::

        query \\ key   P (cached)   S_lead (cached)   pass-1 padding   S_j        S_j padding
        S_j           all          -                 -                causal     -
        S_j padding   all          -                 -                causal     causal

    ``P`` is the first ``prefix_lens[r]`` cached keys. Pass 1 itself is plain causal attention
    over ``P + S_lead``, which is its rollout context. Padding at the end of a row is never seen by
    a real token (causality); padding queries see at least themselves, so no softmax row is fully
    masked. 0 where allowed, ``torch.finfo(dtype).min`` where not, never a bool added as a float.
    """
    cached = torch.arange(prefix_width)[None, None, :] < prefix_lens[:, None, None]  # (R, 1, P)
    causal = torch.ones(row_len, row_len, dtype=torch.bool).tril()  # (L, L)
    allowed = torch.cat([cached.expand(-1, row_len, -1), causal.expand(len(prefix_lens), -1, -1)], dim=2)
    mask = torch.zeros(allowed.shape, dtype=dtype)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[:, None]  # (R, 1, L, P + L)


def per_turn_samples(turns: Sequence[TurnTokens]) -> list[SequenceSample]:
    """Layout (a): one sample per turn, ``context + generated``, loss on the generated tokens."""
    samples = []
    for j, turn in enumerate(turns):
        ids = _ids([*turn.context, *turn.generated])
        slots = torch.arange(len(turn.context), len(ids))
        samples.append(SequenceSample(ids, torch.arange(len(ids)), len(ids), (), slots, slots - 1,
                                      torch.full_like(slots, j)))
    return samples


def stitched_sample(turns: Sequence[TurnTokens]) -> SequenceSample:
    """Layout (b): the whole trajectory as one sequence (see the module docstring)."""
    prefix_len = shared_prefix_length([t.context for t in turns])
    if prefix_len == 0:
        raise ValueError("turns share no prefix: the stitched layout needs a common task prompt; use per-turn samples")
    pieces, positions = [_ids(turns[0].context[:prefix_len])], [torch.arange(prefix_len)]
    slots, previous, turn_of, segments = [], [], [], []
    start = prefix_len  # where the current turn's segment begins
    for j, turn in enumerate(turns):
        n_rest, n_generated = len(turn.context) - prefix_len, len(turn.generated)
        pieces += [_ids(turn.context[prefix_len:]), _ids(turn.generated)]
        positions.append(torch.arange(prefix_len, prefix_len + n_rest + n_generated))
        slot = torch.arange(start + n_rest, start + n_rest + n_generated)
        before = slot - 1
        if n_rest == 0 and n_generated:
            # The first sampled token of a turn with nothing re-read is predicted by the prefix's
            # last token, which is not adjacent in the stitched sequence.
            before[0] = prefix_len - 1
        slots.append(slot)
        previous.append(before)
        turn_of.append(torch.full_like(slot, j))
        segments.append(n_rest + n_generated)
        start += n_rest + n_generated
    return SequenceSample(torch.cat(pieces), torch.cat(positions), prefix_len, tuple(segments), torch.cat(slots),
                          torch.cat(previous), torch.cat(turn_of))


def prefix_cache_sample(turns: Sequence[TurnTokens]) -> PrefixCacheSample:
    """Layout (c): the cached prefix, one row per turn, and which row runs in pass 1 (module docstring).

    The cached prefix is the shared one less its last token, which starts every row instead: it
    predicts the first sampled token of a turn that re-reads nothing after the prefix. Turns that
    share nothing are still exact (an empty prefix: every row is its whole context, as in (a)).
    """
    cached = max(shared_prefix_length([t.context for t in turns]) - 1, 0)
    rows, turn_of, cols = [], [], []
    for j, turn in enumerate(turns):
        n_rest = len(turn.context) - cached
        if n_rest == 0:
            raise ValueError(f"turn {j} has an empty context: nothing predicts its first sampled token")
        rows.append(_ids([*turn.context[cached:], *turn.generated]))
        cols.append(torch.arange(n_rest, len(rows[-1])))
        turn_of.append(torch.full_like(cols[-1], j))
    lead = min(range(len(rows)), key=lambda j: len(rows[j]))
    return PrefixCacheSample(_ids(turns[0].context[:cached]), tuple(rows), lead, torch.cat(turn_of), torch.cat(cols))


def collate(samples: Sequence[Sample], pad_id: int = 0, dtype: torch.dtype = torch.float32,
            two_passes: bool = False) -> Batch | PrefixCacheBatch:
    """Right-pad samples of one layout into a batch: a :class:`PrefixCacheBatch` for layout (c), else a :class:`Batch`.

    ``two_passes`` (layout (c) only): when no turn needs pass 2, give it one placeholder row of ``pad_id``
    that no sampled token is read from, so the model is called twice whatever the data. Sharded (FSDP2)
    training needs that: every model call is a collective every rank must make alike.
    """
    kinds = {type(s) for s in samples}
    if len(kinds) > 1:
        raise ValueError("a micro-batch mixes prefix-cache samples with per-turn/stitched ones")
    if kinds == {PrefixCacheSample}:
        return _collate_prefix_cache(samples, pad_id, dtype, two_passes)
    if kinds != {SequenceSample}:
        raise TypeError(f"collate takes SequenceSample or PrefixCacheSample records (per_turn_samples, "
                        f"stitched_sample, prefix_cache_sample), got {sorted(k.__name__ for k in kinds)}")
    input_ids = pad_sequence([s.ids for s in samples], batch_first=True, padding_value=pad_id)  # (B, S)
    position_ids = pad_sequence([s.positions for s in samples], batch_first=True)  # (B, S), 0 on padding
    b, total = input_ids.shape
    # (row, slot) of every sampled token of the batch, one sample after the other
    rows = torch.repeat_interleave(torch.arange(b), torch.tensor([s.n_sampled for s in samples]))
    slots = torch.cat([s.slots for s in samples])
    target_ids = torch.zeros_like(input_ids)
    target_ids[rows, slots] = input_ids[rows, slots]
    logit_index = torch.zeros_like(input_ids)
    logit_index[rows, slots] = torch.cat([s.logit_slots for s in samples])
    loss_mask = torch.zeros((b, total))
    loss_mask[rows, slots] = 1.0
    turn_index = torch.full_like(input_ids, -1)
    turn_index[rows, slots] = torch.cat([s.turns for s in samples])
    masks = torch.cat([stitched_attention_mask(s.prefix_len, s.segments, total, dtype) for s in samples])
    return Batch(input_ids, position_ids, masks, target_ids, logit_index, loss_mask, turn_index)


def _collate_prefix_cache(samples: Sequence[PrefixCacheSample], pad_id: int, dtype: torch.dtype,
                          two_passes: bool) -> PrefixCacheBatch:
    """Layout (c) samples into a :class:`PrefixCacheBatch`: pass-1 rows, pass-2 rows and the read map."""
    b = len(samples)
    lead_ids = pad_sequence([torch.cat([s.prefix, s.rows[s.lead]]) for s in samples], batch_first=True,
                            padding_value=pad_id)  # (B, W)
    others = [(owner, j) for owner, s in enumerate(samples) for j in range(len(s.rows)) if j != s.lead]
    rows = [samples[owner].rows[j] for owner, j in others]
    owners = [owner for owner, _ in others]
    if two_passes and not rows:
        rows, owners = [_ids([pad_id])], [0]  # read by nothing: it only makes pass 2 run (see collate)
    row_ids = (pad_sequence(rows, batch_first=True, padding_value=pad_id) if rows
               else torch.zeros((0, 0), dtype=torch.long))  # (R, L)
    row_owner = torch.tensor(owners, dtype=torch.long)  # (R,)
    prefix_lens = torch.tensor([len(samples[owner].prefix) for owner in owners], dtype=torch.long)  # (R,)
    row_positions = prefix_lens[:, None] + torch.arange(row_ids.shape[1])[None, :]  # (R, L)
    read_row, read_col, target_ids = [], [], []
    first_row = b  # pass-2 rows are numbered after the B pass-1 rows, in the order of ``others``
    for owner, s in enumerate(samples):
        turn = torch.arange(len(s.rows))
        row_of = torch.where(turn == s.lead, owner, first_row + turn - (turn > s.lead).long())  # (J,)
        first_row += len(s.rows) - 1
        in_lead = s.turns == s.lead
        read_row.append(row_of[s.turns])
        # every row holds the token before its first sampled one; pass 1's row starts with the prefix
        read_col.append(s.cols - 1 + in_lead.long() * len(s.prefix))
        lengths = torch.tensor([len(r) for r in s.rows])
        target_ids.append(torch.cat(s.rows)[lengths.cumsum(0)[s.turns] - lengths[s.turns] + s.cols])
    n_sampled = torch.tensor([s.n_sampled for s in samples])
    width = int(n_sampled.max())
    loss_mask = (torch.arange(width)[None, :] < n_sampled[:, None]).float()  # (B, T)

    def padded(vectors: list[torch.Tensor], value: int) -> torch.Tensor:  # (B, T)
        return pad_sequence(vectors, batch_first=True, padding_value=value)

    mask = prefix_cache_attention_mask(prefix_lens, lead_ids.shape[1], row_ids.shape[1], dtype)
    return PrefixCacheBatch(lead_ids, row_ids, row_positions, row_owner, mask, padded(read_row, 0),
                            padded(read_col, 0), padded(target_ids, 0), loss_mask,
                            padded([s.turns for s in samples], -1))
