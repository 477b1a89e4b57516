"""The tiny demo's pretraining recipe: what a randomly initialised model reads before it clones the oracle.

    python examples/tiny_pretrain.py --model runs/tiny --out runs/tiny-read          # copy, then read (step counts)
    mem1-agent sft --model runs/tiny-read --out runs/tiny-sft --grounded ...          # then clone the oracle

An example, not a library module: it exists for models built from scratch (``mem1-agent make-tiny``),
and ``examples/mem1_tiny_demo.py`` imports it.

A real MEM1 run starts from a pretrained LLM that already reads, and copies names from its
context. A tiny model built from scratch has neither skill, and behaviour cloning alone, with loss
on the agent's few sampled tokens per turn, is a slow way to learn them. Measured on the demo's
64-wide, 2-layer model: after 2.5 minutes of language modelling on the env's corpus and 9 of SFT its
NLL on the second copy of a repeated random block was no lower than on the first (no induction
heads), and its queries named look-alikes of the question's entities. *Copy windows*
(:func:`copy_windows`: a random block of ids repeated, loss on the repeats) grow the copying circuit
in ~650 steps (a sudden drop of their NLL from ~7.6 to < 0.3); a quarter of them mixed into the
corpus windows afterwards keeps it. But only at short range: those windows start every block at
position 0 and repeat it within 128 tokens, and the model then did not copy a 10-token span of text
pasted 400 tokens after its first occurrence (NLL 8.5 on the copy), where a MEM1 context at N = 2 is
~770 tokens (and its text NLL in 1024-token windows was 4.6, against ~1 in the 256 it was trained on). Reading the
corpus in 1024-token windows that each carry a *needle* (:func:`needle_windows`, a random block
written twice at random places) taught it: 250 such steps brought that NLL to 1.4 in a probe, and
the demo's SFT model went from EM 0.04-0.15 (and 0 in one run of four) to 0.21 and 0.38 in two
runs. Nothing here is needed for a real checkpoint.

>>> stream = pack(["Ada was born in Tarsen."], tokenizer)            # doctest: +SKIP
>>> losses = pretrain(model, stream, PretrainConfig(max_steps=100))  # doctest: +SKIP
>>> copying = pretrain(model, stream, PretrainConfig(copy_fraction=1.0, stop_below=0.3))  # doctest: +SKIP
>>> reading = pretrain(model, stream, PretrainConfig(seq_len=1024, batch_size=4, needles=True))  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import itertools
import json
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mem1_agent.train.device import autocast, resolve_device
from mem1_agent.train.optim import adamw_with_warmup, clipped_step


@dataclass(frozen=True)
class PretrainConfig:
    """Hyper-parameters of language-model pretraining on a packed token stream."""

    seq_len: int = 256
    """Tokens per training window (a window may span documents; EOS separates them)."""
    batch_size: int = 16
    """Windows per optimizer step."""
    lr: float = 3e-3
    """AdamW learning rate after warm-up."""
    warmup_steps: int = 20
    """Optimizer steps of linear warm-up."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm."""
    max_steps: int = 1000
    """Most optimizer steps."""
    copy_fraction: float = 0.0
    """Share of each batch's windows that are *copy windows*: a block of ids drawn uniformly from those
    the stream uses, repeated until the window is full, with loss only on the repeats. Nothing but attention to
    the earlier copy predicts them, so these windows grow induction heads, the circuit that copies a
    name from the context into a query or an answer; plain text of this corpus grows none in CPU minutes."""
    stop_below: float | None = None
    """Stop once the mean NLL of the last 20 steps is below this (None: never); e.g. a copy-window
    phase can run until its induction heads have formed instead of for a guessed time."""
    needles: bool = False
    """Every corpus window carries a *needle* (:func:`needle_windows`): a block of random ids written at
    two random places, so that the second copy is predictable only by finding the first, anywhere
    earlier in the window, among text. The loss is the text's NLL plus the copies' NLL. Copy windows
    repeat one block from position 0 and teach copying only at the distances and positions they
    show; needles in ``seq_len`` = 1024 windows teach it over a whole MEM1 context."""
    seed: int = 0
    """Seed of the window draw."""
    device: str = "auto"
    """"auto", "cpu" or "cuda"."""

    def __post_init__(self) -> None:
        if self.seq_len < 2 or self.batch_size < 1 or self.max_steps < 1:
            raise ValueError("need seq_len >= 2, batch_size >= 1 and max_steps >= 1")
        if self.lr <= 0 or self.warmup_steps < 0:
            raise ValueError("need lr > 0 and warmup_steps >= 0")
        if not 0.0 <= self.copy_fraction <= 1.0:
            raise ValueError(f"copy_fraction must be in [0, 1], got {self.copy_fraction}")
        if self.copy_fraction > 0 and self.seq_len < 8:
            raise ValueError("copy windows need seq_len >= 8")
        if self.needles and (self.seq_len < 16 or round(self.batch_size * self.copy_fraction) >= self.batch_size):
            raise ValueError("needle windows need seq_len >= 16 and some windows that are not copy windows")


