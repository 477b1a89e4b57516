"""Language-model pretraining on the env's corpus: packing is exact and the loss goes down."""

from __future__ import annotations

import pytest
from mem1_agent.tiny import load_tokenizer
from mem1_agent.train.pretrain import PretrainConfig, corpus_texts, pack, pretrain


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
    with pytest.raises(ValueError, match="max_minutes"):
        PretrainConfig(max_minutes=-1)
    stopped = pretrain(model, torch.arange(200) % 50, PretrainConfig(seq_len=16, max_steps=99, max_minutes=1e-9,
                                                                      device="cpu"))
    assert len(stopped) == 1


def test_adamw_with_warmup_ramps_then_holds_and_the_step_clips():
    import torch
    from mem1_agent.train.optim import adamw_with_warmup, clipped_step

    weight = torch.nn.Parameter(torch.zeros(3))
    optimizer, scheduler = adamw_with_warmup([weight], lr=0.1, weight_decay=0.0, warmup_steps=4)
    rates = []
    for _ in range(6):
        rates.append(scheduler.get_last_lr()[0])
        (weight * torch.tensor([30.0, 40.0, 0.0])).sum().backward()  # gradient norm 50
        assert clipped_step([weight], optimizer, scheduler, max_grad_norm=1.0) == 50.0
        assert weight.grad is None
    assert rates == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1])
