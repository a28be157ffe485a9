"""Profiles: every setting of the course in one place, as dataclasses with documented defaults.

A *profile* groups the per-stage configs. Three exist:

* ``tiny``  – offline, CPU only: a tokenizer and a ~1M-parameter GPT-2 built from the
  course's own data, the whole course in minutes. The tests run this profile.
* ``colab`` – a 16 GB T4-class GPU with the Hugging Face Hub: gpt2 on
  ``Dahoas/synthetic-instruct-gptj-pairwise``, QLoRA of the same gpt2.
* ``cpu``   – a laptop with internet and no GPU: a small hub model, short runs.

:func:`get_profile` picks one from its argument, else ``$RLHF_PROFILE``, else the hardware
(a CUDA GPU -> ``colab``, none -> ``tiny``); ``$RLHF_SET`` changes single settings of it
(:func:`apply_settings`). :class:`Paths` decides where every stage's artifacts live, so a later notebook finds an
earlier stage's output by itself.
"""

from __future__ import annotations

import ast
import os
import types
import typing
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from .artifacts import Paths

PROFILE_NAMES = ("tiny", "colab", "cpu")


@dataclass
class DataConfig:
    """Where the course's data comes from and how it is split."""

    source: str = "course"  # "course" = the JSONL files in data/; else a local file or hub dataset name
    sft_eval_fraction: float = 0.05  # share of SFT pairs held out for the eval loss
    preference_test_fraction: float = 0.1  # share of preference pairs held out for accuracy
    num_heldout_prompts: int = 220  # held-out prompts (with references) used by the evaluation; tiny: all 220 of
    # data/heldout.jsonl (160 seen-task prompts, the headline, and 60 unseen-task prompts)
    max_prompt_chars: int = 600  # longer prompts are reported, then dropped from training
    max_response_chars: int = 600  # longer responses are reported, then dropped from training
    hub_split: str = "train"  # split of a hub dataset to read


@dataclass
class ModelConfig:
    """The base model: ``name="tiny"`` builds one offline; anything else is a hub name."""

    name: str = "tiny"  # "tiny" = build a GPT-2 from the course data offline; else a Hub model name (e.g. gpt2)
    vocab_size: int = 2048  # tiny: BPE vocabulary trained on data/
    n_layer: int = 4  # tiny: transformer blocks
    n_head: int = 4  # tiny: attention heads
    n_embd: int = 128  # tiny: hidden size
    n_positions: int = 256  # tiny: longest sequence (tokens)
    activation_function: str = "gelu_pytorch_tanh"  # tiny: GPT-2's tanh GELU in one kernel ("gelu_new" computes
    # the same function in six, and its steps took 15% longer)
    pretrain_steps: int = 200  # tiny: causal-LM steps on generic topic text (not the chat format)
    pretrain_batch_size: int = 32  # tiny: sequences per pretraining step
    pretrain_seq_len: int = 64  # tiny: tokens per pretraining sequence
    pretrain_lr: float = 3e-3  # tiny: AdamW learning rate of the pretraining
    dtype: str = "auto"  # "auto": bf16/fp16 on a GPU that has it, float32 on CPU


@dataclass
class GenerationConfig:
    """Decoding settings shared by every notebook (see :mod:`rlhf_helpers.core.generation`)."""

    max_new_tokens: int = 64  # tiny: a full course answer (opener, 3 tips, closer) is up to ~60 tokens; 48 cut 30%
    do_sample: bool = False  # greedy by default; sampling for PPO rollouts
    temperature: float = 1.0  # sampling temperature (only when do_sample)
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # nucleus sampling threshold (1.0 = off)
    batch_size: int = 128  # prompts per generate call; tiny: per-call overhead dominates, 128 ~1.7x faster than 32
    seed: int = 0  # seeds the sampling (when do_sample)
    chat_format: bool = True  # wrap each prompt in the chat format; False: continue the prompt text as it is


@dataclass
class TrainSchedule:
    """What every TRL trainer of the course (SFT, QLoRA, reward model) is given: the optimisation schedule.
    Field names are ``transformers.TrainingArguments``' own."""

    learning_rate: float = 1e-3  # peak learning rate (after the warm-up)
    max_steps: int = 150  # optimizer steps of the run
    per_device_train_batch_size: int = 16  # examples per step on each process (the global batch is this x processes x accumulation)
    gradient_accumulation_steps: int = 1  # micro-batches summed into one optimizer step
    eval_steps: int = 50  # evaluate on the eval split every this many steps (and before and after training)
    logging_steps: int = 10  # log the training loss every this many steps
    max_length: int = 160  # tokens of prompt + response
    warmup_ratio: float = 0.05  # fraction of max_steps with a linear learning-rate warm-up
    weight_decay: float = 0.0  # AdamW weight decay
    lr_scheduler_type: str = "cosine"  # transformers scheduler name: decays to 0 at max_steps after the warm-up
    optim: str = "adamw_torch"  # transformers optimizer name (a paged/8-bit one falls back to AdamW without CUDA)
    gradient_checkpointing: bool = False  # TRL turns it on by default; ~60% slower on tiny models
    seed: int = 0  # seeds the data order and any new weights (transformers.set_seed)


@dataclass
class SFTConfig(TrainSchedule):
    """Full supervised fine-tuning with TRL's SFTTrainer (loss on the response only)."""

    learning_rate: float = 4e-3  # tiny: a 1M-parameter model tolerates (and needs, in 150 steps) a large rate
    max_steps: int = 300  # tiny: ~1.7 epochs; at 200 steps the SFT model's samples were often broken (gold std 0.24
    # over samples, vs 0.11 at 400 steps), and PPO then chases the reward model's noise instead of the warmth it pays


