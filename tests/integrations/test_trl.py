"""TRL adapter: the episode loop's token masks and rewards, and GRPOTrainer itself training on a mem1-gym env."""

from __future__ import annotations

import pytest

from mem1_gym.integrations.tasks import TextEpisode, make_env
from mem1_gym.integrations.trl import (
    EnvRollout,
    RolloutConfig,
    encode_prompt,
    env_reward,
    sampled_turn,
    task_dataset,
)

ENV_ID = "MEM1-MultiHopQA-1"
SEARCH = "<think>looking</think><search>headquarters</search>"


def byte_tokenizer(texts=("the search results arrive",), vocab_size=300):
    """A byte-level BPE (lossless on any text, as Qwen's) trained on ``texts``, the protocol tags whole tokens."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<eos>", "<pad>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(texts, trainer=trainer)
    tags = [f"<{close}{tag}>" for tag in ("think", "search", "answer", "information") for close in ("", "/")]
    bpe.add_tokens([AddedToken(tag, normalized=False) for tag in tags])
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<eos>", pad_token="<pad>")


@pytest.fixture(scope="module")
def dataset():
    return task_dataset(ENV_ID, "train", limit=2)


@pytest.fixture(scope="module")
def answers(dataset):
    env = make_env(ENV_ID, "train")
    try:
        return {row["prompt"]: env.unwrapped.tasks[row["task_index"]].items[0].answers[0] for row in dataset}
    finally:
        env.close()


def test_task_dataset_rows_are_tasks_with_their_first_observation(dataset):
    assert dataset.column_names == ["prompt", "env_id", "split", "task_index", "task_id"]
    episode = TextEpisode(make_env(ENV_ID, "train"))
    try:
        for row in dataset:
            assert row["prompt"] == episode.reset(row["task_index"])
            assert row["task_id"] == episode.info["task_id"]
    finally:
        episode.close()


def test_rollout_masks_every_env_token_and_keeps_the_env_reward(dataset, answers):
    """Scripted turns (search, then the gold answer for task 0 and a wrong one for task 1): the completion
    is turn | observation | turn, mask 0 exactly on the observation, rewards as a replay of the env gives."""
    tokenizer = byte_tokenizer()
    prompts = [dataset[0]["prompt"]] * 2 + [dataset[1]["prompt"]] * 2  # two GRPO groups of two

    def turns(context):
        prompt = next(p for p in answers if tokenizer.decode(context).startswith(p))
        answer = answers[prompt] if prompt == dataset[0]["prompt"] else "nobody"
        return SEARCH if len(context) == len(tokenizer.encode(prompt)) else f"<answer>{answer}</answer>"

    def generate(contexts, stops, max_new_tokens):
        assert stops == ("</search>", "</answer>")  # 6 turns: neither turn is the last
        return [tokenizer.encode(turns(context)) for context in contexts]

    rollout = EnvRollout(dataset)
    try:
        rollouts, rewards = rollout.play(prompts, generate, tokenizer, max_completion_tokens=4096)
    finally:
        rollout.close()
    assert rewards == [1.0, 1.0, 0.0, 0.0]
    for prompt, result, reward in zip(prompts, rollouts, rewards):
        replay = TextEpisode(make_env(ENV_ID, "train"))
        index = dataset["prompt"].index(prompt)
        replay.reset(index)
        observation = replay.step(SEARCH)
        replay.step(turns(tokenizer.encode(prompt) + [0]))
        replay.close()
        first, answer = tokenizer.encode(SEARCH), tokenizer.encode(turns(tokenizer.encode(prompt) + [0]))
        observed = tokenizer.encode(observation)
        assert result.prompt_ids == tokenizer.encode(prompt)
        assert result.completion_ids == first + observed + answer
        assert result.env_mask == [1] * len(first) + [0] * len(observed) + [1] * len(answer)
        assert tokenizer.decode([t for t, m in zip(result.completion_ids, result.env_mask) if m == 0]) == observation
        assert reward == replay.reward


SHOP_SEARCH = "<answer>search[dog biscuits]</answer>"


@pytest.mark.parametrize("env_id, turn", [
    ("MEM1-WebQA-1", "<search>capital</search>"),
    ("MEM1-WebShop-Text", SHOP_SEARCH),
    pytest.param("MEM1-WebShop", SHOP_SEARCH, marks=[pytest.mark.browser, pytest.mark.slow]),
])
def test_rollout_drives_the_web_families(env_id, turn):
    """One search turn and its observation (a budget with room for one observation): mask 0 on it exactly."""
    tokenizer = byte_tokenizer()
    rows = task_dataset(env_id, "train", limit=1)
    replay = TextEpisode(make_env(env_id, "train"))
    try:
        replay.reset(0)
        observation = tokenizer.encode(replay.step(turn))
    finally:
        replay.close()
    ids = tokenizer.encode(turn)
    rollout = EnvRollout(rows)
    try:
        (result,), _ = rollout.play(rows["prompt"], lambda contexts, stops, n: [ids[:n]], tokenizer,
                                    max_completion_tokens=len(ids) + len(observation) + 1)
    finally:
        rollout.close()
    assert result.completion_ids[: len(ids) + len(observation)] == ids + observation
    assert result.env_mask[: len(ids) + len(observation)] == [1] * len(ids) + [0] * len(observation)


def test_rollout_stops_an_episode_whose_next_observation_does_not_fit(dataset):
    tokenizer = byte_tokenizer()
    search = tokenizer.encode(SEARCH)
    rollout = EnvRollout(dataset)
    try:
        (result,), rewards = rollout.play([dataset[0]["prompt"]], lambda contexts, stops, n: [search[:n]],
                                          tokenizer, max_completion_tokens=len(search) + 5)
    finally:
        rollout.close()
    assert (result.completion_ids, result.env_mask, rewards) == (search, [1] * len(search), [0.0])


def test_sampled_turn_drops_the_padding_generate_adds():
    tokenizer = byte_tokenizer()
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    text = tokenizer.encode("<search>x</search>")
    assert sampled_turn(text + [pad, pad], {eos}, pad, tokenizer, ("</search>",)) == text
    assert sampled_turn(text + [eos, pad], {eos}, pad, tokenizer, ("</search>",)) == text + [eos]
    # pad == eos (Qwen base models): after a stop string it is padding, elsewhere the model sampled it
    assert sampled_turn(text + [eos, eos], {eos}, eos, tokenizer, ("</search>",)) == text
    assert sampled_turn(text[:-1] + [eos, eos], {eos}, eos, tokenizer, ("</search>",)) == text[:-1] + [eos]


def test_prompt_is_one_user_turn_with_the_assistant_opened_under_a_chat_template():
    tokenizer = byte_tokenizer()
    assert encode_prompt(tokenizer, "Q1: where?") == tokenizer.encode("Q1: where?")
    tokenizer.chat_template = ("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
                               "{% if add_generation_prompt %}<assistant>{% endif %}")
    assert tokenizer.decode(encode_prompt(tokenizer, "Q1: where?")) == "<user>Q1: where?<assistant>"


def test_env_reward_needs_the_rollout_column_and_two_tasks_need_two_prompts(dataset):
    assert env_reward(["a", "b"], episode_reward=[1, -0.5]) == [1.0, -0.5]
    with pytest.raises(ValueError, match="rollout_func=EnvRollout"):
        env_reward(["a"])
    duplicate = [dataset[0], {**dataset[1], "prompt": dataset[0]["prompt"]}]
    with pytest.raises(ValueError, match="same prompt"):
        EnvRollout(duplicate)


def test_grpo_trainer_runs_two_steps_on_env_rewards(tmp_path, monkeypatch, dataset):
    """GRPOTrainer itself: 2 optimizer steps, every logged reward the env's, lengths counting model tokens only."""
    import torch
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is experimental in TRL 1.16
    torch.manual_seed(0)
    byte_tokenizer(dataset["prompt"], vocab_size=1000).save_pretrained(tmp_path / "tokenizer")
    tokenizer = PreTrainedTokenizerFast.from_pretrained(tmp_path / "tokenizer")
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
                         tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=None)
    Qwen2ForCausalLM(config).save_pretrained(tmp_path / "model")

    env_kwargs = {"invalid_action_penalty": 0.1}  # an invalid turn scores -0.1, a wrong answer 0
    calls = []

    class RecordingRollout(EnvRollout):
        def __call__(self, prompts, trainer):
            calls.append((prompts, super().__call__(prompts, trainer)))
            return calls[-1][1]

    rollout = RecordingRollout(dataset, RolloutConfig(max_turn_tokens=6, env_kwargs=env_kwargs))
    # The model samples only "<answer>", "</answer>" and one word, so some turns are answers and some are
    # invalid: rewards differ within a group and the update is not zero. No turn is empty (pad is never
    # sampled, no EOS), so the runs of mask 1 are exactly the turns.
    allowed = {*tokenizer.convert_tokens_to_ids(["<answer>", "</answer>"]), tokenizer.encode("Q")[0]}
    before = [p.detach().clone() for p in Qwen2ForCausalLM.from_pretrained(tmp_path / "model").parameters()]
    args = GRPOConfig(output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=4, num_generations=4,
                      max_completion_length=128, learning_rate=1e-2, logging_steps=1, report_to="none",
                      save_strategy="no", use_cpu=True, bf16=False, seed=0, disable_tqdm=True,
                      gradient_checkpointing=False,
                      generation_kwargs={"suppress_tokens": sorted(set(range(len(tokenizer))) - allowed)})
    trainer = GRPOTrainer(model=str(tmp_path / "model"), reward_funcs=env_reward, args=args, train_dataset=dataset,
                          processing_class=tokenizer, rollout_func=rollout)
    try:
        trainer.train()
    finally:
        rollout.close()

    assert trainer.state.global_step == 2
    assert any(not torch.equal(a, b.cpu()) for a, b in zip(before, trainer.model.parameters()))
    assert {int(state["step"]) for state in trainer.optimizer.state.values()} == {2}
    logs = [entry for entry in trainer.state.log_history if "rewards/env_reward/mean" in entry]
    assert len(calls) == len(logs) == 2
    for (prompts, output), log in zip(calls, logs):
        rewards, masks = output["episode_reward"], output["env_mask"]
        replayed = [replay(dataset["prompt"].index(prompt), model_turns(ids, mask), tokenizer, env_kwargs)
                    for prompt, ids, mask in zip(prompts, output["completion_ids"], masks)]
        assert rewards == pytest.approx(replayed)
        assert log["rewards/env_reward/mean"] == pytest.approx(sum(rewards) / len(rewards))
        assert log["completions/mean_length"] == pytest.approx(sum(map(sum, masks)) / len(masks))


def model_turns(ids, mask):
    """The runs of model tokens (mask 1) of a completion."""
    turns = []
    for token, previous, keep in zip(ids, [0, *mask], mask):
        if keep and not previous:
            turns.append([])
        if keep:
            turns[-1].append(token)
    return turns


def replay(index, turns, tokenizer, env_kwargs):
    """The reward a fresh env gives to ``turns`` on task ``index``."""
    episode = TextEpisode(make_env(ENV_ID, "train", **env_kwargs))
    try:
        episode.reset(index)
        for turn in turns:
            episode.step(tokenizer.decode(turn, skip_special_tokens=True))
        return episode.reward
    finally:
        episode.close()
