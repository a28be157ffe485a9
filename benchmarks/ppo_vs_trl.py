"""Benchmark: the course's PPO (rlhf_helpers.ppo) against TRL 1.12.0's ``trl.experimental.ppo.PPOTrainer``.

Same policy, reward model, prompts, batch size, minibatch size, response length, PPO epochs, learning rate,
KL coefficient and missing-EOS penalty on both sides. Each side runs in its own fresh Python process (so peak
memory is comparable and the two TRL versions never meet): TRL's with ``PYTHONPATH=.bench/trl112``.

    # once: TRL 1.12.0 (the last release with PPO) into an isolated folder, never into the project's venv
    .venv/bin/pip download trl==1.12.0 --no-deps -d .bench/wheels
    .venv/bin/pip install --no-deps --target .bench/trl112 .bench/wheels/trl-1.12.0-py3-none-any.whl

    .venv/bin/python benchmarks/ppo_vs_trl.py                  # course checkpoints if present, else stand-ins
    .venv/bin/python benchmarks/ppo_vs_trl.py --source random  # tiny random stand-ins (no `make course` needed)

Reported per side: seconds per update (median and mean over updates 2..N; update 1 includes warm-up),
peak memory (max RSS of the process; CUDA peak allocated on a GPU), the training reward (``objective/scores``,
TRL's definition: reward-model score minus the missing-EOS penalty) at update 1 and at the end, and an
evaluation before/after training: 64 held-out prompts, two sampled responses each (same seed and generation
helper for both sides), scored by the same reward model -> mean reward and its gain. Results go to
``.bench/ppo_vs_trl/results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / ".bench"
TRL_PATH = BENCH / "trl112"
REPORT = Path(__file__).resolve().parent / "results.md"  # committed: the table of the last full run


# ------------------------------------------------------------------------------------------ shared pieces
def rss_mb() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_common(work: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from rlhf_helpers.core.loading import load_tokenizer

    tokenizer = load_tokenizer(work / "policy")
    policy = AutoModelForCausalLM.from_pretrained(work / "policy", dtype=torch.float32)
    rm = AutoModelForSequenceClassification.from_pretrained(work / "reward", dtype=torch.float32)
    rm.config.pad_token_id = tokenizer.pad_token_id
    rm.eval().requires_grad_(False)
    prompts = json.loads((work / "prompts.json").read_text())
    return tokenizer, policy, rm, prompts


class SeqClsReward:
    """Reward source over a sequence-classification reward model: scores ``format_example(prompt, response)``
    (the text the reward model was trained on, EOS included), raw logits, shape [B]."""

    name = "reward_model"

    def __init__(self, model, tokenizer) -> None:
        self.model, self.tokenizer = model, tokenizer

    def score(self, prompts, responses):
        import torch

        from rlhf_helpers.core.chat import format_example

        texts = [format_example(self.tokenizer, p, r) for p, r in zip(prompts, responses, strict=True)]
        side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "right"
        try:
            enc = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=True, add_special_tokens=False)
        finally:
            self.tokenizer.padding_side = side
        device = next(self.model.parameters()).device
        with torch.no_grad():
            return self.model(**{k: v.to(device) for k, v in enc.items()}).logits[:, 0].float().cpu()


def evaluate(policy, tokenizer, rm, prompts, args) -> dict:
    """Mean reward-model score (and EOS rate) of one sampled response per evaluation prompt."""
    from rlhf_helpers.core.config import GenerationConfig
    from rlhf_helpers.core.generation import generate_ids

    cfg = GenerationConfig(max_new_tokens=args.response_length, do_sample=True, temperature=args.temperature,
                           top_k=0, top_p=1.0, batch_size=64, seed=1234)
    batch = generate_ids(policy, tokenizer, list(prompts) * 2, cfg, progress=False)  # two samples per prompt
    scores = SeqClsReward(rm, tokenizer).score(batch.prompts, batch.responses)
    return {"reward": float(scores.mean()), "eos_rate": float(batch.eos_found.float().mean()),
            "example": batch.responses[0][:120]}


def memory_report(rss_before: float) -> dict:
    import torch

    out = {"peak_rss_mb": rss_mb(), "rss_before_training_mb": rss_before}
    if torch.cuda.is_available():
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def per_update_summary(times: list[float], cpu: list[float], scores: list[float], kls: list[float]) -> dict:
    steady, steady_cpu = times[1:] or times, cpu[1:] or cpu
    return {"sec_per_update_median": statistics.median(steady), "sec_per_update_mean": statistics.fmean(steady),
            "cpu_sec_per_update_median": statistics.median(steady_cpu), "update_cpu_times": cpu,
            "first_update_s": times[0], "train_score_first": scores[0], "train_score_last": scores[-1],
            "train_score_last3": statistics.fmean(scores[-3:]), "train_scores": scores, "update_times": times,
            "kl_last3": statistics.fmean(kls[-3:]), "kls": kls}


def start_side(args, work: Path) -> tuple:
    """Seed, load the shared models (on the GPU if any) and evaluate the policy before training, on the
    held-out prompts and on 64 training prompts: ``(tokenizer, policy, rm, prompts, before, before_train)``."""
    import torch

    torch.manual_seed(args.seed)
    tokenizer, policy, rm, prompts = load_common(work)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rm.to(device)
    before = evaluate(policy.to(device), tokenizer, rm, prompts["eval"], args)
    before_train = evaluate(policy, tokenizer, rm, prompts["train"][:64], args)
    return tokenizer, policy, rm, prompts, before, before_train


# ------------------------------------------------------------------------------------------- our side
def run_ours(args) -> dict:
    from rlhf_helpers import ppo
    from rlhf_helpers.core.config import PPOConfig

    work = Path(args.work)
    tokenizer, policy, rm, prompts, before, before_train = start_side(args, work)
    cfg = PPOConfig(total_updates=args.updates, batch_size=args.batch_size, mini_batch_size=args.mini_batch_size,
                    num_ppo_epochs=args.epochs, response_length=args.response_length, temperature=args.temperature,
                    learning_rate=args.lr, kl_coef=args.kl_coef, missing_eos_penalty=args.missing_eos_penalty,
                    seed=args.seed, sample_every=10**6, save_every=10**6)
    cpu: list[float] = []
    last = [0.0]

    class CPUTimer(ppo.Callback):
        def on_update(self, trainer, record):
            now = time.process_time()
            cpu.append(now - last[0])
            last[0] = now

    rss_before = rss_mb()
    t0 = time.perf_counter()
    last[0] = time.process_time()
    result = ppo.train_ppo(policy, None, tokenizer, SeqClsReward(rm, tokenizer), prompts["train"], cfg,
                           callbacks=[CPUTimer()], progress=False)  # nothing on disk
    total = time.perf_counter() - t0
    after = evaluate(result.policy, tokenizer, rm, prompts["eval"], args)
    after_train = evaluate(result.policy, tokenizer, rm, prompts["train"][:64], args)
    h = result.history
    return {"side": "ours (rlhf_helpers.ppo)", "total_train_s": total, "eval_before": before, "eval_after": after,
            "train_eval_before": before_train, "train_eval_after": after_train,
            **per_update_summary([r["time/update_s"] for r in h], cpu, [r["objective/scores"] for r in h],
                                 [r["objective/kl"] for r in h]),
            **memory_report(rss_before)}


# ------------------------------------------------------------------------------------------- TRL side
def run_trl(args) -> dict:
    import torch
    import trl
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, TrainerCallback

    if trl.__version__ != "1.12.0":
        raise RuntimeError(f"expected TRL 1.12.0 from {TRL_PATH}, got {trl.__version__} at {trl.__file__}")
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    from rlhf_helpers.core.chat import format_prompt
    from rlhf_helpers.core.loading import frozen_copy

    work = Path(args.work)
    tokenizer, policy, rm, prompts, before, before_train = start_side(args, work)
    # TRL's recipe: the value model starts as a copy of the reward model
    value_model = AutoModelForSequenceClassification.from_pretrained(work / "reward", dtype=torch.float32)
    value_model.config.pad_token_id = tokenizer.pad_token_id

    def tokenized(texts):
        return Dataset.from_dict({"input_ids": [tokenizer(format_prompt(tokenizer, p), add_special_tokens=False)
                                                ["input_ids"] for p in texts]})

    n_mini = args.batch_size // args.mini_batch_size
    config = PPOConfig(
        output_dir=str(BENCH / "ppo_vs_trl" / "trl_out"), report_to=[], save_strategy="no", logging_steps=1,
        per_device_train_batch_size=args.batch_size, gradient_accumulation_steps=1, num_mini_batches=n_mini,
        num_ppo_epochs=args.epochs, total_episodes=args.updates * args.batch_size, response_length=args.response_length,
        temperature=args.temperature, learning_rate=args.lr, lr_scheduler_type="constant", kl_coef=args.kl_coef,
        missing_eos_penalty=args.missing_eos_penalty, stop_token="eos", num_sample_generations=0,
        local_rollout_forward_batch_size=args.batch_size, adam_epsilon=1e-5, seed=args.seed,
        bf16=False, fp16=False, use_cpu=not torch.cuda.is_available(), gradient_checkpointing=False, disable_tqdm=True,
    )
    times: list[float] = []
    cpu: list[float] = []
    scores: list[float] = []
    kls: list[float] = []

    class Timer(TrainerCallback):
        def on_train_begin(self, *a, **k):
            self.t, self.c = time.perf_counter(), time.process_time()

        def on_log(self, _args, _state, _control, logs=None, **k):
            if logs and "objective/scores" in logs:
                now, now_cpu = time.perf_counter(), time.process_time()
                times.append(now - self.t)
                cpu.append(now_cpu - self.c)
                self.t, self.c = now, now_cpu
                scores.append(logs["objective/scores"])
                kls.append(logs["objective/kl"])

    trainer = PPOTrainer(args=config, processing_class=tokenizer, model=policy, ref_model=frozen_copy(policy),
                         reward_model=rm, train_dataset=tokenized(prompts["train"]), value_model=value_model,
                         eval_dataset=tokenized(prompts["eval"][:8]), callbacks=[Timer()])
    rss_before = rss_mb()
    t0 = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - t0
    after = evaluate(trainer.model.policy, tokenizer, rm, prompts["eval"], args)
    after_train = evaluate(trainer.model.policy, tokenizer, rm, prompts["train"][:64], args)
    return {"side": f"TRL {trl.__version__} PPOTrainer", "total_train_s": total, "eval_before": before,
            "eval_after": after, "train_eval_before": before_train, "train_eval_after": after_train, **per_update_summary(times, cpu, scores, kls), **memory_report(rss_before)}


# ------------------------------------------------------------------------------------------- setup
def setup(args) -> Path:
    """Write policy/, reward/ and prompts.json to the work directory (course checkpoints or stand-ins)."""
    import torch
    from transformers import GPT2Config, GPT2ForSequenceClassification

    from rlhf_helpers.core import base_model, loading
    from rlhf_helpers.core.artifacts import Paths
    from rlhf_helpers.core.config import get_profile

    paths = Paths()
    course = (paths.checkpoint("sft_full") / "config.json").exists() and (paths.checkpoint("reward") / "config.json").exists()
    source = args.source if args.source != "auto" else ("course" if course else "random")
    work = BENCH / "ppo_vs_trl" / source
    work.mkdir(parents=True, exist_ok=True)
    prefs = [json.loads(line) for line in (paths.data_dir / "preferences.jsonl").read_text().splitlines() if line]
    heldout = [json.loads(line) for line in (paths.data_dir / "heldout.jsonl").read_text().splitlines() if line]
    train_prompts = list(dict.fromkeys(r["prompt"] for r in prefs))
    (work / "prompts.json").write_text(json.dumps({"train": train_prompts, "eval": [r["prompt"] for r in heldout][:64]}))
    if source == "course":
        if not course:
            raise SystemExit("No course checkpoints (outputs/checkpoints/sft_full and reward): run `make course` "
                             "first, or pass --source random.")
        for name, stage in (("policy", "sft_full"), ("reward", "reward")):
            link = work / name
            if link.is_symlink():
                link.unlink()
            link.symlink_to(paths.checkpoint(stage))
    elif source == "base" and not (work / "reward" / "config.json").exists():
        from transformers import AutoModelForSequenceClassification

        base = paths.checkpoint("base")
        if not (base / "config.json").exists():
            raise SystemExit(f"No tiny base at {base}: build it with rlhf_helpers.core.base_model.build_tiny_base "
                             "(notebook 01), or pass --source random.")
        tokenizer = loading.load_tokenizer(base)
        loading.load_causal_lm(base, "float32", device="cpu").save_pretrained(work / "policy")
        tokenizer.save_pretrained(work / "policy")
        torch.manual_seed(1)
        rm = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, dtype=torch.float32)
        torch.nn.init.normal_(rm.score.weight, std=rm.config.n_embd**-0.5)  # a random reward direction
        rm.config.pad_token_id = tokenizer.pad_token_id
        rm.save_pretrained(work / "reward")
        tokenizer.save_pretrained(work / "reward")
    elif source == "random" and not (work / "reward" / "config.json").exists():
        profile = get_profile("tiny")
        tokenizer = base_model.train_tokenizer(base_model.course_texts(paths.data_dir), profile.model.vocab_size,
                                               profile.model.n_positions)
        policy = base_model.build_tiny_model(profile.model, tokenizer, seed=0)
        policy.save_pretrained(work / "policy")
        tokenizer.save_pretrained(work / "policy")
        m = profile.model
        rm_config = GPT2Config(vocab_size=len(tokenizer), n_positions=m.n_positions, n_embd=m.n_embd,
                               n_layer=m.n_layer, n_head=m.n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                               num_labels=1, pad_token_id=tokenizer.pad_token_id,
                               eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)
        torch.manual_seed(1)
        rm = GPT2ForSequenceClassification(rm_config)
        torch.nn.init.normal_(rm.score.weight, std=m.n_embd**-0.5)  # a random reward of scale ~1
        rm.save_pretrained(work / "reward")
        tokenizer.save_pretrained(work / "reward")
    return work


def side_process(side: str, seed: int, args, work: Path) -> dict:
    out = work / f"result_{side}_{seed}.json"
    out.unlink(missing_ok=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", TOKENIZERS_PARALLELISM="false",
               TRL_EXPERIMENTAL_SILENCE="1")
    env["PYTHONPATH"] = os.pathsep.join(([str(TRL_PATH)] if side == "trl" else []) + [str(REPO)])
    cmd = [sys.executable, __file__, "--side", side, "--work", str(work), "--json", str(out), "--seed", str(seed)]
    for k in ("updates", "batch_size", "mini_batch_size", "epochs", "response_length", "lr", "kl_coef",
              "missing_eos_penalty", "temperature", "threads"):
        cmd += [f"--{k.replace('_', '-')}", str(getattr(args, k))]
    print(f"running {side}, seed {seed} ...", flush=True)
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL if not args.verbose else None,
                   stderr=subprocess.DEVNULL if not args.verbose else None)
    return json.loads(out.read_text())


def aggregate(runs: list[dict]) -> dict:
    """Pool the per-update times of all seeds; mean and standard deviation of the per-seed rewards."""
    times = [t for r in runs for t in (r["update_times"][1:] or r["update_times"])]
    cpu = [t for r in runs for t in (r["update_cpu_times"][1:] or r["update_cpu_times"])]

    def stat(values: list[float]) -> tuple[float, float]:
        return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)

    return {
        "sec_per_update_median": statistics.median(times), "sec_per_update_mean": statistics.fmean(times),
        "cpu_sec_per_update_median": statistics.median(cpu),
        "first_update_s": statistics.fmean(r["first_update_s"] for r in runs),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        **({"cuda_peak_mb": max(r["cuda_peak_mb"] for r in runs)} if "cuda_peak_mb" in runs[0] else {}),
        "kl_last3": stat([r["kl_last3"] for r in runs]),
        "train_score_first": stat([r["train_score_first"] for r in runs]),
        "train_score_last3": stat([r["train_score_last3"] for r in runs]),
        "train_gain": stat([r["train_score_last3"] - r["train_score_first"] for r in runs]),
        "eval_before": stat([r["eval_before"]["reward"] for r in runs]),
        "eval_after": stat([r["eval_after"]["reward"] for r in runs]),
        "eval_gain": stat([r["eval_after"]["reward"] - r["eval_before"]["reward"] for r in runs]),
        "train_eval_gain": stat([r["train_eval_after"]["reward"] - r["train_eval_before"]["reward"] for r in runs]),
        "eos_after": stat([r["eval_after"]["eos_rate"] for r in runs]),
        "threads": runs[0].get("threads"), "seeds": len(runs),
    }


def table(ours: dict, trl: dict) -> str:
    """Markdown table of the two aggregated sides."""
    def cell(v, fmt):
        return f"{fmt.format(v[0])} ± {fmt.format(v[1])}" if isinstance(v, (tuple, list)) else fmt.format(v)

    rows = [
        ("sec / update, median (updates 2..N, all seeds)", "sec_per_update_median", "{:.3f}", True),
        ("sec / update, mean", "sec_per_update_mean", "{:.3f}", True),
        ("CPU sec / update, median", "cpu_sec_per_update_median", "{:.3f}", True),
        ("first update (warm-up), s", "first_update_s", "{:.2f}", True),
        ("peak RSS, MiB", "peak_rss_mb", "{:.0f}", True),
        ("CUDA peak, MiB", "cuda_peak_mb", "{:.0f}", True),
        ("held-out reward before", "eval_before", "{:+.3f}", False),
        ("held-out reward after N updates", "eval_after", "{:+.3f}", False),
        ("**held-out reward gain**", "eval_gain", "{:+.3f}", False),
        ("**reward gain on 64 training prompts** (same scorer)", "train_eval_gain", "{:+.3f}", False),
        ("train score gain, last 3 - update 1 (own definition)", "train_gain", "{:+.3f}", False),
        ("KL(pi || pi_ref), mean of the last 3 updates, nats", "kl_last3", "{:.2f}", False),
        ("eval EOS rate after", "eos_after", "{:.2f}", False),
    ]
    lines = [f"| metric ({ours['seeds']} seeds, {ours['threads']} torch thread(s)) | ours | TRL 1.12.0 | ours / TRL |",
             "|---|---:|---:|---:|"]
    for label, key, fmt, ratio in rows:
        if key not in ours:
            continue
        a, b = ours[key], trl[key]
        r = f"{a / b:.2f}" if ratio and b else ""
        lines.append(f"| {label} | {cell(a, fmt)} | {cell(b, fmt)} | {r} |")
    return "\n".join(lines)


def write_report(path: Path, args, work: Path, ours: dict, trl: dict) -> None:
    """``benchmarks/results.md``: the settings, the machine and the table (atomically)."""
    import platform

    settings = ", ".join(f"{k}={getattr(args, k)}" for k in ("source", "updates", "batch_size", "mini_batch_size",
                                                             "epochs", "response_length", "lr", "kl_coef", "seeds"))
    text = (f"# PPO benchmark: rlhf_helpers.ppo vs TRL 1.12.0 (generated by benchmarks/ppo_vs_trl.py)\n\n"
            f"- run: {time.strftime('%Y-%m-%d %H:%M')}, {platform.machine()}, {os.cpu_count()} CPU cores, "
            f"models from `{work.name}`\n- settings: {settings}\n\n{table(ours, trl)}\n")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", choices=["auto", "course", "base", "random"], default="auto",
                   help="course checkpoints (sft_full + reward); base = the pretrained tiny base as policy and, "
                        "with a random score head, as reward model; random = untrained stand-ins; "
                        "auto = course if present, else random")
    p.add_argument("--updates", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--mini-batch-size", type=int, default=8)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--response-length", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--kl-coef", type=float, default=0.05)
    p.add_argument("--missing-eos-penalty", type=float, default=1.0)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seeds", default="0,1,2", help="one run per seed and side; rewards are averaged")
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--verbose", action="store_true", help="show the sides' own output")
    p.add_argument("--threads", type=int, default=0, help="torch threads per side (0 = torch's default)")
    p.add_argument("--sides", default="ours,trl", help="which sides to run, comma-separated")
    p.add_argument("--side", help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    p.add_argument("--json", help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.side:  # inside a side's subprocess
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        result = (run_ours if args.side == "ours" else run_trl)(args)
        result["threads"] = torch.get_num_threads()
        Path(args.json).write_text(json.dumps(result, indent=1))
        return

    if "trl" in args.sides and not (TRL_PATH / "trl" / "experimental" / "ppo").exists():
        raise SystemExit(f"TRL 1.12.0 is not in {TRL_PATH}; install it as shown in benchmarks/README.md.")
    work = setup(args)
    print(f"work dir: {work}")
    seeds = [int(x) for x in args.seeds.split(",")]
    runs = {side: [side_process(side, seed, args, work) for seed in seeds] for side in args.sides.split(",")}
    summary = {side: aggregate(r) for side, r in runs.items()}
    out = BENCH / "ppo_vs_trl" / "results.json"
    out.write_text(json.dumps({"args": vars(args), "work": str(work), "summary": summary, "runs": runs}, indent=1))
    if "ours" in summary and "trl" in summary:
        print("\n" + table(summary["ours"], summary["trl"]))
        write_report(REPORT, args, work, summary["ours"], summary["trl"])
        print(f"\ntable written to {REPORT}")
    print(f"\nfull results: {out}")


if __name__ == "__main__":
    main()
