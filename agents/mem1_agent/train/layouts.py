"""Training batches built from what the policy actually saw: one sample per turn, or one stitched sequence.

A MEM1 rollout re-reads a different context at every turn (task prompt + last internal state + last
action + last observation), so a trajectory is not one causal sequence. Two exact layouts:

(a) **per turn**: sample j is ``context_j + generated_j``; loss on ``generated_j``. Exact by
    construction, but every sample recomputes the task prompt.
(b) **stitched**: the prefix every context shares (at least the task prompt) once, then for each
    turn its re-read remainder and its generated tokens::

        [ prefix | rest_1 gen_1 | rest_2 gen_2 | ... ]      rest_j = context_j[len(prefix):]

    with position ids restarting after the prefix for each turn (turn j's tokens sit at the
    positions they had in the rollout) and an additive mask (:func:`stitched_attention_mask`) so
    that turn j sees the prefix and its own segment only. Every sampled token then has exactly
    its rollout context, and the prefix is computed once per trajectory.

The original MEM1 stitched layout was not exact: its 0/1 mask was added to the scores as +1/+0
(masking nothing), it hid the previous internal state, and it used global positions
(reference/mem1.md §2.3–2.4). A test checks (b) against (a) and against the sampling log-probs.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch


class TurnTokens(NamedTuple):
    """One turn as sampled: the exact context ids fed to the policy and the ids it generated."""

    context: Sequence[int]
    generated: Sequence[int]


class Batch(NamedTuple):
    """Model inputs plus where the sampled tokens are. Padding is on the right."""

    input_ids: torch.Tensor  # (B, S) int64
    position_ids: torch.Tensor  # (B, S) int64
    attention_mask: torch.Tensor  # (B, 1, S, S) additive float: 0 allowed, finfo.min masked
    target_ids: torch.Tensor  # (B, S) the token whose log-prob is read at this slot (0 where unused)
    logit_index: torch.Tensor  # (B, S) index of the slot whose logits predict target_ids (0 where unused)
    loss_mask: torch.Tensor  # (B, S) float, 1 exactly on sampled tokens
    turn_index: torch.Tensor  # (B, S) which turn a sampled token belongs to (-1 elsewhere)


def shared_prefix_length(contexts: Sequence[Sequence[int]]) -> int:
    """Length of the longest prefix common to every context (the task prompt, at least)."""
    first = contexts[0]
    n = min(len(c) for c in contexts)
    for i in range(n):
        token = first[i]
        if any(c[i] != token for c in contexts):
            return i
    return n


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
    allowed = torch.zeros(total_len, total_len, dtype=torch.bool)
    causal = torch.ones(total_len, total_len, dtype=torch.bool).tril()
    allowed[:, :prefix_len] = True
    start = prefix_len
    for length in segment_lens:
        allowed[start : start + length, start : start + length] = True
        start += length
    allowed &= causal
    allowed[start:, start:] |= torch.eye(total_len - start, dtype=torch.bool)  # padding: itself
    mask = torch.zeros(total_len, total_len, dtype=dtype)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[None, None]  # (1, 1, S, S)


def per_turn_samples(turns: Sequence[TurnTokens]) -> list[dict]:
    """Layout (a): one sample per turn, ``context + generated``, loss on the generated tokens."""
    samples = []
    for j, turn in enumerate(turns):
        ids = list(turn.context) + list(turn.generated)
        n_ctx = len(turn.context)
        samples.append({
            "ids": ids,
            "positions": list(range(len(ids))),
            "prefix_len": len(ids),  # plain causal attention over the whole sample
            "segments": [],
            "targets": [(n_ctx + i, n_ctx + i - 1, j) for i in range(len(turn.generated))],
        })
    return samples


def stitched_sample(turns: Sequence[TurnTokens]) -> dict:
    """Layout (b): the whole trajectory as one sequence (see the module docstring)."""
    prefix_len = shared_prefix_length([t.context for t in turns])
    if prefix_len == 0:
        raise ValueError("turns share no prefix: the stitched layout needs a common task prompt; use per-turn samples")
    ids = list(turns[0].context[:prefix_len])
    positions = list(range(prefix_len))
    segments, targets = [], []
    for j, turn in enumerate(turns):
        rest = list(turn.context[prefix_len:])
        segment = rest + list(turn.generated)
        start = len(ids)
        ids += segment
        positions += range(prefix_len, prefix_len + len(segment))
        segments.append(len(segment))
        for i in range(len(turn.generated)):
            slot = start + len(rest) + i
            # The first sampled token of a turn with nothing re-read is predicted by the prefix's
            # last token, which is not adjacent in the stitched sequence.
            previous = slot - 1 if len(rest) + i > 0 else prefix_len - 1
            targets.append((slot, previous, j))
    return {"ids": ids, "positions": positions, "prefix_len": prefix_len, "segments": segments, "targets": targets}


def collate(samples: Sequence[dict], pad_id: int = 0, dtype: torch.dtype = torch.float32) -> Batch:
    """Right-pad samples into a :class:`Batch` with one additive 4-D mask per sample."""
    total = max(len(s["ids"]) for s in samples)
    b = len(samples)
    input_ids = torch.full((b, total), pad_id, dtype=torch.long)
    position_ids = torch.zeros((b, total), dtype=torch.long)
    target_ids = torch.zeros((b, total), dtype=torch.long)
    logit_index = torch.zeros((b, total), dtype=torch.long)
    loss_mask = torch.zeros((b, total))
    turn_index = torch.full((b, total), -1, dtype=torch.long)
    masks = []
    for row, s in enumerate(samples):
        n = len(s["ids"])
        input_ids[row, :n] = torch.tensor(s["ids"])
        position_ids[row, :n] = torch.tensor(s["positions"])
        for slot, previous, turn in s["targets"]:
            target_ids[row, slot] = s["ids"][slot]
            logit_index[row, slot] = previous
            loss_mask[row, slot] = 1.0
            turn_index[row, slot] = turn
        masks.append(stitched_attention_mask(s["prefix_len"], s["segments"], total, dtype))
    return Batch(input_ids, position_ids, torch.cat(masks), target_ids, logit_index, loss_mask, turn_index)


def token_logprobs(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Log-prob of every target token under ``model`` (0 where ``loss_mask`` is 0). Returns (B, S)."""
    mask = batch.attention_mask.to(next(model.parameters()).dtype)
    logits = model(input_ids=batch.input_ids, attention_mask=mask, position_ids=batch.position_ids).logits  # (B, S, V)
    predicting = torch.gather(logits, 1, batch.logit_index[..., None].expand(-1, -1, logits.shape[-1]))  # (B, S, V)
    logprobs = torch.log_softmax(predicting.float(), dim=-1)
    picked = torch.gather(logprobs, 2, batch.target_ids[..., None])[..., 0]  # (B, S)
    return picked * batch.loss_mask