@dataclass
class QLoRAConfig(TrainSchedule):
    """QLoRA: a 4-bit (nf4) frozen base plus trainable LoRA adapters. On a GPU: ``optim="paged_adamw_8bit"``;
    ``gradient_checkpointing=True`` recomputes activations (less memory, slower)."""

    learning_rate: float = 6e-3  # tiny: 2e-2 diverges (Adam moves A and B, so B @ A grows ~quadratically)
    max_steps: int = 300  # the same budget as full SFT: a fair comparison (notebook 03 shows both eval-loss curves)
    base: str | None = None  # model to quantize; None = the profile's base model
    load_in_4bit: bool = True  # falls back to plain LoRA where bitsandbytes cannot load 4-bit
    bnb_4bit_quant_type: str = "nf4"  # bitsandbytes 4-bit type: "nf4" (QLoRA paper) or "fp4"
    bnb_4bit_use_double_quant: bool = True  # also quantize the quantization constants (~0.4 bits per weight saved)
    lora_r: int = 16  # rank of the LoRA adapters
    lora_alpha: int = 32  # LoRA scaling numerator (scale = alpha / r)
    lora_dropout: float = 0.0  # dropout on the adapters' input; tiny: 0, as drawing the dropout masks took 15% of a
    # QLoRA step, and QLoRA's gold minus full SFT's was -0.031 / -0.025 / -0.058 for seeds 0 / 1 / 2 without it,
    # -0.054 / -0.034 / -0.036 with 0.05 (colab and cpu: 0.05)
    target_modules: str | list[str] = "all-linear"  # peft matches Linear and GPT-2's Conv1D, not lm_head
    train_embeddings: bool = True  # also train the token embeddings and output head in full (PEFT modules_to_save,
    # kept tied where the base ties them): adapters on the linear layers cannot move an embedding row. tiny: its
    # base never saw most of the prompts' tokens (pretrained without the chat format; notebook 03). A Hub model has
    # trained its whole vocabulary: False there, unless you add tokens


@dataclass
class RewardConfig(TrainSchedule):
    """Reward model: the SFT model with a scalar head, trained with a Bradley-Terry loss."""

    learning_rate: float = 1e-3
    max_steps: int = 120  # tiny: ~1 epoch of the 3600 training pairs
    per_device_train_batch_size: int = 32
    max_length: int = 160  # RewardTrainer *drops* longer pairs; we report how many
    lr_scheduler_type: str = "linear"  # TRL's default: linear decay to 0
    optim: str = "adamw_torch_fused"  # transformers' default optimizer, which the reward model has always used
    base: str = "sft_full"  # a stage name (its checkpoint) or a hub model name
    use_margin: bool = False  # add a margin column to the Bradley-Terry loss (see margin_scale)
    margin_scale: float = 1.0  # use_margin: margin = margin_scale * |gold(chosen) - gold(rejected)| (add_gold_margins)
    use_lora: bool = False  # train LoRA adapters (plus the score head) instead of the full model
    lora_r: int = 16  # rank of the LoRA adapters (use_lora)
    lora_alpha: int = 32  # LoRA scaling numerator (scale = alpha / r); the score head always trains fully
    center_rewards_coefficient: float | None = None  # TRL's optional penalty on (r_chosen + r_rejected)^2; None = off
    eval_pairs: int = 128  # held-out pairs evaluated every eval_steps during training (all test pairs at the end)
    score_batch_size: int = 64  # texts per forward pass when scoring (RewardModelSource)
    regression_steps: int = 20  # steps of the regression (MSE on scalar ratings) variant
    relevance_steps: int = 0  # warm-up steps on reward.relevance_pairs before the real pairs (0 = none). tiny: without
    # it the 1M-parameter model orders off-topic pairs at chance -- its blind spot (notebooks 04, 05); 100 steps lift
    # them to ~84% for ~2x the training time (notebook 04's exercise)


