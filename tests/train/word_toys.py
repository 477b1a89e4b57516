"""The word-level toys of the learner tests: a 9-word tokenizer, a 1-layer Qwen2 over it, and a one-turn bandit.

A uniquely named module (not conftest) so that test modules can import the builders directly
where a fixture cannot reach (a helper class building its own model copy).
"""

from __future__ import annotations

import gymnasium as gym
from mem1_gym.protocol import EnvProtocol, TurnGrammar

WORDS = ("say", "yes", "no", "maybe", "red", "blue", "green", "one", "two")


def make_word_codec():
    """A word-level tokenizer over WORDS (so a random model says "yes" ~1 time in 10)."""
    from mem1_agent.policies.base import TokenCodec
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(("<pad>", "<eos>", *WORDS))}
    word = Tokenizer(models.WordLevel(vocab, unk_token="no"))
    word.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=word, pad_token="<pad>", eos_token="<eos>")
    return TokenCodec(tokenizer, name="words", use_chat_template=False)


def make_word_model(codec, seed: int = 0):
    """A 1-layer, 32-wide Qwen2 over the word vocabulary."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=len(codec.tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                         tie_word_embeddings=True, eos_token_id=1, pad_token_id=0, bos_token_id=None)
    return Qwen2ForCausalLM(config).eval()


class WordBandit(gym.Env):
    """One turn: the prompt is "say yes"; the reward is the fraction of generated words that are "yes"."""

    observation_space = gym.spaces.Text(64)
    action_space = gym.spaces.Text(64)
    # What the agent reads to drive it: one task, no stop string (no tag is a word), EM/F1 scores.
    protocol = EnvProtocol(family="words", grammar=TurnGrammar(kinds=("say",), check=lambda kind, arg: (arg, "")),
                           stop_strings=(), final_turn_stop_strings=(), score_keys=("em", "f1"), task_ids=("say-yes",))

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return "say yes", {"task_id": "say-yes", "turns_left": 1}

    def step(self, action: str):
        words = action.split()
        reward = words.count("yes") / max(1, len(words))
        return "", reward, True, False, {"valid_action": True, "em": (float(reward == 1.0),), "f1": (reward,)}
