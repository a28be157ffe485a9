"""An encoder-decoder (T5) policy through the course's generation, log-probs, SFT features and PPO (notebook 10):
the response is what the decoder wrote after its start token, ``lm_forward``'s log-probs are the decoder's, a tiny
PPO run on a T5 raises its reward, and the settings round-trip."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from datasets import Dataset

from rlhf_helpers import ppo, reward, seq2seq
from rlhf_helpers.core import standins
from rlhf_helpers.core.chat import ASSISTANT_PREFIX
from rlhf_helpers.core.config import (
    GenerationConfig,
    PPOConfig,
    Seq2SeqConfig,
    apply_settings,
    describe_settings,
    get_profile,
)
from rlhf_helpers.core.generation import (
    generate_ids,
    is_encoder_decoder,
    lm_forward,
    logprobs_from_logits,
    sequence_kl,
)
from rlhf_helpers.core.loading import load_tokenizer

SMALL = Seq2SeqConfig(d_model=32, d_ff=64, d_kv=8, num_heads=4, num_layers=1, num_decoder_layers=1)
WORDS = ("water", "sleep", "plant")  # one token each in the course tokenizer
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok")
    standins.course_tokenizer(standins.Path(__file__).resolve().parent.parent / "data").save_pretrained(path)
    return load_tokenizer(path)


@pytest.fixture(scope="module")
def trained_t5(tokenizer):
    """A tiny T5 trained for a moment to answer any prompt with 1-5 of :data:`WORDS`, then eos."""
    g = torch.Generator().manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as one_torch_thread, which a module fixture runs before
    model = seq2seq.build_tiny_t5(SMALL, tokenizer, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    ids = [tokenizer(" " + w, add_special_tokens=False)["input_ids"] for w in WORDS]
    assert all(len(i) == 1 for i in ids)
    prompt = tokenizer(["\n\nHuman: hi\n\nAssistant:"] * 16, return_tensors="pt")
    for _ in range(40):
        lengths = torch.randint(1, 6, (16,), generator=g)
        words = torch.tensor(ids)[torch.randint(0, 3, (16, 6), generator=g), 0]
        labels = torch.where(torch.arange(6) < lengths[:, None], words, -100)
        labels[torch.arange(16), lengths] = tokenizer.eos_token_id
        model(**prompt, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    torch.set_num_threads(threads)
    return model.eval()


def test_the_tiny_t5_is_shaped_as_t5(tokenizer):
    embeddings = torch.randn(len(tokenizer), SMALL.d_model) * 0.02
    model = seq2seq.build_tiny_t5(SMALL, tokenizer, embeddings)
    assert is_encoder_decoder(model) and model.config.decoder_start_token_id == tokenizer.pad_token_id
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    assert torch.allclose(model.shared.weight, embeddings / embeddings.std())  # the base's directions, T5's scale
    assert model.get_output_embeddings().weight is model.shared.weight
    with pytest.raises(ValueError, match="do not fit"):
        seq2seq.build_tiny_t5(SMALL, tokenizer, embeddings[:, :8])


def test_generation_returns_the_decoders_tokens_after_its_start(trained_t5, tokenizer):
    prompts = ["How do I water a plant?", "hi", "Any tips to sleep better on a plane, please?"]
    batch = generate_ids(trained_t5, tokenizer, prompts, GenerationConfig(max_new_tokens=8), progress=False)
    assert batch.query_ids.shape[1] == batch.query_mask.shape[1] and (batch.query_mask[:, -1] == 1).all()  # left pad
    assert batch.eos_found.all()  # the trained T5 stops
    enc = tokenizer([f"\n\nHuman: {p}{ASSISTANT_PREFIX}" for p in prompts], return_tensors="pt", padding=True,
                    add_special_tokens=False)
    plain = trained_t5.generate(**enc, max_new_tokens=8, do_sample=False)
    assert (plain[:, 0] == tokenizer.pad_token_id).all()  # the decoder starts from pad
    for i, text in enumerate(batch.responses):
        n = int(batch.response_mask[i].sum())
        assert batch.response_ids[i, :n].tolist() == plain[i, 1 : n + 1].tolist()
        assert batch.response_ids[i, n - 1] == tokenizer.eos_token_id and (batch.response_ids[i, n:] == tokenizer.pad_token_id).all()
        assert text == tokenizer.decode(plain[i, 1:n], skip_special_tokens=True).strip()
        assert set(text.split()) <= set(WORDS) and text


def test_lm_forward_gives_the_decoders_log_probs_and_hidden_states(trained_t5, tokenizer):
    cfg = GenerationConfig(max_new_tokens=6, do_sample=True, top_k=0, seed=3)
    batch = generate_ids(trained_t5, tokenizer, ["hi", "What is the best way to pack?"], cfg, progress=False)
    T = batch.response_ids.shape[1]
    logits, hidden = lm_forward(trained_t5, batch.input_ids, batch.attention_mask, T, hidden=True)
    assert logits.shape[:2] == hidden.shape[:2] == (2, T) and hidden.shape[2] == SMALL.d_model
    labels = batch.response_ids.masked_fill(batch.response_mask == 0, -100)
    out = trained_t5(input_ids=batch.query_ids, attention_mask=batch.query_mask, labels=labels)
    expected = torch.log_softmax(out.logits, -1).gather(-1, batch.response_ids.unsqueeze(-1)).squeeze(-1)
    got = logprobs_from_logits(logits, batch.response_ids)
    mask = batch.response_mask.bool()
    assert torch.allclose(got[mask], expected[mask], atol=1e-5)
    assert torch.isclose(-got[mask].mean(), out.loss, atol=1e-5)  # the labels' cross-entropy, token for token
    k1, full = sequence_kl(trained_t5, trained_t5, batch)
    assert abs(k1).max() < 1e-5 and abs(full).max() < 1e-5  # a model against itself


def test_sft_features_put_the_prompt_in_the_encoder_and_the_answer_with_eos_in_the_labels(tokenizer):
    pairs = Dataset.from_list([{"prompt": "word " * 200, "response": "Water it weekly."}])
    row = seq2seq.sft_features(pairs, tokenizer, max_length=24)[0]
    cue = tokenizer(ASSISTANT_PREFIX, add_special_tokens=False)["input_ids"]
    assert len(row["input_ids"]) == 24 and row["input_ids"][-len(cue):] == cue  # cut on the left: the cue stays
    assert row["labels"][-1] == tokenizer.eos_token_id
    assert tokenizer.decode(row["labels"][:-1]) == " Water it weekly."


def test_ppo_on_a_t5_raises_its_reward(trained_t5, tokenizer):
    cfg = PPOConfig(total_updates=8, batch_size=16, mini_batch_size=8, response_length=8, learning_rate=3e-3,
                    kl_coef=0.0, temperature=1.0, missing_eos_penalty=None, seed=0)
    prompts = [f"question {i}?" for i in range(32)]
    result = ppo.train_ppo(trained_t5, None, tokenizer, reward.WordFrequencyReward(["water"]), prompts, cfg,
                           progress=False)
    scores = [r["objective/scores"] for r in result.history]
    assert result.value_head.linear.in_features == SMALL.d_model
    assert sum(scores[-3:]) / 3 > sum(scores[:3]) / 3 + 0.15, scores


def test_the_seq2seq_settings_round_trip():
    tiny, colab, cpu = get_profile("tiny"), get_profile("colab"), get_profile("cpu")
    assert (tiny.seq2seq.model, colab.seq2seq.model, cpu.seq2seq.model) == (
        "tiny", standins.FLAN_T5, standins.FLAN_T5_SMALL)
    changed = apply_settings(tiny, "seq2seq.ppo_updates=3;seq2seq.embeddings_from_base=True")
    assert (changed.seq2seq.ppo_updates, changed.seq2seq.embeddings_from_base) == (3, True)
    assert dataclasses.replace(changed.seq2seq, ppo_updates=tiny.seq2seq.ppo_updates,
                               embeddings_from_base=False) == tiny.seq2seq
    rows = {key: doc for key, _, _, doc in describe_settings(colab) if key.startswith("seq2seq.")}
    assert len(rows) == len(dataclasses.fields(Seq2SeqConfig)) and all(rows.values())
    ppo_cfg = seq2seq.ppo_config(colab)
    assert (ppo_cfg.total_updates, ppo_cfg.learning_rate, ppo_cfg.response_length) == (
        colab.seq2seq.ppo_updates, colab.seq2seq.ppo_learning_rate, colab.ppo.response_length)


def test_the_flan_t5_standin_loads_as_flan_t5_does(tmp_path, tokenizer):
    path = standins.t5_standin(tmp_path / "flan", tokenizer)
    model, tok = seq2seq.load_seq2seq(path)
    assert (tok.pad_token, tok.eos_token, tok.bos_token) == ("<pad>", "</s>", None)
    assert model.config.decoder_start_token_id == tok.pad_token_id and "Human:" in tok.chat_template
    assert model.config.feed_forward_proj == "gated-gelu"
    batch = generate_ids(model, tok, ["hi"], GenerationConfig(max_new_tokens=4), progress=False)
    assert batch.response_ids.shape == (1, 4)


def test_the_rouge_reward_pays_for_the_references_words():
    rouge = seq2seq.RougeReward({"How do I sleep?": "Go to bed at the same time each night.", "Hi?": "Hello."})
    scores = rouge.score(["How do I sleep?", "How do I sleep?", "Hi?"],
                         ["Go to bed at the same time each night.", "Eat more plants.", "Hello."])
    assert scores.shape == (3,) and scores[0] == pytest.approx(1.0) and scores[1] == 0.0 and scores[2] == 1.0
    with pytest.raises(KeyError, match="no reference for prompt 'Why\\?'"):
        rouge.score(["Why?"], ["Because."])
    with pytest.raises(ValueError, match="at least one"):
        seq2seq.RougeReward({})


def test_beam_answers_with_one_beam_are_the_greedy_answers(trained_t5, tokenizer):
    from rlhf_helpers.core.generation import generate

    prompts = ["hi", "how are you today?"]
    greedy = generate(trained_t5, tokenizer, prompts, GenerationConfig(max_new_tokens=8, do_sample=False),
                      progress=False)
    one = seq2seq.beam_answers(trained_t5, tokenizer, prompts, num_beams=1, max_new_tokens=8)
    four = seq2seq.beam_answers(trained_t5, tokenizer, prompts, num_beams=4, max_new_tokens=8, batch_size=1)
    assert one == [g.strip() for g in greedy] and len(four) == 2
    assert all(set(a.split()) <= set(WORDS) for a in four)  # the trained words, nothing of the prompt


def test_a_second_ppo_run_from_the_same_sft_model_still_trains(trained_t5, tokenizer, tmp_path):
    """The trainer freezes its reference (the SFT model): a second run from it must not train a frozen copy (whose
    optimizer would hold no weights: the policy would never move)."""
    import copy

    from rlhf_helpers.core.artifacts import Paths

    sft = copy.deepcopy(trained_t5)
    profile = dataclasses.replace(get_profile("tiny"), paths=Paths(tmp_path, tmp_path))
    profile = dataclasses.replace(profile, seq2seq=dataclasses.replace(profile.seq2seq, ppo_updates=1, ppo_batch_size=8),
                                  ppo=dataclasses.replace(profile.ppo, mini_batch_size=8, response_length=6))
    prompts = [f"question {i}?" for i in range(8)]

    class Length:  # a reward that varies from answer to answer (1-5 words): non-zero advantages
        name = "length"

        def score(self, prompts: list[str], responses: list[str]) -> torch.Tensor:
            return torch.tensor([float(len(r.split())) for r in responses])

    for _ in range(2):
        result = seq2seq.train_ppo(profile, sft, tokenizer, Length(), prompts, progress=False)
        # the reference is frozen by the trainer; the policy of every run (the second too) is trainable
        assert all(p.requires_grad for p in result.policy.parameters())
        assert not any(p.requires_grad for p in sft.parameters())