@dataclass
class PPOConfig:
    """PPO settings (see :mod:`rlhf_helpers.ppo` for what each one does). Names as in TRL 1.12's
    ``PPOConfig`` where they mean the same thing (``kl_coef``, ``num_ppo_epochs``, ``response_length``, ...)."""

    learning_rate: float = 5e-5  # AdamW learning rate of the policy (gpt2-size: ~1e-5). tiny: 1e-4 drifts into answers
    # the reward model cannot judge (KL 5-9 in 20 updates, gold down); 5e-5 clips ~4% of the tokens
    total_updates: int = 32  # PPO updates (one update = one rollout batch + num_ppo_epochs of optimisation)
    batch_size: int = 64  # prompts per rollout (per process)
    mini_batch_size: int = 8  # responses per optimizer step; batch_size must be a multiple
    num_ppo_epochs: int = 4  # passes over each rollout batch
    gradient_accumulation_steps: int = 1  # micro-batches per minibatch (mini_batch_size must be a multiple)
    response_length: int = 64  # response length limit of the rollouts; tiny: a warm answer with three tips takes ~45-60
    # tokens, so at 32 the missing-EOS penalty teaches the policy to drop tips
    fit_response_length: bool = False  # True: response_length becomes the 95th percentile of the preference data's
    # chosen answers (tokens, rounded up to 8), at most the value above; where that cap covers fewer than 95% of the
    # answers, the missing-EOS penalty is turned off: it would teach the policy to cut answers the data calls normal
    # (ppo_runs.fit_response_length). tiny: False, its 64 covers the course answers
    temperature: float = 0.7  # sampling temperature of the rollouts (log-probs use the same temperature); tiny: at 1.0
    # the 1M-parameter SFT model's samples are often word salad, which the reward model cannot rank
    kl_coef: float = 0.1  # beta: weight of the per-token KL penalty -beta * (log pi - log pi_ref) (the start value when
    # adaptive_kl); the sweep of notebook 05 shows what 0 and 1.0 do instead
    adaptive_kl: bool = False  # True: Ziegler et al.'s controller moves beta towards target_kl
    target_kl: float = 6.0  # adaptive controller: wanted KL(pi || pi_ref) per response, nats
    kl_horizon: int = 10000  # adaptive controller: episodes over which beta adapts (larger = slower)
    gamma: float = 1.0  # discount over response tokens (1: the score counts fully for every token)
    lam: float = 1.0  # GAE lambda (bias/variance trade-off of the advantages). tiny: 1.0 -- the score arrives on the last
    # of ~35 tokens, and with 0.95 only 0.95^34 ~ 17% of it reaches the first token (the opener) through the sampled
    # rewards: the rest must come from a value head that has seen a few batches. TRL's default is 0.95
    cliprange: float = 0.2  # PPO ratio clip epsilon
    cliprange_value: float = 0.2  # clip of the value update around the rollout's values
    vf_coef: float = 0.1  # weight of the value loss in the total loss
    max_grad_norm: float = 1.0  # gradient clipping (global L2 norm)
    whiten_rewards: bool = False  # rescale the per-token rewards to unit variance over the batch (keeps the mean)
    missing_eos_penalty: float | None = 1.0  # subtracted from the score of a response without EOS; None = off
    use_lora: bool = False  # train LoRA adapters; the reference is then the same model with adapters disabled
    gradient_checkpointing: bool = False  # trade compute for memory (slower; useful on a GPU for big models)
    sample_every: int = 10  # keep/print a few generations every this many updates (and after update 1)
    save_every: int = 10  # checkpoint every this many updates (and at the end), when an out_dir is given
    max_kl: float = 50.0  # stop the run if the mean KL goes beyond this
    seed: int = 0  # seeds prompt order, sampling, minibatch shuffles and the value head
    score_clip: float | None = None  # clip each score to [-score_clip, score_clip] (after the EOS penalty); None = off
    adam_epsilon: float = 1e-5  # AdamW epsilon (lm-human-preferences / CleanRL use 1e-5, not torch's 1e-8)
    lora_r: int = 16  # LoRA rank when use_lora
    lora_alpha: int = 32  # LoRA scaling numerator (scale = alpha / r)
    lora_target_modules: str | list[str] = "all-linear"  # peft matches Linear and GPT-2's Conv1D, not lm_head
    mixed_precision: str = "auto"  # accelerate's: "auto" = bf16 (or fp16) on CUDA, "no" on CPU; or no|fp16|bf16
    value_lr_multiplier: float = 10.0  # the value head's learning rate = learning_rate * this (see ppo.ValueHead)
    value_bias_init: bool = True  # start the value head's bias at the first rollout's mean score (else V = 0)
    value_detach_trunk: bool = False  # True: the value loss trains the value head only (no gradient into the policy)
    chat_format: bool = True  # rollouts answer prompts in the chat format; False: they continue the prompt text
    # as it is (sentiment control's review openings)
    num_samples: int = 4  # generations kept in the log each time samples are drawn (every sample_every updates)
    brevity_updates: int = 12  # updates of the warm-up run against the programmatic brevity reward
    brevity_kl_coef: float = 0.05  # beta of the brevity run: a light leash, so the length falls within a few updates
    sweep_betas: list[float] = field(default_factory=lambda: [0.0, 1.0])  # fixed betas of the sweep (the main run's
    # kl_coef sits between them)
    sweep_updates: int = 20  # updates per beta of the sweep (each run starts from the SFT model); tiny: at beta = 0 the
    # gold score peaks within ~10 updates, and by update 20 it has fallen 0.05 or more below its peak on seeds 0-2
    # (by update 18 seed 0's had fallen 0.044)
    short_run_learning_rate: float | None = None  # learning rate of the brevity run and the sweep (None = learning_rate);
    # tiny: at 1e-4 the beta = 0 run damages the answers as fast as it warms them, and the gold score's rise is lost
    sweep_prompts: int | None = 256  # the sweep trains on the first this many prompts (None = all)
    short_run_batch_size: int = 32  # prompts per rollout of the brevity run and the sweep (cheaper than the main run's)


    def __post_init__(self) -> None:
        """Inconsistent settings raise a ValueError naming the field (at construction, so also on ``replace``)."""
        checks = [
            (self.batch_size > 0, "batch_size must be positive"),
            (self.mini_batch_size > 0 and self.batch_size % self.mini_batch_size == 0,
             f"batch_size ({self.batch_size}) must be a multiple of mini_batch_size ({self.mini_batch_size})"),
            (self.gradient_accumulation_steps > 0 and self.mini_batch_size % self.gradient_accumulation_steps == 0,
             f"mini_batch_size ({self.mini_batch_size}) must be a multiple of gradient_accumulation_steps "
             f"({self.gradient_accumulation_steps})"),
            (self.mini_batch_size // max(1, self.gradient_accumulation_steps) >= 1, "micro-batch size must be >= 1"),
            (self.num_ppo_epochs > 0, "num_ppo_epochs must be positive"),
            (self.total_updates >= 0, "total_updates must be >= 0"),
            (self.response_length > 0, "response_length must be positive"),
            (self.temperature > 0, "temperature must be > 0"),
            (self.kl_coef >= 0, "kl_coef (beta) must be >= 0"),
            (0 <= self.gamma <= 1 and 0 <= self.lam <= 1, "gamma and lam must be in [0, 1]"),
            (self.cliprange > 0 and self.cliprange_value > 0, "cliprange and cliprange_value must be > 0"),
            (self.missing_eos_penalty is None or self.missing_eos_penalty >= 0, "missing_eos_penalty must be >= 0"),
            (self.save_every > 0 and self.sample_every > 0, "save_every and sample_every must be positive"),
            (self.mixed_precision in ("auto", "no", "fp16", "bf16"), "mixed_precision must be auto|no|fp16|bf16"),
            (self.brevity_updates >= 0 and self.sweep_updates >= 0, "brevity_updates and sweep_updates must be >= 0"),
            (len(self.sweep_betas) > 0 and all(b >= 0 for b in self.sweep_betas), "sweep_betas must be betas >= 0"),
            (self.sweep_prompts is None or self.sweep_prompts > 0, "sweep_prompts must be positive (or None = all)"),
            (self.short_run_learning_rate is None or self.short_run_learning_rate > 0,
             "short_run_learning_rate must be > 0 (or None)"),
            (self.brevity_kl_coef >= 0, "brevity_kl_coef must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"PPOConfig: {message}")


@dataclass
class EvalConfig:
    """Final comparison of every stage's policy on the held-out prompts."""

    num_prompts: int = 220  # held-out prompts answered by every policy (at most DataConfig.num_heldout_prompts)
    max_new_tokens: int = 64  # tokens per answer of every policy
    seed: int = 0  # seeds the generation (when sampling) and the bootstrap of the win-rate CI
    # "auto": the gold judge on the course data, else `hub_judge`; "gold": the course's rubric judge;
    # anything else: a hub judge model name (a sequence-classification reward model scoring (prompt, response)).
    judge: str = "auto"
    bootstrap_samples: int = 1000  # resamples of the bootstrap intervals
    hub_judge: str = "OpenAssistant/reward-model-deberta-v3-large-v2"  # the stronger judge on non-course data
    do_sample: bool = False  # greedy answers (deterministic); True samples with `temperature`, seeded
    temperature: float = 1.0  # sampling temperature (do_sample only)
    batch_size: int = 32  # prompts per generation / scoring batch
    reference_policy: str = "sft_full"  # the baseline of the win rate and the reference of the KL
    ci_level: float = 0.95  # confidence level of the bootstrap interval of the win rate
    qualitative_prompts: int = 6  # prompts in the side-by-side table of answers


@dataclass
class BeyondPPOConfig:
    """Notebook 07: DPO, RLOO and GRPO from the SFT model (notebook 02), on notebook 01's preference pairs (DPO)
    and notebook 05's prompts (RLOO, GRPO).

    Each beta is one run and one point on the frontier of gold score against KL to SFT. TRL's names: ``beta`` is
    DPO's temperature of the implicit reward and, for RLOO/GRPO, the KL coefficient (GRPO's default 0: no KL term).
    """

    dpo_betas: tuple[float, ...] = (0.1, 0.5)  # DPO (sigmoid loss) runs; small beta = a looser leash on SFT
    ipo_beta: float = 0.5  # one run with the IPO loss (squared, bounded margin target 1 / (2 beta)); 0 = no IPO run
    dpo_learning_rate: float = 2e-4  # tiny: Adam on a 1M-parameter model (gpt2-size: ~5e-7)
    dpo_max_steps: int = 16  # optimizer steps of each DPO / IPO run; tiny: 16 x 8 = 128 of the 3600 training pairs
    dpo_batch_size: int = 8  # preference pairs per step
    rloo_betas: tuple[float, ...] = (0.05,)  # RLOO runs (TRL's default 0.05): the KL enters the reward
    grpo_betas: tuple[float, ...] = (0.0,)  # GRPO runs (TRL's default 0: no KL term at all)
    online_learning_rate: float = 4e-5  # RLOO and GRPO; tiny: at 2e-4, 12 steps reach KL 30+ and the gold score falls
    online_max_steps: int = 16  # optimizer steps of each RLOO / GRPO run (one fresh batch of samples each)
    online_snapshot_every: int = 0  # also keep the policy every this many steps: more points on the frontier, as the
    # DPO paper evaluates its runs along training (0 = the final policy only; tiny: 0, as each point costs ~5 s of
    # evaluation and notebook 07 has two minutes)
    num_generations: int = 4  # answers sampled per prompt: the group RLOO's baseline and GRPO's normaliser use
    prompts_per_step: int = 4  # prompts per step (x num_generations answers); tiny: 8 took twice the time for +0.05 win
    max_completion_length: int | None = None  # tokens per RLOO/GRPO answer; None: PPO's rollout length
    # (ppo.response_length, fitted to the data's answers where ppo.fit_response_length), the same budget as PPO's
    temperature: float = 0.7  # sampling temperature of RLOO/GRPO (as PPO's rollouts)
    logging_steps: int = 5  # TRL logs every this many steps (and the last step always: beyond_ppo.LogLastStep)
    eval_split: str = "seen_task"  # evaluate on this slice of the held-out prompts (course data: trained tasks in new
    # words, the headline of notebooks 05-06; "" or a slice the data lacks = every prompt). Tiny: 160 of 220 prompts
    seed: int = 0

    def __post_init__(self) -> None:
        """Settings no trainer could run with raise a ValueError naming the field (also on ``replace``)."""
        betas = (*self.dpo_betas, self.ipo_beta, *self.rloo_betas, *self.grpo_betas)
        checks = [
            (all(b >= 0 for b in betas) and all(b > 0 for b in self.dpo_betas),
             "betas must be >= 0 (DPO's > 0: the implicit reward divides by beta)"),
            (self.dpo_max_steps > 0 and self.dpo_batch_size > 0, "dpo_max_steps and dpo_batch_size must be positive"),
            (self.online_max_steps > 0 and self.prompts_per_step > 0, "online_max_steps and prompts_per_step must be positive"),
            (self.num_generations >= 2, "num_generations must be >= 2 (RLOO's baseline is the other answers' mean)"),
            (self.online_snapshot_every >= 0, "online_snapshot_every must be >= 0 (0 = the final policy only)"),
            ((self.max_completion_length is None or self.max_completion_length > 0) and self.temperature > 0,
             "max_completion_length (None: PPO's) and temperature must be > 0"),
            (self.dpo_learning_rate > 0 and self.online_learning_rate > 0, "learning rates must be > 0"),
            (self.logging_steps > 0, "logging_steps must be positive"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"BeyondPPOConfig: {message}")


@dataclass
class FeedbackConfig:
    """Notebook 08: pairs of SFT answers labelled by people or a simulated annotator, a reward model trained on
    the labels, a short PPO run against it."""

    pairs_per_prompt: int = 2  # answer pairs sampled per PPO training prompt (two samples at PPO's temperature each)
    heldout_share: float = 0.25  # share of the prompts whose pairs are kept out of training (held-out agreement)
    num_labels: int = 200  # labels the simulated annotator gives on training pairs (ties included)
    annotator_per_word: float = 0.03  # the simulated annotator's taste: utility = gold - per_word * words
    annotator_noise: float = 0.02  # its Bradley-Terry temperature: P(prefers the better answer) = sigmoid(d / noise)
    annotator_tie_margin: float = 0.15  # utility differences below this are labelled "tie" (tiny: ~40% of the pairs)
    course_pairs: int = 100  # notebook 01's preference pairs mixed into the labels' training set, so the reward
    # model keeps notebook 04's rubric (0 = the labels alone). Tiny, measured with an earlier base model (GELU
    # "gelu_new"), on the held-out labels / the gold judge's order of
    # the held-out pairs / PPO's gold change: 0 pairs (40 steps) 88% / 49% / -0.018 [-0.029, -0.009]; 100 pairs
    # 87% / 58% / +0.004 [-0.003, +0.012]; 200 pairs (120 steps) 76% / 66% / +0.036
    reward_steps: int = 70  # steps of training notebook 04's reward model further on them (~5 epochs); tiny: 100 and
    # 150 steps agreed less with the held-out labels (82% and 81% against 85%)
    reward_learning_rate: float = 3e-4  # AdamW learning rate of that further training
    reward_batch_size: int = 16  # label pairs per step of it
    ppo_updates: int = 12  # updates of the short PPO run against the labels' reward model
    ppo_kl_coef: float = 1.0  # its beta; tiny: at 0.2 and 0.5 the answers got shorter still and the gold score fell
    # (-0.07, -0.02)
    seed: int = 0

    def __post_init__(self) -> None:
        """Settings that cannot run raise a ValueError naming the field (also on ``replace``)."""
        checks = [
            (self.pairs_per_prompt > 0 and self.num_labels > 0, "pairs_per_prompt and num_labels must be positive"),
            (self.course_pairs >= 0, "course_pairs must be >= 0"),
            (0 < self.heldout_share < 1, "heldout_share must be in (0, 1)"),
            (self.annotator_noise > 0 and self.annotator_tie_margin >= 0, "annotator_noise must be > 0, tie_margin >= 0"),
            (self.reward_steps > 0 and self.ppo_updates >= 0, "reward_steps must be > 0 and ppo_updates >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"FeedbackConfig: {message}")


@dataclass
class Seq2SeqConfig(TrainSchedule):
    """Notebook 10: an encoder-decoder (T5-architecture) policy through SFT (``transformers.Seq2SeqTrainer``, this
    schedule), PPO (notebook 05's trainer: ``profile.ppo`` except the ``ppo_*`` settings here) against notebook 04's
    reward model, and the held-out evaluation (learned reward, ROUGE, BLEU, the gold judge)."""

    model: str = "tiny"  # "tiny": a T5 built from the sizes below with the tiny base's tokenizer; else a Hub
    # encoder-decoder model (colab: google/flan-t5-base, as S1)
    d_model: int = 128  # tiny: hidden size (the tiny GPT-2's n_embd, so that its token embeddings fit)
    d_ff: int = 256  # tiny: width of the feed-forward layers
    d_kv: int = 32  # tiny: size of each attention head
    num_heads: int = 4  # tiny: attention heads
    num_layers: int = 2  # tiny: encoder blocks
    num_decoder_layers: int = 2  # tiny: decoder blocks
    embeddings_from_base: bool = False  # tiny: start T5's shared token embeddings from the tiny GPT-2 base's (same
    # tokenizer), rescaled to T5's initial scale. Measured, 500 SFT steps: held-out ROUGE-L 0.13 and gold 0.13 with
    # them, 0.20 and 0.21 from random ones (300 steps: 0.09 vs 0.12), so off
    learning_rate: float = 1e-2  # SFT's peak learning rate; tiny: from scratch (no pretraining), at 3e-3 the loss was
    # still 1.8 after 200 steps and every answer the same gardening tip
    max_steps: int = 400  # SFT optimizer steps (tiny: ~2.2 epochs; the eval loss still falls at 500)
    max_length: int = 96  # tokens of the prompt (encoder) and, apart, of the answer (decoder) in SFT
    eval_steps: int = 200  # SFT's eval loss every this many steps (and before and after training)
    ppo_updates: int = 12  # PPO updates of the seq2seq policy
    ppo_batch_size: int = 32  # prompts per rollout
    ppo_learning_rate: float = 1e-4  # AdamW learning rate of PPO
    ppo_kl_coef: float = 0.1  # PPO's beta
    eval_prompts: int = 220  # held-out prompts answered before and after PPO (at most DataConfig.num_heldout_prompts)


@dataclass
class SentimentConfig:
    """Notebook 09: PPO steers a review writer towards a sentiment (S2, S4), judged by a classifier and checked by
    VADER; then the same run with LoRA and gradient checkpointing. tiny: the writer, the classifier and the prompts
    are built from ``data/reviews.jsonl`` in the notebook; colab/cpu: IMDB openings, ``lvwerra/gpt2-imdb`` and
    ``lvwerra/distilbert-imdb`` (S4's set-up)."""

    target: str = "positive"  # the sentiment PPO steers towards: "positive" (S4) or "negative" (S2)
    dataset: str = "course"  # "course" = data/reviews.jsonl; else a Hub dataset with text and label (0/1) columns
    dataset_split: str = "train"  # split of a Hub dataset
    num_reviews: int = 2000  # reviews read (a Hub dataset's first ones after a seeded shuffle); tiny: all 2000
    policy: str = "tiny"  # "tiny" = the tiny base trained further on the reviews (lm_steps); else a Hub causal LM
    classifier: str = "tiny"  # "tiny" = a classifier trained here on the reviews (classifier_steps); else a Hub model
    lm_steps: int = 200  # tiny: causal-LM steps of the base on the reviews (the course's gpt2-imdb); at 120 its reviews
    # broke words ("a waste out laste of time")
    lm_learning_rate: float = 3e-3  # tiny: AdamW learning rate of those steps
    classifier_steps: int = 60  # tiny: steps of training the classifier (the base's trunk + a 2-class head)
    classifier_learning_rate: float = 1e-3  # tiny: AdamW learning rate of the classifier
    classifier_batch_size: int = 32  # tiny: reviews per classifier step
    test_share: float = 0.2  # share of the reviews held out to test the classifier
    heldout_openings: int = 3  # tiny: openings kept out of PPO's prompts; the before/after tables use them
    prompt_tokens: tuple[int, int] = (2, 8)  # Hub data: a prompt is a review's first 2-8 tokens (TRL's IMDB example)
    num_prompts: int = 512  # Hub data: prompts cut from the reviews (a share test_share of them held out)
    eval_samples: int = 96  # continuations per policy in the before/after tables (held-out prompts, sampled)
    response_length: int = 32  # tokens per continuation (rollouts and tables); tiny: a review takes 15-60 tokens
    temperature: float = 1.0  # sampling temperature of rollouts and tables (TRL's sentiment example: plain sampling)
    total_updates: int = 20  # PPO updates of the main sentiment run
    batch_size: int = 32  # prompts per rollout
    mini_batch_size: int = 8  # responses per optimizer step
    learning_rate: float = 1e-4  # AdamW learning rate of the policy (gpt2-size: ~1.4e-5)
    kl_coef: float = 0.1  # beta of the KL penalty to the review writer
    table_updates: int = 8  # updates of each run of the LoRA / gradient-checkpointing table
    lora_r: int = 8  # LoRA rank of the table's LoRA runs
    lora_alpha: int = 16  # LoRA scaling numerator (scale = alpha / r)
    lora_learning_rate: float = 1e-3  # learning rate of the LoRA runs: adapters start at zero and need a larger one
    seed: int = 0  # seeds the splits, the prompts, the sampling and the runs


@dataclass
class Profile:
    """One profile = one setting for every stage."""

    name: str
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    qlora: QLoRAConfig = field(default_factory=QLoRAConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    beyond: BeyondPPOConfig = field(default_factory=BeyondPPOConfig)
    feedback: FeedbackConfig = field(default_factory=FeedbackConfig)
    sentiment: SentimentConfig = field(default_factory=SentimentConfig)
    seq2seq: Seq2SeqConfig = field(default_factory=Seq2SeqConfig)
    seed: int = 0
    paths: Paths = field(default_factory=Paths)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["paths"] = {"root": str(self.paths.root), "data_dir": str(self.paths.data_dir)}
        return d


# S4's set-up (TRL's gpt2-sentiment example): IMDB review openings, GPT-2 fine-tuned on IMDB, DistilBERT's IMDB classifier
IMDB_SENTIMENT = SentimentConfig(dataset="stanfordnlp/imdb", num_reviews=5000, policy="lvwerra/gpt2-imdb",
                                 classifier="lvwerra/distilbert-imdb", eval_samples=256, response_length=16,
                                 total_updates=60, batch_size=64, mini_batch_size=16, learning_rate=1.41e-5,
                                 table_updates=10, lora_r=16, lora_alpha=32, lora_learning_rate=1.41e-4)


def _tiny() -> Profile:
    return Profile(name="tiny")


def _colab() -> Profile:
    return Profile(
        name="colab",
        model=ModelConfig(name="gpt2", dtype="auto"),
        data=DataConfig(source="Dahoas/synthetic-instruct-gptj-pairwise", num_heldout_prompts=200,
                        max_prompt_chars=1500, max_response_chars=1500),
        generation=GenerationConfig(max_new_tokens=128, batch_size=16),
        sft=SFTConfig(learning_rate=5e-5, max_steps=2000, per_device_train_batch_size=8,
                      gradient_accumulation_steps=2, eval_steps=200, logging_steps=20, max_length=512),
        qlora=QLoRAConfig(learning_rate=2e-4, max_steps=2000,  # the same gpt2 and step budget as full SFT: a fair
                          # comparison of the two recipes (a different base would compare models and tokenizers)
                          per_device_train_batch_size=8, gradient_accumulation_steps=2, eval_steps=200,
                          logging_steps=20, max_length=512, optim="paged_adamw_8bit", lora_dropout=0.05,
                          gradient_checkpointing=True,  # headroom on a 16 GB T4 (bs 8 x 512 tokens)
                          train_embeddings=False),  # gpt2 has trained its vocabulary: adapters only
        reward=RewardConfig(learning_rate=1e-5, max_steps=2000, per_device_train_batch_size=8,
                            eval_steps=200, logging_steps=20, max_length=512),
        ppo=PPOConfig(learning_rate=1.41e-5, total_updates=200, batch_size=32, mini_batch_size=8, lam=0.95,
                      response_length=128, fit_response_length=True, kl_coef=0.05, adaptive_kl=True, vf_coef=0.1, sweep_betas=[0.0, 0.05, 0.5],
                      short_run_learning_rate=None),  # the short runs at the main run's learning rate
        eval=EvalConfig(num_prompts=200, max_new_tokens=128),
        beyond=BeyondPPOConfig(dpo_betas=(0.1, 0.5), dpo_learning_rate=5e-7, dpo_max_steps=500, dpo_batch_size=8,
                               rloo_betas=(0.05, 0.5), grpo_betas=(0.0, 0.05), online_learning_rate=1e-6,
                               online_max_steps=200, online_snapshot_every=50, logging_steps=20),  # gpt2: TRL's rates
        sentiment=IMDB_SENTIMENT,
        seq2seq=Seq2SeqConfig(model="google/flan-t5-base", learning_rate=3e-4, max_steps=1000,  # S1's model;
                              # AdamW at T5 fine-tuning's usual rate
                              per_device_train_batch_size=8, gradient_accumulation_steps=2, eval_steps=200,
                              logging_steps=20, max_length=512, ppo_updates=100, ppo_batch_size=32,
                              ppo_learning_rate=1.41e-5, ppo_kl_coef=0.05, eval_prompts=200),
    )


def _cpu() -> Profile:
    """A laptop with internet: small real models, short runs. The runtimes are estimated by
    ``benchmarks/cpu_profile.py`` from per-step times of models of these shapes (the Hub is not reachable here)."""
    return Profile(
        name="cpu",
        model=ModelConfig(name="distilgpt2"),  # S0's CPU-friendly model: GPT-2 distilled to 6 layers, 82M parameters
        data=DataConfig(source="Dahoas/synthetic-instruct-gptj-pairwise", num_heldout_prompts=100),
        sft=SFTConfig(learning_rate=5e-5, max_steps=100, per_device_train_batch_size=8, eval_steps=50,
                      logging_steps=10, max_length=256),
        qlora=QLoRAConfig(learning_rate=2e-4, max_steps=100, per_device_train_batch_size=8, eval_steps=50,
                          logging_steps=10, max_length=256, lora_dropout=0.05, train_embeddings=False),  # the same distilgpt2,
        # 4-bit (bitsandbytes runs on CPU), adapters only
        reward=RewardConfig(learning_rate=2e-5, max_steps=100, per_device_train_batch_size=8, eval_steps=50,
                            logging_steps=10, max_length=256),
        ppo=PPOConfig(learning_rate=1.41e-5, total_updates=16, batch_size=16, mini_batch_size=8, lam=0.95,
                      response_length=96, fit_response_length=True, kl_coef=0.05, brevity_updates=4,
                      sweep_betas=[0.0, 0.5], sweep_updates=8, sweep_prompts=64, short_run_batch_size=16,
                      short_run_learning_rate=None),  # TRL's learning rate, as colab
        # a judge a laptop runs: DeBERTa-v3-base (184M parameters), trained on Dahoas's synthetic-instruct among others
        eval=EvalConfig(num_prompts=100, max_new_tokens=96, batch_size=16,
                        hub_judge="OpenAssistant/reward-model-deberta-v3-base"),
        beyond=BeyondPPOConfig(dpo_betas=(0.1,), dpo_learning_rate=5e-6, dpo_max_steps=50, online_max_steps=10,
                               online_snapshot_every=5, online_learning_rate=5e-6, logging_steps=5),  # short, as the other stages
        sentiment=replace(IMDB_SENTIMENT, num_reviews=1000, num_prompts=256, eval_samples=64, total_updates=16,
                          batch_size=16, table_updates=4),
        seq2seq=Seq2SeqConfig(model="google/flan-t5-small", learning_rate=3e-4, max_steps=100,  # 77M parameters
                              per_device_train_batch_size=8, eval_steps=50, logging_steps=10, max_length=256,
                              ppo_updates=8, ppo_batch_size=16, ppo_learning_rate=1.41e-5, ppo_kl_coef=0.05,
                              eval_prompts=100),
    )


_FACTORIES = {"tiny": _tiny, "colab": _colab, "cpu": _cpu}


def has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def resolve_profile_name(name: str | None = None) -> str:
    """Argument, else ``$RLHF_PROFILE``, else the hardware: a CUDA GPU -> colab, none -> tiny."""
    chosen = name or os.environ.get("RLHF_PROFILE") or ("colab" if has_cuda() else "tiny")
    if chosen not in _FACTORIES:
        raise ValueError(f"Unknown profile {chosen!r}; choose one of {', '.join(PROFILE_NAMES)}.")
    return chosen


SEEDED = ("generation", "sft", "qlora", "reward", "ppo", "eval", "beyond", "feedback", "sentiment", "seq2seq")  # the stage configs that have a ``seed``


def with_seed(profile: Profile, seed: int) -> Profile:
    """``profile`` with ``seed`` everywhere: the profile's own (data split, tiny base) and every stage's."""
    stages = {name: replace(getattr(profile, name), seed=seed) for name in SEEDED}
    return replace(profile, seed=seed, **stages)


def resolve_seed() -> int | None:
    """``$RLHF_SEED`` as a whole number (``make seeds`` sets it), None when unset."""
    text = os.environ.get("RLHF_SEED", "").strip()
    if not text:
        return None
    if not text.isdigit():
        raise ValueError(f"RLHF_SEED={text!r}: expected a whole number >= 0")
    return int(text)


SETTINGS_ENV = "RLHF_SET"


def _typed(value: Any, hint: Any) -> tuple[bool, Any]:
    """``(fits, value)``: does ``value`` fit the type ``hint`` (unions, ``None``, tuples and lists of a type
    included)? An int fits a float setting (as a float), a bool only a bool one."""
    if hint is Any:
        return True, value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        for member in args:
            fits, typed = _typed(value, member)
            if fits:
                return True, typed
        return False, value
    if hint is type(None):
        return value is None, value
    if origin in (tuple, list):
        if not isinstance(value, (tuple, list)):
            return False, value
        element = args[0] if args else Any
        items = [_typed(v, element) for v in value]
        return all(fits for fits, _ in items), origin(typed for _, typed in items)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return True, float(value)
    if hint in (int, float) and isinstance(value, bool):
        return False, value
    return isinstance(value, hint), value


def _setting_value(key: str, text: str, hint: Any) -> Any:
    """``text`` as a value of type ``hint``: a Python literal (``3``, ``1e-4``, ``None``, ``(0.1, 0.5)``, ``True``,
    ``"gpt2"``), or the text itself where a string fits (``gpt2``)."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    fits, typed = _typed(value, hint)
    if not fits and not isinstance(value, str):
        fits, typed = _typed(text, hint)  # e.g. a model name that parses as a number
    if not fits:
        raise ValueError(f"{SETTINGS_ENV}: '{key}={text}': expected {hint.__name__ if isinstance(hint, type) else hint}")
    return typed


def apply_settings(profile: Profile, text: str) -> Profile:
    """``profile`` with single settings changed: ``"sft.max_steps=20;ppo.total_updates=2;model.name=gpt2"`` (entries
    separated by ``;``, each ``section.field=value``; the value a Python literal, or plain text for a string setting;
    checked against the setting's type). An unknown section or field, a value of the wrong type or one the section's
    own checks refuse raises ``ValueError`` naming the entry (the section's entries, for its checks). A section's
    entries apply together, in any order (``ppo.batch_size=4;ppo.mini_batch_size=2`` from 64 and 8). Output folders
    and the seed have their own variables (``RLHF_OUTPUT_DIR``, ``RLHF_DATA_DIR``, ``RLHF_SEED``)."""
    sections = [f.name for f in fields(profile) if f.name not in ("name", "seed", "paths")]
    changes: dict[str, dict[str, Any]] = {}  # section -> {field: value}: one replace per section, in any order
    items: dict[str, list[str]] = {}
    for item in filter(None, (s.strip() for s in text.split(";"))):
        key, sep, value = (part.strip() for part in item.partition("="))
        section, dot, name = (part.strip() for part in key.partition("."))
        if section in ("paths", "seed", "name"):
            raise ValueError(f"{SETTINGS_ENV}: '{item}': set the output folders with RLHF_OUTPUT_DIR / RLHF_DATA_DIR, "
                             "the seed with RLHF_SEED and the profile with RLHF_PROFILE")
        if not (sep and dot and section in sections):
            raise ValueError(f"{SETTINGS_ENV}: '{item}' is not section.field=value (sections: {', '.join(sections)})")
        part = getattr(profile, section)
        hints = typing.get_type_hints(type(part))
        if name not in hints:
            raise ValueError(f"{SETTINGS_ENV}: '{key}': {type(part).__name__} has no field '{name}' "
                             f"(fields: {', '.join(f.name for f in fields(part))})")
        changes.setdefault(section, {})[name] = _setting_value(key, value, hints[name])
        items.setdefault(section, []).append(item)
    for section, values in changes.items():
        try:
            profile = replace(profile, **{section: replace(getattr(profile, section), **values)})
        except (TypeError, ValueError) as e:
            raise ValueError(f"{SETTINGS_ENV}: '{'; '.join(items[section])}': {e}") from None
    return profile


def get_profile(name: str | None = None, **overrides: Any) -> Profile:
    """Build a profile; ``$RLHF_SET`` changes single settings (:func:`apply_settings`), ``overrides`` then replace
    whole fields, e.g. ``get_profile('tiny', paths=...)``. A ``seed`` override, else ``$RLHF_SEED``, seeds every stage
    (:func:`with_seed`); by default every seed is 0."""
    profile = apply_settings(_FACTORIES[resolve_profile_name(name)](), os.environ.get(SETTINGS_ENV, ""))
    seed = overrides.pop("seed", None)
    profile = replace(profile, **overrides) if overrides else profile
    seed = resolve_seed() if seed is None else seed
    return with_seed(profile, seed) if seed is not None else profile


def profiles_table() -> list[dict[str, Any]]:
    """One row per profile with the settings that differ most between them (for notebook 00)."""
    rows = []
    for name in PROFILE_NAMES:
        p = _FACTORIES[name]()
        rows.append({
            "profile": name,
            "base model": p.model.name,
            "QLoRA base": p.qlora.base or p.model.name,
            "data": p.data.source,
            "SFT steps": p.sft.max_steps,
            "reward steps": p.reward.max_steps,
            "PPO updates": p.ppo.total_updates,
            "max new tokens": p.generation.max_new_tokens,
        })
    return rows


def _field_comments(cls: type) -> dict[str, str]:
    """The comment written beside each field in the source of ``cls`` and its bases (a comment continued on the
    next lines included): the settings' documentation, which ``--help`` prints. Read from the source because
    dataclasses keep no per-field docstring."""
    import inspect
    import re

    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__[:-1]):  # a subclass's comment replaces its base's
        previous, block = None, []  # the last field seen; comment lines since it
        for line in [*inspect.getsource(klass).splitlines(), ""]:
            field_line = re.match(r"^    (\w+): [^=#]+?(?:=.*?)?(?:  # (.*))?$", line)
            comment = re.match(r"^    # (.*)$", line)
            if comment:
                block.append(comment.group(1))
                continue
            if field_line and block and not field_line.group(2):
                docs[field_line.group(1)] = " ".join(block)  # a comment block above a field of its own
            else:
                if previous is not None and block:
                    docs[previous] = " ".join([docs.get(previous, ""), *block]).strip()
                if field_line and field_line.group(2):
                    docs[field_line.group(1)] = field_line.group(2)
            previous, block = (field_line.group(1) if field_line else None), []
    return docs


def describe_settings(profile: Profile) -> list[tuple[str, Any, Any, str]]:
    """Every setting ``$RLHF_SET`` and ``--set`` accept: ``(section.field, the profile's value, the dataclass
    default, its documentation)``, in the profile's order."""
    rows = []
    for section in fields(profile):
        if section.name in ("name", "seed", "paths"):
            continue
        part = getattr(profile, section.name)
        docs, default = _field_comments(type(part)), type(part)()
        for f in fields(part):
            rows.append((f"{section.name}.{f.name}", getattr(part, f.name), getattr(default, f.name),
                         docs.get(f.name, "")))
    return rows