def corpus_texts(limit: int | None = None) -> Iterator[str]:
    """Passages of the synthetic world's corpus (the knowledge base of ``MEM1-MultiHopQA-N``), in file order."""
    from mem1_gym.data.synthetic import WorldConfig, ensure_world

    with open(ensure_world(WorldConfig()).corpus_path, encoding="utf-8") as fh:
        for line in itertools.islice(fh, limit):
            yield json.loads(line)["contents"]


def pack(texts: Iterable[str], tokenizer: Any) -> torch.Tensor:
    """One 1-D stream of token ids: each text's ids followed by EOS (the document boundary)."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos_token_id to separate documents; set one")
    ids: list[int] = []
    for ids_of_text in tokenizer(list(texts), add_special_tokens=False)["input_ids"]:
        ids += ids_of_text
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.long)


IGNORE = -100
"""Target id that carries no loss (the first, unpredictable copy of a copy window's block)."""


def copy_windows(ids: torch.Tensor, n: int, seq_len: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` windows of ``seq_len + 1`` ids, each a block of 4 to ``seq_len // 2`` ids drawn uniformly
    from ``ids`` repeated to fill the window; and their next-token targets, :data:`IGNORE` inside the
    block's first copy.

    Uniform draws matter: with the corpus' own token frequencies a block repeats common ids, the
    earlier copy points two ways, and the tiny model sat on the "in-context unigram" plateau (NLL ~6)
    for 1,800+ steps in one of our runs; uniform blocks grew the copying circuit in 500-560 steps, 3 seeds of 3.

    >>> windows, targets = copy_windows(torch.arange(100), 2, 16, torch.Generator().manual_seed(0))
    >>> windows.shape, targets.shape
    (torch.Size([2, 17]), torch.Size([2, 16]))
    """
    windows = torch.empty(n, seq_len + 1, dtype=torch.long)
    targets = torch.empty(n, seq_len, dtype=torch.long)
    for row in range(n):
        length = int(torch.randint(4, seq_len // 2 + 1, (1,), generator=generator))
        block = ids[torch.randint(len(ids), (length,), generator=generator)]
        windows[row] = block.repeat(seq_len // length + 1)[: seq_len + 1]
        targets[row] = windows[row, 1:]
        targets[row, : length - 1] = IGNORE  # the first copy: nothing predicts it
    return windows, targets


def needle_windows(stream: torch.Tensor, vocabulary: torch.Tensor, n: int, seq_len: int,
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` windows of ``seq_len + 1`` ids of ``stream``, each with one block of 4 to ``min(32, seq_len // 4)``
    ids drawn uniformly from ``vocabulary`` written over it twice, at random non-overlapping places;
    their text targets and their copy targets (:data:`IGNORE` elsewhere).

    Text targets are the next ids except those inside a block or entering one (nothing predicts a
    random id unless it repeats); copy targets are the ids of the second copy after its first, which
    only attention to the first copy predicts, at any distance the window allows.

    >>> windows, text, copy = needle_windows(torch.arange(2000), torch.arange(50), 2, 64, torch.Generator())
    >>> windows.shape, text.shape, copy.shape
    (torch.Size([2, 65]), torch.Size([2, 64]), torch.Size([2, 64]))
    """
    windows = torch.empty(n, seq_len + 1, dtype=torch.long)
    text = torch.empty(n, seq_len, dtype=torch.long)
    copy = torch.full((n, seq_len), IGNORE, dtype=torch.long)
    for row in range(n):
        start = int(torch.randint(len(stream) - seq_len, (1,), generator=generator))
        windows[row] = stream[start : start + seq_len + 1]
        length = int(torch.randint(4, max(4, min(32, seq_len // 4)) + 1, (1,), generator=generator))
        first = int(torch.randint(0, seq_len + 2 - 2 * length, (1,), generator=generator))
        second = int(torch.randint(first + length, seq_len + 2 - length, (1,), generator=generator))
        block = vocabulary[torch.randint(len(vocabulary), (length,), generator=generator)]
        windows[row, first : first + length] = block
        windows[row, second : second + length] = block
        text[row] = windows[row, 1:]
        copy[row, second : second + length - 1] = text[row, second : second + length - 1]
        for at in (first, second):  # targets entering a block and inside it are not text
            text[row, max(at - 1, 0) : at + length - 1] = IGNORE
    return windows, text, copy


def recent_mean(losses: list[float], n: int = 20) -> float:
    """Mean of the last ``n`` per-step losses (fewer if there are fewer): what ``stop_below`` compares."""
    tail = losses[-n:]
    return sum(tail) / len(tail)


def window_nll(model: torch.nn.Module, windows: torch.Tensor, targets: torch.Tensor, device: torch.device,
               *more_targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token NLL of ``windows`` (``seq_len + 1`` ids each) against ``targets``, skipping
    :data:`IGNORE`; with ``more_targets``, the sum of the mean NLL against each (one forward pass)."""
    windows = windows.to(device)
    with autocast(device):
        logits = model(input_ids=windows[:, :-1]).logits.float().flatten(0, 1)
    return sum(torch.nn.functional.cross_entropy(logits, t.to(device).flatten(), ignore_index=IGNORE)
               for t in (targets, *more_targets))


def pretrain(model: torch.nn.Module, stream: torch.Tensor, config: PretrainConfig,
             log: Callable[[dict], None] | None = None) -> list[float]:
    """Train ``model`` in place on random ``seq_len`` windows of ``stream``; returns each step's mean NLL per token."""
    if stream.dim() != 1 or len(stream) <= config.seq_len:
        raise ValueError(f"need a 1-D stream longer than seq_len={config.seq_len} tokens, got shape "
                         f"{tuple(stream.shape)}; pack more text or lower seq_len")
    device = resolve_device(config.device)
    model.to(device).train()
    optimizer, scheduler = adamw_with_warmup(model.parameters(), config.lr, config.weight_decay, config.warmup_steps)
    generator = torch.Generator().manual_seed(config.seed)
    offsets = torch.arange(config.seq_len + 1)
    losses: list[float] = []
    n_copy = round(config.batch_size * config.copy_fraction)
    vocabulary = stream.unique() if n_copy or config.needles else None  # blocks draw uniformly from the ids the text uses
    for step in range(config.max_steps):
        if config.needles:
            window, targets, *copied = needle_windows(stream, vocabulary, config.batch_size - n_copy, config.seq_len,
                                                      generator)
        else:
            starts = torch.randint(len(stream) - config.seq_len, (config.batch_size - n_copy, 1), generator=generator)
            window = stream[starts + offsets]  # (B - n_copy, seq_len + 1)
            targets, copied = window[:, 1:], []
        if n_copy:
            copies, copy_targets = copy_windows(vocabulary, n_copy, config.seq_len, generator)
            window, targets = torch.cat([window, copies]), torch.cat([targets, copy_targets])
            copied = [torch.cat([copied[0], torch.full_like(copy_targets, IGNORE)])] if copied else []
        loss = window_nll(model, window, targets, device, *copied)
        loss.backward()
        clipped_step(model.parameters(), optimizer, scheduler, config.max_grad_norm)
        losses.append(loss.item())
        if log is not None:
            log({"step": step + 1, "nll": losses[-1], "lr": scheduler.get_last_lr()[0]})
        if config.stop_below is not None and len(losses) >= 20 and recent_mean(losses) < config.stop_below:
            break
    model.eval()
    return losses


COPY_STOP_NLL = 0.3
"""The copy phase of :func:`copy_then_read` ends once its NLL is below this: the circuit has formed
(the NLL falls from ~7.6 to below 1 within ~100 steps when it does)."""
COPY_SHARE = 0.25
"""Share of copy windows among the corpus windows after the copy phase (without them it fades)."""
NEEDLE_SEQ_LEN = 1024
"""Window of the needle reading phase: longer than a MEM1 context at N = 2 (~770 tokens)."""


def copy_then_read(model: torch.nn.Module, stream: torch.Tensor, copy_steps: int, read_steps: int,
                   device: str = "auto", needles: bool = False) -> tuple[list[float], list[float]]:
    """The pretraining of a model from scratch (the demo's and this script's): at most ``copy_steps`` of
    copy windows alone, stopping once their NLL is below :data:`COPY_STOP_NLL`, then ``read_steps`` of corpus
    windows, :data:`COPY_SHARE` of them copy windows if the copy phase ran; with ``needles``, corpus windows
    of :data:`NEEDLE_SEQ_LEN` tokens (4 a step, the same tokens) that each carry a needle
    (:class:`PretrainConfig` ``needles``) instead. A phase with 0 steps is skipped. Step counts, not
    minutes, so a run gives the same model on a busy machine as on an idle one. Returns the per-step NLL
    of each phase; warns (``RuntimeWarning``) when the copy phase ended before the circuit formed."""
    copying, reading = [], []
    if copy_steps > 0:
        copying = pretrain(model, stream, PretrainConfig(max_steps=copy_steps, device=device, copy_fraction=1.0,
                                                         stop_below=COPY_STOP_NLL))
        if not recent_mean(copying) < COPY_STOP_NLL:
            warnings.warn(f"the copy windows' NLL ({recent_mean(copying):.2f}) did not fall below {COPY_STOP_NLL} "
                          f"within {copy_steps} steps (~650 usually do it): the model cannot copy names from its "
                          "context and SFT will learn little. Raise the copy steps.", RuntimeWarning, stacklevel=2)
    if read_steps > 0:
        shape = dict(seq_len=NEEDLE_SEQ_LEN, batch_size=4, needles=True) if needles else \
            dict(copy_fraction=COPY_SHARE if copying else 0.0)
        reading = pretrain(model, stream, PretrainConfig(max_steps=read_steps, device=device, **shape))
    return copying, reading


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="model folder (`mem1-agent make-tiny` output)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the pretrained model and its tokenizer")
    parser.add_argument("--copy-steps", type=int, default=2000,
                        help="at most N steps of copy windows, stopping once their NLL is below 0.3 (0: skip)")
    parser.add_argument("--read-steps", type=int, default=360,
                        help="then N steps of next-token training on the synthetic world's corpus (0: skip)")
    parser.add_argument("--no-needles", dest="needles", action="store_false",
                        help="read 256-token windows, a quarter copy windows, instead of 1024-token windows that each "
                             "carry a needle (the demo's choice: copying across a whole MEM1 context)")
    parser.add_argument("--passages", type=int, default=None, help="corpus passages to read (default: all 20k)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    args = parser.parse_args()

    from transformers import AutoModelForCausalLM

    from mem1_agent.tiny import TOKENIZER_SUBDIR, load_tokenizer

    tokenizer = load_tokenizer(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model)
    stream = pack(corpus_texts(args.passages), tokenizer)
    copying, reading = copy_then_read(model, stream, args.copy_steps, args.read_steps, args.device,
                                      needles=args.needles)
    reading_name = "reading the corpus" + (f" ({NEEDLE_SEQ_LEN}-token windows with needles)" if args.needles else "")
    for name, nll in (("copy windows", copying), (reading_name, reading)):
        if nll:
            print(f"{name}: {len(nll)} steps, nll {nll[0]:.3f} -> {recent_mean(nll):.3f}", flush=True)
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(str(args.out / TOKENIZER_SUBDIR))
    print(f"model written to {args.out}; clone the oracle with `mem1-agent sft --model {args.out} ...`")


if __name__ == "__main__":
    main()
