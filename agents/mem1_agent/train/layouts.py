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

Every layout's forward computes logits only where a sampled token is read (:func:`read_outputs`):
the (tokens x vocabulary) projection and softmax of the prompt and observation slots would be
thrown away.

The original MEM1 stitched layout was not exact: its 0/1 mask was added to the scores as +1/+0
(masking nothing), it hid the previous internal state, and it used global positions
(reference/mem1.md §2.3–2.4). Tests check (b) and (c) against (a) and against the sampling log-probs.
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


def prefix_cache_sample(turns: Sequence[TurnTokens]) -> dict:
    """Layout (c): the cached prefix, one row per turn, and which row runs in pass 1 (module docstring).

    The cached prefix is the shared one less its last token, which starts every row instead: it
    predicts the first sampled token of a turn that re-reads nothing after the prefix. Turns that
    share nothing are still exact (an empty prefix: every row is its whole context, as in (a)).
    """
    cached = max(shared_prefix_length([t.context for t in turns]) - 1, 0)
    rows, targets = [], []
    for j, turn in enumerate(turns):
        rest = list(turn.context[cached:])
        if not rest:
            raise ValueError(f"turn {j} has an empty context: nothing predicts its first sampled token")
        rows.append(rest + list(turn.generated))
        targets += [(j, len(rest) + i) for i in range(len(turn.generated))]
    lead = min(range(len(rows)), key=lambda j: len(rows[j]))
    return {"prefix": list(turns[0].context[:cached]), "rows": rows, "lead": lead, "targets": targets}


def collate(samples: Sequence[dict], pad_id: int = 0, dtype: torch.dtype = torch.float32,
            two_passes: bool = False) -> Batch | PrefixCacheBatch:
    """Right-pad samples of one layout into a batch: a :class:`PrefixCacheBatch` for layout (c), else a :class:`Batch`.

    ``two_passes`` (layout (c) only): when no turn needs pass 2, give it one placeholder row of ``pad_id``
    that no sampled token is read from, so the model is called twice whatever the data. Sharded (FSDP2)
    training needs that: every model call is a collective every rank must make alike.
    """
    cached = ["rows" in s for s in samples]
    if any(cached):
        if not all(cached):
            raise ValueError("a micro-batch mixes prefix-cache samples with per-turn/stitched ones")
        return _collate_prefix_cache(samples, pad_id, dtype, two_passes)
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


def _collate_prefix_cache(samples: Sequence[dict], pad_id: int, dtype: torch.dtype,
                          two_passes: bool) -> PrefixCacheBatch:
    """Layout (c) samples into a :class:`PrefixCacheBatch`: pass-1 rows, pass-2 rows and the read map."""
    b = len(samples)
    leads = [s["prefix"] + s["rows"][s["lead"]] for s in samples]
    rows = [(owner, row) for owner, s in enumerate(samples) for j, row in enumerate(s["rows"]) if j != s["lead"]]
    if two_passes and not rows:
        rows = [(0, [pad_id])]  # read by nothing: it only makes pass 2 run (see collate)
    lead_width = max(map(len, leads))
    row_len = max((len(row) for _, row in rows), default=0)
    width = max(len(s["targets"]) for s in samples)
    lead_ids = torch.full((b, lead_width), pad_id, dtype=torch.long)
    row_ids = torch.full((len(rows), row_len), pad_id, dtype=torch.long)
    for owner, ids in enumerate(leads):
        lead_ids[owner, : len(ids)] = torch.tensor(ids)
    for r, (_, row) in enumerate(rows):
        row_ids[r, : len(row)] = torch.tensor(row)
    row_owner = torch.tensor([owner for owner, _ in rows], dtype=torch.long)
    prefix_lens = torch.tensor([len(samples[owner]["prefix"]) for owner, _ in rows], dtype=torch.long)
    row_positions = prefix_lens[:, None] + torch.arange(row_len)[None, :]
    read_row = torch.zeros((b, width), dtype=torch.long)
    read_col = torch.zeros((b, width), dtype=torch.long)
    target_ids = torch.zeros((b, width), dtype=torch.long)
    loss_mask = torch.zeros((b, width))
    turn_index = torch.full((b, width), -1, dtype=torch.long)
    next_row = b  # pass-2 rows are numbered after the B pass-1 rows, in the order of ``rows``
    for owner, s in enumerate(samples):
        row_of = {}
        for j in range(len(s["rows"])):
            if j != s["lead"]:
                row_of[j], next_row = next_row, next_row + 1
        for k, (j, col) in enumerate(s["targets"]):
            # every row holds the token before its first sampled one; pass 1's row starts with the prefix
            if j == s["lead"]:
                read_row[owner, k], read_col[owner, k] = owner, len(s["prefix"]) + col - 1
            else:
                read_row[owner, k], read_col[owner, k] = row_of[j], col - 1
            target_ids[owner, k] = s["rows"][j][col]
            loss_mask[owner, k] = 1.0
            turn_index[owner, k] = j
    mask = prefix_cache_attention_mask(prefix_lens, lead_width, row_len, dtype)
    return PrefixCacheBatch(lead_ids, row_ids, row_positions, row_owner, mask, read_row, read_col, target_ids,
                            loss_mask, turn_index)


