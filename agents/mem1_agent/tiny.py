"""Tiny Qwen2-architecture models and a locally trained tokenizer: how tests and CPU demos get a model.

Nothing is downloaded. The tokenizer is a byte-level BPE trained in about a second on the env's
own text (passages and questions of the synthetic world, the task prompt) plus the protocol tags,
which are added as whole tokens so ``</search>`` is one id. The model is a randomly initialised
Qwen2 built from a config: the same class, ``from_pretrained`` path and generation code as a real
Qwen2.5 checkpoint.

Layout written by :func:`make_tiny` (SETUP-NOTES, transformers 5.x: a tokenizer saved next to a
Qwen2 ``config.json`` is loaded by ``AutoTokenizer`` as ``Qwen2Tokenizer`` and gives different ids,
so ours lives in its own folder)::

    DIR/config.json, DIR/model.safetensors     <- Qwen2ForCausalLM.from_pretrained(DIR)
    DIR/tokenizer/tokenizer.json ...           <- PreTrainedTokenizerFast.from_pretrained(DIR/tokenizer)

:func:`load_tokenizer` understands both this layout and a standard Hugging Face folder.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mem1_gym import protocol

TOKENIZER_SUBDIR = "tokenizer"
EOS = "<|endoftext|>"
PAD = "<|pad|>"
PIECES = {
    "words": r"\s|[^\s\p{L}\p{N}]|\p{L}+|\p{N}+",  # one space, one punctuation mark, a word or a number
    "trailing-space": r"\p{L}+ ?|\p{N}+ ?|[^\s\p{L}\p{N}] ?|\s",  # the same, each keeping the one space after it
    # capitalised words and numbers bare; a lowercase word keeps a space on either side, punctuation the one after
    "names": r"\p{Lu}\p{L}*|\p{N}+| ?\p{Ll}+ ?|[^\s\p{L}\p{N}] ?|\s",
}
"""Pre-tokenizers that cut text with a regex before BPE (the pieces, kept, are what merges work within)."""
PRETOKENIZERS = ("bytelevel", *PIECES)
PROTOCOL_TAGS = tuple(
    fn(tag)
    for tag in (protocol.THINK, protocol.SEARCH, protocol.ANSWER, protocol.INFORMATION, protocol.SUMMARY, protocol.STATE)
    for fn in (protocol.open_tag, protocol.close_tag)
)


@dataclass(frozen=True)
class TinyConfig:
    """Size of a tiny Qwen2 and of its tokenizer."""

    vocab_size: int = 2048
    """BPE vocabulary (tags and special tokens included); 2048 compresses the synthetic text ~3.5 chars/token."""
    hidden_size: int = 64
    """Model width."""
    intermediate_size: int = 128
    """MLP width."""
    num_layers: int = 2
    """Transformer blocks."""
    num_heads: int = 4
    """Attention heads (head dim = hidden_size / num_heads)."""
    num_kv_heads: int = 2
    """Key/value heads (grouped-query attention, as Qwen2.5)."""
    max_positions: int = 32768
    """Context window; long enough for a full-history context at N = 16."""
    tokenizer_passages: int = 4000
    """Passages of the synthetic corpus the tokenizer is trained on."""
    seed: int = 0
    """Seed of the weight initialisation."""
    pretokenizer: str = "bytelevel"
    """How text is cut before BPE merges: "bytelevel" (GPT-2/Qwen style, a word carries its leading
    space, so "Grovotrin" after a space and after "[" are different tokens) or "words" (spaces and
    punctuation are tokens of their own, so a name is the same ids wherever it appears: what a tiny
    model needs to learn to copy names from questions and passages into queries and answers) or
    "trailing-space" (a word, number or punctuation mark keeps the one space after it: a name is
    spelled the same everywhere except for its last word before punctuation, there is no space token
    that every word boundary would share, and the text is about half as many tokens as "words") or
    "names" (capitalised words and numbers never carry a space, lowercase words and punctuation carry
    the spaces around them: every word of a name or a year is the same ids wherever it appears,
    before punctuation or not, for a few % more tokens than "trailing-space")."""
    oracle_episodes: int = 0
    """Oracle turns (think + search/answer, see :func:`oracle_texts`) added to the tokenizer's
    training text, so the words of the agent's own state ("confirmed", "pending") are whole tokens."""

    def __post_init__(self) -> None:
        if self.pretokenizer not in PRETOKENIZERS:
            raise ValueError(f"pretokenizer must be one of {PRETOKENIZERS}, got {self.pretokenizer!r}")
        if self.oracle_episodes < 0:
            raise ValueError(f"oracle_episodes must be >= 0, got {self.oracle_episodes}")
        if self.vocab_size < 300:
            raise ValueError(f"vocab_size must be >= 300 (256 bytes + tags + merges), got {self.vocab_size}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} must be divisible by num_heads {self.num_heads}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads {self.num_heads} must be divisible by num_kv_heads {self.num_kv_heads}")


