"""The tiny demo's pretraining recipe (examples/tiny_pretrain.py): packing is exact, copy and needle windows are
well formed, the loss goes down, and the script writes a model ``mem1-agent sft`` loads."""

from __future__ import annotations

import doctest
import sys
from pathlib import Path

import pytest
from mem1_agent.tiny import load_tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
import tiny_pretrain  # noqa: E402
from tiny_pretrain import PretrainConfig, corpus_texts, pack, pretrain  # noqa: E402


def test_pack_puts_eos_after_every_text(tiny_model_dir):
    tokenizer = load_tokenizer(tiny_model_dir)
    texts = ["Ada was born in Tarsen.", "Tarsen is a city."]
    stream = pack(texts, tokenizer).tolist()
    eos = tokenizer.eos_token_id
    assert stream.count(eos) == 2 and stream[-1] == eos
    first = stream.index(eos)
    assert tokenizer.decode(stream[:first]) == texts[0]
    assert tokenizer.decode(stream[first + 1 : -1]) == texts[1]


def test_pretraining_on_the_corpus_lowers_the_loss(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(tiny_model_dir)
    stream = pack(corpus_texts(limit=200), tokenizer)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    before = [p.detach().clone() for p in model.parameters()]
    losses = pretrain(model, stream, PretrainConfig(seq_len=64, batch_size=8, max_steps=40, warmup_steps=5,
                                                    device="cpu"))
    assert len(losses) == 40
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 1.0, losses
    assert all(not p.equal(b) for p, b in zip(model.parameters(), before))


def test_pretrain_checks_its_input(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with pytest.raises(ValueError, match="longer than seq_len"):
        pretrain(model, torch.arange(10), PretrainConfig(seq_len=64, device="cpu"))
    with pytest.raises(ValueError, match="max_steps >= 1"):
        PretrainConfig(max_steps=0)
    stopped = pretrain(model, torch.arange(200) % 50, PretrainConfig(seq_len=16, max_steps=3, device="cpu"))
    assert len(stopped) == 3


def test_copy_windows_repeat_one_block_and_score_only_the_repeats():
    import torch
    from tiny_pretrain import IGNORE, copy_windows

    stream = torch.arange(1000, 1100)
    windows, targets = copy_windows(stream, 6, 32, torch.Generator().manual_seed(3))
    assert windows.shape == (6, 33) and targets.shape == (6, 32)
    for window, target in zip(windows.tolist(), targets.tolist()):
        length = target.count(IGNORE) + 1  # the first copy's targets carry no loss
        assert 4 <= length <= 16
        assert all(token in range(1000, 1100) for token in window)
        assert all(window[i] == window[i - length] for i in range(length, 33))  # a repeat of the block
        assert target[length - 1 :] == window[length:]  # every other position predicts the next id


def test_pretraining_with_copy_windows_mixes_both_and_checks_the_share(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    with pytest.raises(ValueError, match="copy_fraction"):
        PretrainConfig(copy_fraction=1.5)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    losses = pretrain(model, torch.arange(500) % 97, PretrainConfig(seq_len=32, batch_size=4, max_steps=3, device="cpu",
                                                                     copy_fraction=0.5))
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))


def test_copy_then_read_skips_a_phase_of_zero_minutes(tiny_model_dir):
    import torch
    from tiny_pretrain import copy_then_read
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    stream = torch.arange(2000) % 97
    copying, reading = copy_then_read(model, stream, copy_steps=0, read_steps=1, device="cpu")
    assert copying == [] and len(reading) == 1
    with pytest.warns(RuntimeWarning, match="did not fall below 0.3"):  # one step cannot form the circuit
        copying, reading = copy_then_read(model, stream, copy_steps=1, read_steps=0, device="cpu")
    assert len(copying) == 1 and reading == []


def test_needle_windows_write_one_block_twice_and_score_the_second_copy_apart_from_the_text():
    import torch
    from tiny_pretrain import IGNORE, needle_windows

    stream, vocabulary = torch.arange(3000), torch.arange(5000, 5050)  # block ids are told apart from text ids
    windows, text, copy = needle_windows(stream, vocabulary, 20, 64, torch.Generator().manual_seed(1))
    assert windows.shape == (20, 65) and text.shape == copy.shape == (20, 64)
    lengths, gaps = set(), set()
    for window, text_row, copy_row in zip(windows.tolist(), text.tolist(), copy.tolist()):
        inside = [i for i, token in enumerate(window) if token >= 5000]
        length = len(inside) // 2
        first, second = inside[0], inside[length]
        assert inside == [*range(first, first + length), *range(second, second + length)]  # two runs, no overlap
        assert window[first : first + length] == window[second : second + length] and 4 <= length <= 16
        scored = [i for i, target in enumerate(copy_row) if target != IGNORE]
        assert scored == list(range(second, second + length - 1))  # the second copy after its first id
        assert all(copy_row[i] == window[i + 1] for i in scored)
        not_text = {*range(max(first - 1, 0), first + length - 1), *range(second - 1, second + length - 1)}
        assert [i for i, target in enumerate(text_row) if target == IGNORE] == sorted(not_text)
        assert all(text_row[i] == window[i + 1] < 5000 for i in range(64) if i not in not_text)
        assert all(b - a == 1 for a, b in zip(window, window[1:]) if a < 5000 and b < 5000)  # text is the stream's
        lengths.add(length)
        gaps.add(second - first)
    assert len(lengths) > 3 and len(gaps) > 10  # lengths and distances vary


def test_pretraining_with_needles_lowers_the_loss_and_checks_its_shape(tiny_model_dir):
    import torch
    from tiny_pretrain import copy_then_read
    from transformers import AutoModelForCausalLM

    with pytest.raises(ValueError, match="needle windows"):
        PretrainConfig(needles=True, seq_len=8)
    with pytest.raises(ValueError, match="needle windows"):
        PretrainConfig(needles=True, copy_fraction=1.0)
    tokenizer = load_tokenizer(tiny_model_dir)
    stream = pack(corpus_texts(limit=200), tokenizer)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    losses = pretrain(model, stream, PretrainConfig(seq_len=64, batch_size=8, max_steps=40, warmup_steps=5,
                                                    needles=True, copy_fraction=0.25, device="cpu"))
    assert len(losses) == 40 and all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 1.0, losses
    reading = copy_then_read(model, stream, copy_steps=0, read_steps=1, device="cpu", needles=True)[1]
    assert len(reading) == 1 and reading[0] > 0  # one step of 1024-token windows
    reading = copy_then_read(model, stream, copy_steps=0, read_steps=2, device="cpu", needles=True)[1]
    assert len(reading) == 2  # the step count alone ends the phase


def test_the_doctests_of_the_windows():
    assert doctest.testmod(tiny_pretrain, raise_on_error=False).failed == 0


def test_the_script_pretrains_and_writes_a_model_sft_loads(tiny_model_dir, tmp_path, monkeypatch, capsys):
    from mem1_agent.cli import main as cli
    from transformers import AutoModelForCausalLM

    out = tmp_path / "read"
    monkeypatch.setattr(sys, "argv", ["tiny_pretrain.py", "--model", str(tiny_model_dir), "--out", str(out),
                                      "--copy-steps", "2", "--read-steps", "2", "--passages", "300",
                                      "--device", "cpu"])
    with pytest.warns(RuntimeWarning, match="copy windows' NLL"):  # 2 steps cannot form the circuit
        tiny_pretrain.main()
    printed = capsys.readouterr().out
    assert "copy windows: " in printed and "reading the corpus (1024-token windows with needles): 2 steps" in printed
    trained, base = AutoModelForCausalLM.from_pretrained(out), AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert not trained.model.embed_tokens.weight.equal(base.model.embed_tokens.weight)
    assert cli(["sft", "--model", str(out), "--out", str(tmp_path / "sft"), "--episodes", "2", "--epochs", "1",
                "--max-steps", "1", "--device", "cpu"]) == 0