class Reads(NamedTuple):
    """The model's outputs where sampled tokens are read, K per batch row, and where they belong."""

    logits: torch.Tensor  # (B, K, V) logits predicting each sampled token
    hidden: torch.Tensor | None  # (B, K, H) last hidden state at the same positions (for a value head)
    target_ids: torch.Tensor  # (B, K) the sampled tokens
    slots: torch.Tensor  # (B, K) their slot in the batch's (B, S) tensors (``loss_mask``, ...)

    def place(self, values: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
        """(B, K) values -> (B, S) aligned with ``loss_mask``, 0 off it."""
        return torch.zeros_like(loss_mask).scatter(1, self.slots, values.to(loss_mask.dtype)) * loss_mask


# Attention implementations that apply an additive (B, 1, Q, K) float mask as given. flash_attention_2
# and kernels like it take only a 2-D padding mask and would train on contexts the policy never saw.
ADDITIVE_MASK_ATTENTION = ("sdpa", "eager")


def check_attention(model: torch.nn.Module) -> None:
    """Refuse a model whose attention cannot take the layouts' additive 4-D masks (issue 19, 1f)."""
    implementation = getattr(getattr(model, "config", None), "_attn_implementation", None)
    if implementation is not None and implementation not in ADDITIVE_MASK_ATTENTION:
        raise ValueError(
            f"the model uses attn_implementation={implementation!r}, which cannot apply the additive 4-D "
            f"attention masks of the training layouts (every turn must see exactly its rollout context); "
            f"load it with attn_implementation=\"sdpa\" (or \"eager\"), e.g. "
            f"AutoModelForCausalLM.from_pretrained(path, attn_implementation=\"sdpa\")"
        )


def read_outputs(model: torch.nn.Module, batch: Batch | PrefixCacheBatch, hidden: bool = False) -> Reads:
    """Run ``model`` on a batch of any layout; logits (and hidden states) only where sampled tokens are read.

    ``logits_to_keep`` (one set of columns for all rows of a pass: the union of their read
    columns) keeps the vocabulary projection off the prompt and observation slots; log-softmax
    and entropy then run on K sampled tokens per row, not on every slot.
    """
    check_attention(model)
    if isinstance(batch, PrefixCacheBatch):
        return _read_prefix_cache(model, batch, hidden)
    n_read = int(batch.loss_mask.sum(1).max())
    # each row's sampled slots first, in slot order (a stable sort of the 0/1 mask)
    slots = batch.loss_mask.argsort(dim=1, descending=True, stable=True)[:, :n_read]  # (B, K)
    rows = torch.arange(len(slots), device=slots.device)[:, None].expand_as(slots)
    cols = batch.logit_index.gather(1, slots)
    kept = cols.unique()  # sorted: the columns ``out.logits`` holds, in this order
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask.to(next(model.parameters()).dtype),
                position_ids=batch.position_ids, logits_to_keep=kept, output_hidden_states=hidden)
    logits = out.logits[rows, torch.searchsorted(kept, cols)]  # (B, K, V)
    return Reads(logits, out.hidden_states[-1][rows, cols] if hidden else None, batch.target_ids.gather(1, slots), slots)


def _read_prefix_cache(model: torch.nn.Module, batch: PrefixCacheBatch, hidden: bool) -> Reads:
    """Pass 1 (prefix + lead turn, K/V kept with gradient), then pass 2 (the other turns reading that K/V).

    The outputs of both passes are flattened into one list of positions and indexed once, so a
    trajectory's sampled tokens come back in turn order whichever pass computed them.
    """
    b, lead_width = batch.lead_ids.shape
    row, col = batch.read_row, batch.read_col  # (B, T); row >= b: pass-2 row (row - b)
    in_lead = row < b
    kept = col[in_lead].unique()  # sorted: the columns pass 1's logits hold, in this order
    out = model(input_ids=batch.lead_ids, use_cache=len(batch.row_ids) > 0, logits_to_keep=kept,
                output_hidden_states=hidden)
    logits = out.logits.flatten(0, 1)
    logit_index = row * len(kept) + torch.searchsorted(kept, col)
    states = out.hidden_states[-1].flatten(0, 1) if hidden else None
    state_index = row * lead_width + col
    if len(batch.row_ids):
        from mem1_agent.policies.hf import cache_argument  # "cache" or "past_key_values": transformers' version

        cache_name = cache_argument(model)
        cache = getattr(out, cache_name)
        cache.batch_select_indices(batch.row_owner)  # (B, ...) -> (R, ...): row r gets its trajectory's K/V
        # a placeholder pass 2 (collate's ``two_passes``) is read nowhere: keep one column anyway, whose
        # logits join the concatenation below, so that backward runs through pass 2 like any other
        kept = col[~in_lead].unique() if bool((~in_lead).any()) else torch.zeros(1, dtype=col.dtype, device=col.device)
        out = model(input_ids=batch.row_ids, attention_mask=batch.attention_mask.to(next(model.parameters()).dtype),
                    position_ids=batch.row_positions, use_cache=True, logits_to_keep=kept,
                    output_hidden_states=hidden, **{cache_name: cache})
        pass_2 = len(logits) + (row - b) * len(kept) + torch.searchsorted(kept, col)
        logit_index = torch.where(in_lead, logit_index, pass_2)
        logits = torch.cat([logits, out.logits.flatten(0, 1)])
        if hidden:
            state_index = torch.where(in_lead, state_index, len(states) + (row - b) * batch.row_ids.shape[1] + col)
            states = torch.cat([states, out.hidden_states[-1].flatten(0, 1)])
    slots = torch.arange(row.shape[1], device=row.device).expand_as(row)
    return Reads(logits[logit_index], states[state_index] if hidden else None, batch.target_ids, slots)


def token_logprobs(model: torch.nn.Module, batch: Batch | PrefixCacheBatch) -> torch.Tensor:
    """Log-prob of every target token under ``model`` (0 where ``loss_mask`` is 0). Returns (B, S)."""
    reads = read_outputs(model, batch)
    picked = torch.log_softmax(reads.logits.float(), dim=-1).gather(2, reads.target_ids[..., None])[..., 0]
    return reads.place(picked, batch.loss_mask)