def training_texts(config: TinyConfig) -> Iterator[str]:
    """The env's own text: task prompts, hints, synthetic passages and questions."""
    from mem1_gym.data.synthetic import WorldConfig, ensure_world

    world = ensure_world(WorldConfig())
    for split, path in sorted(world.qa_paths.items()):
        with open(path, encoding="utf-8") as fh:
            questions = [json.loads(line)["question"] for line in itertools.islice(fh, 2000)]
        yield protocol.qa_prompt(questions[:16], max_turns=36)
        yield "\n".join(questions)
    for turns_left in range(40):
        yield protocol.information_block(protocol.turns_left_hint(turns_left), protocol.EMPTY_RESULTS_MESSAGE)
    with open(world.corpus_path, encoding="utf-8") as fh:
        for line in itertools.islice(fh, config.tokenizer_passages):
            yield json.loads(line)["contents"]
    yield from oracle_texts(config.oracle_episodes)


def oracle_texts(episodes: int, n_questions: int = 2) -> Iterator[str]:
    """The scripted oracle's turns on train-split tasks, played without a retriever.

    Each hop's "search results" are the hop's answer itself, so every search is confirmed; the
    text is what the oracle writes (state, query, answers), which is all the tokenizer needs.
    """
    if episodes <= 0:
        return
    from mem1_gym.data.formats import load_qa
    from mem1_gym.data.synthetic import WorldConfig, ensure_world
    from mem1_gym.data.tasks import Composition, compose
    from mem1_gym.oracle import ScriptedOracle, oracle_turns_needed

    items = load_qa(ensure_world(WorldConfig()).qa_paths["train"])
    oracle = ScriptedOracle()
    for task in compose(items, Composition(n=n_questions, seed=0, prefix="train"))[:episodes]:
        oracle.reset(task)
        answers, needed = " ".join(hop.answer for item in task.items for hop in item.hops), oracle_turns_needed(task)
        for turns_left in range(needed, 0, -1):
            yield oracle.act("" if turns_left == needed else answers, turns_left)


def train_tokenizer(config: TinyConfig = TinyConfig()) -> Any:
    """A byte-level BPE (``PreTrainedTokenizerFast``) trained on :func:`training_texts`."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    if config.pretokenizer in PIECES:
        bpe.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(PIECES[config.pretokenizer]), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),  # bytes -> printable symbols
        ])
    else:
        bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=config.vocab_size - len(PROTOCOL_TAGS),
        special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte encodes: no unknown tokens
        show_progress=False,
    )
    bpe.train_from_iterator(training_texts(config), trainer=trainer)
    # Tags as whole (non-special) tokens: decoding keeps them, and stop strings end on one id.
    bpe.add_tokens([AddedToken(tag, normalized=False, special=False) for tag in PROTOCOL_TAGS])
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=EOS, pad_token=PAD)


def build_model(config: TinyConfig, tokenizer: Any) -> Any:
    """A randomly initialised ``Qwen2ForCausalLM`` sized by ``config`` for ``tokenizer``."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(config.seed)
    model_config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads,
        max_position_embeddings=config.max_positions,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    return Qwen2ForCausalLM(model_config).eval()


def make_tiny(out_dir: str | Path, config: TinyConfig = TinyConfig()) -> Path:
    """Train the tokenizer, build the model, save both in the layout of the module docstring."""
    out = Path(out_dir)
    tokenizer = train_tokenizer(config)
    model = build_model(config, tokenizer)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out / TOKENIZER_SUBDIR)
    return out


def load_tokenizer(path: str | Path) -> Any:
    """``DIR/tokenizer/`` (our layout, loaded as ``PreTrainedTokenizerFast``) or a standard HF folder."""
    path = Path(path)
    own = path / TOKENIZER_SUBDIR
    if (own / "tokenizer.json").is_file():
        from transformers import PreTrainedTokenizerFast

        return PreTrainedTokenizerFast.from_pretrained(str(own))
    if (path / "tokenizer.json").is_file() and not (path / "config.json").is_file():
        from transformers import PreTrainedTokenizerFast

        return PreTrainedTokenizerFast.from_pretrained(str(path))
    from transformers import AutoTokenizer

    missing = FileNotFoundError(
        f"no tokenizer at {path} (looked for {own}/tokenizer.json and a Hugging Face tokenizer); "
        f"build a tiny model with `mem1-agent make-tiny --out {path}` or pass a model folder"
    )
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except OSError as err:
        raise missing from err
    # transformers 5 builds an empty tokenizer (vocabulary of 1) for a folder with a config.json and
    # no tokenizer files, instead of raising: that would train and evaluate on garbage ids.
    if len(tokenizer) <= 1:
        raise missing
    return tokenizer


def counting_tokenizer(config: TinyConfig = TinyConfig()) -> Any:
    """The locally trained tokenizer, cached on disk: counts tokens for text policies (oracle, servers)."""
    from mem1_gym.data.cache import cache_dir

    name = f"mem1-agent-tokenizer-v{config.vocab_size}-p{config.tokenizer_passages}"
    if (config.pretokenizer, config.oracle_episodes) != ("bytelevel", 0):
        name += f"-{config.pretokenizer}-o{config.oracle_episodes}"
    folder = cache_dir() / name
    if not (folder / "tokenizer.json").is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        train_tokenizer(config).save_pretrained(str(tmp))
        try:
            os.rename(tmp, folder)
        except OSError:  # another process renamed its copy first; training is deterministic
            shutil.rmtree(tmp)
    return load_tokenizer(folder)
