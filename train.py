"""Train one stage of US-Tuning (or the tiny world's base model) in one plain loop.

    python train.py --stage 1                          # Cognition Assessment LoRA on the shipped tiny/base -> out/stage1
    python train.py --stage 0                          # rebuild tiny/base: tokenizer + small Llama from scratch
    python train.py --stage 2 --init out/stage1        # stage 1 frozen, new LoRA on causal instructions -> out/stage2
    python train.py --stage 2                          # ablation "stage 2 only" -> out/stage2_only
    python train.py --stage 2 --data qa [--init out/stage1]   # ablations "QA only" / "stage 1 -> QA"
    python train.py --stage 1 --data refusal           # baseline "refusal SFT" (stage 1's budget) -> out/refusal_sft
    python train.py --stage 1 --model Llama-2-7b-chat-hf --asqa ASQA.json   # the paper's run (bf16, CUDA)
    torchrun --nproc_per_node 2 train.py --stage 1 ...  # data parallel; same global batch as one process

Without --model everything runs on the tiny world (data/tiny, generated if missing) with the `tiny`
preset; with --model the `paper` preset holds the authors' LLaMA-Factory values (docs/method.md section 5).
"""
import dataclasses
import json
import math
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist
from tqdm import tqdm

import data
import distributed
import lora
import plan
import runs
from presets import PRESETS
import stage0
import tinyworld
from cli import check_limits, config_parser, interrupted
from files import OutError, WriteError, append_text, base_identity, read_json, write_text
from device import resolve_device
from model import CheckpointError, Llama, ModelArgs


@dataclass
class TrainConfig:
    # what to train: the stage, the base, the data, where it goes
    stage: int = 1  # 1: uncertainty recognition (cognition), 2: causal instructions, 0: the tiny base
    model: str = ""  # base checkpoint (HF layout); default tiny/base, the tiny world's shipped base
    init: str = ""  # stage 2: a trained directory whose adapter (and those under it) the new LoRA is stacked on
    merge_stage1: bool = False  # merge --init's adapters into the weights as the authors did (bf16 rounds most away); default: frozen fp32 branches
    data: str = ""  # cognition | instructions | qa | refusal (stage 1's baseline "refusal SFT": the benchmark's train rows in the eval prompt, known question -> its first gold answer, unknown -> 'Not Provided'); default by stage (1: cognition, 2: instructions)
    asqa: str = ""  # ASQA.json (stage 1); default data/tiny/ASQA.json
    hotpot: str = ""  # hotpot_train_v1.1.json (stage 2, qa); default data/tiny/...
    stage2_targets: str = ""  # JSONL {"_id", "output"}: teacher outputs instead of generated targets
    out: str = ""  # default out/<run name>
    preset: str = ""  # paper | tiny | smol | micro; default paper with --model, tiny without
    filter: str = "paper"  # benchmark rows: paper (the authors' filter) | strict (also no unknown answer in the passage)
    max_records: int = 1000  # stage 1: the paper's first 1000 records
    n_items: int = 300  # stage 2 / qa: the first 300 HotpotQA items
    revision_share: float = 0.25  # stage 2: share of targets that revise a first answer
    val_share: float = 0.1  # share of the samples held out for the validation loss
    # the optimisation
    lr: float = 4e-5  # peak learning rate of the cosine schedule
    epochs: int = 1  # passes over the training samples
    max_steps: int = 0  # 0 = epochs decide
    micro_batch: int = 4  # samples per forward/backward
    grad_accum: int = 4  # micro-batches per optimizer step (global batch = micro_batch * grad_accum)
    warmup_ratio: float = 0.1  # share of the steps with a linear warm-up
    weight_decay: float = 0.0  # AdamW weight decay
    adam_beta2: float = 0.999  # AdamW's second-moment decay (transformers' default; tiny stage 0: 0.95)
    grad_clip: float = 1.0  # max global gradient norm
    cutoff_len: int = 1024  # max tokens per sample: the context is cut, never the answer
    truncation: str = "evidence"  # too long a context: evidence (drop distractor paragraphs first) | paper (cut the end, as the authors)
    # the LoRA
    lora_r: int = 8  # LoRA rank
    lora_alpha: int = 16  # LoRA scale alpha (the update is alpha/r * B @ A)
    lora_dropout: float = 0.0  # dropout on the LoRA input
    lora_targets: str = "q_proj,v_proj"  # comma-separated linear names that get a LoRA
    # device, precision, memory
    device: str = "auto"  # auto (CUDA if visible) | cpu | cuda | cuda:N
    dtype: str = "auto"  # auto | float32 | bfloat16; auto: bf16 autocast on CUDA and on CPUs with native bf16
    template: str = "auto"  # chat layout: auto (from the model's own chat template) | llama2 | chatml | llama3
    grad_checkpointing: str = "auto"  # recompute activations in backward (less memory, slower); auto: if the plan needs it
    plan: bool = False  # print the memory plan and exit without reading weights (--model may be a config.json)
    memory_gb: float = 0.0  # GiB to plan for; 0 = the CUDA device's free memory (on CPU: the available RAM)
    compile: bool = False  # torch.compile each block (two graphs a run: training and validation)
    # the run: seed, checkpoints, resume
    seed: int = 0  # LoRA init, data order, validation split
    save_every: int = 50  # optimizer steps between resumable checkpoints (and at every epoch end)
    resume: bool = False  # continue from <out>/checkpoint (the same configuration only)
    overwrite: bool = False  # replace a finished run in <out> (refused otherwise)
    stop_after: int = 0  # stop (as if killed) after this many steps; for testing --resume
    # stage 0 only: rebuilding the tiny world's base from scratch
    base_corpus: str = ""  # the base's corpus; default data/tiny/base_corpus.jsonl
    whole_words: str = ""  # words the tokenizer keeps as one piece each; default data/tiny/world_words.txt
    vocab_size: int = 2048  # the tokenizer's vocabulary
    hidden_size: int = 128  # the model's width (MLP: 3x)
    num_layers: int = 4  # transformer blocks
    num_heads: int = 4  # attention heads
    tie_embeddings: bool = False  # one matrix for embed_tokens and lm_head (SmolLM2 does; Llama-2 does not)
    polish_steps: int = 0  # after the first phase, this many steps on the corpus's "phase": 2 records (fresh AdamW)
    polish_lr: float = 5e-4  # peak learning rate of the second phase's cosine schedule


DATA_FILE = {"base": "base_corpus", "cognition": "asqa", "instructions": "hotpot", "qa": "hotpot",
             "refusal": "asqa"}  # the file each needs


class TrainError(RuntimeError):
    pass


LIMITS = {**dict.fromkeys(("micro_batch", "grad_accum", "lora_r", "cutoff_len", "save_every", "max_records", "n_items",
                            "vocab_size", "hidden_size", "num_layers", "num_heads"), ">= 1"),
          **dict.fromkeys(("epochs", "max_steps", "stop_after", "weight_decay", "memory_gb", "polish_steps"), ">= 0"),
          **dict.fromkeys(("lr", "lora_alpha", "grad_clip", "polish_lr"), "> 0"),
          **dict.fromkeys(("val_share", "lora_dropout", "adam_beta2"), "in [0, 1)"),
          **dict.fromkeys(("revision_share", "warmup_ratio"), "in [0, 1]"),
          "device": "auto, cpu or cuda[:N] (with a visible GPU)"}
CHOICES = {"stage": (0, 1, 2), "data": tuple(DATA_FILE), "preset": tuple(PRESETS), "filter": ("paper", "strict"),
           "truncation": data.TRUNCATIONS,
           "dtype": ("auto", "float32", "bfloat16"), "template": ("auto", *data.TEMPLATES),
           "grad_checkpointing": ("auto", "on", "off")}
# Flags that may differ on --resume: they change neither the data, the model nor the schedule.
RESUMABLE = ("resume", "overwrite", "stop_after", "save_every", "device", "compile", "grad_checkpointing", "plan",
             "memory_gb")


def preset_defaults():
    """--help's real default of each field a preset sets: the value per preset and stage (a bare run uses tiny,
    a run with --model paper), where the dataclass default is the paper's."""
    fields = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    keys = sorted({k for stages in PRESETS.values() for values in stages.values() for k in values})
    out = {}
    for k in keys:
        parts = []
        for preset, stages in PRESETS.items():
            vals = [f"stage {stage} {values[k]!r}" for stage, values in stages.items() if k in values]
            if preset == "paper":
                vals = [repr(fields[k])] + vals
            if vals:
                parts.append(f"{preset} " + ", ".join(vals))
        out[k] = "default by --preset: " + "; ".join(parts)
    return out


def parse_config(argv=None) -> TrainConfig:
    ap = config_parser(TrainConfig, __doc__, LIMITS, CHOICES, track_given=True, defaults=preset_defaults())
    given = {k: v for k, v in vars(ap.parse_args(argv)).items() if v is not None}
    cfg = TrainConfig(**{k: v for k, v in given.items() if k == "stage"})
    preset = given.get("preset") or ("paper" if given.get("model") else "tiny")
    cfg = dataclasses.replace(cfg, preset=preset, **PRESETS[preset].get(cfg.stage, {}))
    cfg = dataclasses.replace(cfg, **given)
    if not cfg.data:
        cfg.data = {0: "base", 1: "cognition", 2: "instructions"}[cfg.stage]
    tiny = not given.get("model")
    if not cfg.out and cfg.stage == 0 and tiny:  # only the tiny preset rebuilds the shipped base
        cfg.out = tinyworld.BASE if preset == "tiny" else os.path.join("out", "base")
    if not cfg.out:
        name = {"base": "base", "cognition": "stage1", "instructions": "stage2" if cfg.init else "stage2_only",
                "qa": "stage1_qa" if cfg.init else "qa_only", "refusal": "refusal_sft"}[cfg.data]
        cfg.out = os.path.join("out", name)
    if tiny and not cfg.model:
        cfg.model = tinyworld.BASE
    for field, file in (("asqa", "ASQA.json"), ("hotpot", "hotpot_train_v1.1.json"), ("base_corpus", "base_corpus.jsonl"),
                        ("whole_words", "world_words.txt")):
        if tiny and not getattr(cfg, field):
            setattr(cfg, field, os.path.join(tinyworld.DATA, file))
    check_limits(ap, cfg, {k: v for k, v in LIMITS.items() if not (cfg.plan and k == "device")})  # --plan: any GPU
    if (cfg.stage == 0) != (cfg.data == "base"):
        ap.error(f"--stage {cfg.stage} cannot train on --data {cfg.data}: stage 0 trains the base on --data base, "
                 "stages 1-2 an adapter on cognition, instructions, qa or refusal")
    if cfg.data == "refusal" and (cfg.stage != 1 or cfg.init):
        ap.error("--data refusal is the refusal-SFT baseline, trained as stage 1 is (same code and preset budget) "
                 "on the plain base: use --stage 1 without --init")
    if cfg.merge_stage1 and not cfg.init:
        ap.error("--merge-stage1 merges the adapters of --init; give --init DIR (e.g. out/stage1) or leave it out")
    if not cfg.epochs and not cfg.max_steps:
        ap.error("--epochs 0 and --max-steps 0 leave nothing to train; give one of them")
    if cfg.stage == 0 and cfg.hidden_size % cfg.num_heads:
        ap.error(f"--hidden-size {cfg.hidden_size} is not a multiple of --num-heads {cfg.num_heads}")
    needed = getattr(cfg, DATA_FILE[cfg.data])
    if needed.startswith(tinyworld.DATA) and not os.path.exists(needed):
        tinyworld.write(tinyworld.DATA)
    return cfg


def build_records(cfg):
    needed = DATA_FILE[cfg.data]
    if not getattr(cfg, needed):
        raise data.DataError(f"--{needed.replace('_', '-')} is required for --data {cfg.data} with --model")
    if cfg.data == "base":
        return stage0.base_records(cfg.base_corpus)
    if cfg.data == "cognition":
        return data.stage1_records(data.build_benchmark(cfg.asqa, cfg.filter), cfg.max_records)
    if cfg.data == "refusal":  # in the eval prompt eval.py gives a fine-tuned model: with the task prefix
        return data.refusal_records(data.build_benchmark(cfg.asqa, cfg.filter), cfg.max_records)
    if cfg.data == "qa":
        return data.qa_records(cfg.hotpot, cfg.n_items)
    return data.stage2_records(cfg.hotpot, cfg.n_items, seed=cfg.seed, revision_share=cfg.revision_share,
                               targets_file=cfg.stage2_targets or None)


def memory_plan(cfg, args, device, dtype, autocast, memory=None):
    """(plan.Settings of this run, bytes to plan for): --memory-gb, else what the device has free. A run measures
    `memory` before it loads any weight (the plan counts the weights itself) and passes it in."""
    s = plan.Settings(micro_batch=cfg.micro_batch, cutoff_len=cfg.cutoff_len, autocast=autocast, lora_r=cfg.lora_r,
                      weight_dtype=torch.float32 if cfg.stage == 0 else dtype, device=device.type,
                      lora_targets=() if cfg.stage == 0 else tuple(cfg.lora_targets.split(",")),
                      answer_tokens=plan.answer_tokens_bound(cfg.data, cfg.micro_batch, cfg.cutoff_len))
    return s, memory if memory is not None else memory_to_plan(cfg, device)


def memory_to_plan(cfg, device):
    """--memory-gb in bytes, else the device's free memory now (call it before loading the model)."""
    if cfg.memory_gb:
        return cfg.memory_gb * plan.GiB
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainError(f"--device {cfg.device}: no GPU visible to measure its free memory; give --memory-gb")
    return plan.available_memory(device)


def print_plan(cfg):
    """--plan: the memory plan of this run from config.json alone (no weights, tokenizer or data read)."""
    device, dtype, autocast, why = resolve_device(cfg.device, cfg.dtype)
    if cfg.stage == 0:
        args = stage0.base_args(cfg, cfg.vocab_size)
    else:
        file = cfg.model if os.path.isfile(cfg.model) else os.path.join(cfg.model, "config.json")
        if not os.path.isfile(file):
            raise CheckpointError(f"{file}: missing; --plan reads --model's config.json (or --model FILE.json)")
        args = ModelArgs.from_config(read_json(file, CheckpointError, "the model's config.json"), file)
    s, memory = memory_plan(cfg, args, device, dtype, autocast)
    _, line = plan.choose_checkpointing(args, s, memory, cfg.grad_checkpointing)
    print(f"memory plan for --stage {cfg.stage} --model {cfg.model} on {device} ({why}): micro-batch {cfg.micro_batch} x "
          f"{cfg.cutoff_len} tokens, " + (f"LoRA r {cfg.lora_r} on {cfg.lora_targets}" if cfg.stage else "all parameters")
          + f", <= {s.answer_tokens} answer tokens per micro-batch; "
          + (f"--memory-gb {cfg.memory_gb:g}" if cfg.memory_gb else f"{memory / plan.GiB:.1f} GiB free on {device}"))
    print(plan.estimate(args, s).table(memory))
    print(f"grad checkpointing: {line}")


def cosine_with_warmup(opt, warmup, total):
    """transformers' get_cosine_schedule_with_warmup (LLaMA-Factory's default), as a LambdaLR."""
    def factor(step):
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup))))
    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def batch_at(step, trn, per_step, seed=0):
    """(epoch, the global batch of optimizer step `step`): each epoch is a fresh seeded permutation of `trn`,
    so the batch is a pure function of the step and --resume continues exactly."""
    epoch, i = divmod(step, math.ceil(len(trn) / per_step))
    perm = torch.randperm(len(trn), generator=torch.Generator().manual_seed(seed + 1 + epoch)).tolist()
    return epoch, [trn[j] for j in perm[i * per_step:(i + 1) * per_step]]


def n_answer_tokens(sample):
    return sum(y != -100 for y in sample[1][1:])  # labels are shifted inside the model


def run_micro_batch(model, samples, pad_id, device, autocast, scale):
    ids, labels = (torch.from_numpy(a).to(device) for a in data.collate(samples, pad_id))
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        loss_sum = model.loss(ids, labels, reduction="sum")
    if scale:
        (loss_sum / scale).backward()
    return loss_sum.detach().float()


@dataclass
class Setup:
    """Where this process trains: its rank of `world`, and the device policy (device.resolve_device)."""
    rank: int
    world: int
    device: torch.device
    dtype: torch.dtype
    autocast: bool

    @property
    def main(self):
        return self.rank == 0


def setup(cfg) -> Setup:
    """Step 1: the process group (torchrun), the device and precision; refuse a --resume that changed flags."""
    rank, world = distributed.setup_distributed()
    device, dtype, autocast, why = resolve_device(cfg.device, cfg.dtype)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    if rank == 0:
        print(json.dumps(dataclasses.asdict(cfg), indent=1))
        print(f"precision: {why}" + ("; stage 0 keeps fp32 master weights" if cfg.stage == 0 else ""))
    if cfg.resume:
        runs.check_resume(cfg, RESUMABLE)
    return Setup(rank, world, device, torch.float32 if cfg.stage == 0 else dtype, autocast)


def build_model(cfg, s: Setup, records, memory):
    """Step 3: (model, tokenizer, chat template, base dir, earlier adapters). Stages 1-2: the base, the --init
    run's adapters under it (frozen fp32 branches, or merged with --merge-stage1), then a new trainable LoRA.
    Stage 0: a new small Llama on a tokenizer trained on the corpus (stage0.py). Then gradient checkpointing
    as the memory plan (plan.py) picks it for `memory` bytes."""
    base_dir, merged = cfg.model, []
    if cfg.stage == 0:
        # the first phase's text only: the second phase's (--polish-steps) holds no word the first lacks
        tok = stage0.train_tokenizer(cfg, [r for r in records if r["phase"] == 1], cfg.out) if s.main else None
        if s.world > 1:
            dist.barrier()
            tok = data.Tokenizer(os.path.join(cfg.out, "tokenizer.model"))
        model = stage0.new_base_model(cfg, tok).to(s.device)
        template = data.TEMPLATES["llama2"]  # the tiny world's base speaks llama2
    else:
        if not os.path.isdir(base_dir) and base_dir == tinyworld.BASE:
            raise TrainError(f"{base_dir}: missing; it ships with the repository (git checkout {base_dir}); "
                             "`python train.py --stage 0` rebuilds it")
        load_base = lambda p: Llama.from_pretrained(p, device=s.device, dtype=s.dtype)
        if cfg.init:  # the init run's adapters (stage 1) under the new LoRA: frozen fp32 branches or merged
            lin = runs.require_base(cfg.init, cfg.model, "--init")
            if lin["merged"] and lin["merge"] != cfg.merge_stage1:  # one stack, one way: as the init run trained
                raise TrainError(f"{cfg.init}: trained on its earlier adapters "
                                 + ("merged into the weights; pass --merge-stage1" if lin["merge"] else
                                    "as frozen fp32 branches; drop --merge-stage1"))
            base_dir, merged = lin["base"], lin["merged"] + [cfg.init]
            model = lora.stack_adapters(load_base(base_dir), merged, merge=cfg.merge_stage1)
            if s.main:
                how = f"merged into the {s.dtype} weights (--merge-stage1)" if cfg.merge_stage1 else "frozen fp32 branches"
                print(f"{', '.join(merged)}: {how}")
        else:
            model = load_base(base_dir)
        tok, template = data.Tokenizer(base_dir), data.chat_template(base_dir, cfg.template)
        tok.check_vocab(model.args.vocab_size)
        torch.manual_seed(cfg.seed)
        lora.apply_lora(model, cfg.lora_targets.split(","), cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout)
    model.gradient_checkpointing, line = plan.choose_checkpointing(
        model.args, *memory_plan(cfg, model.args, s.device, s.dtype, s.autocast, memory), cfg.grad_checkpointing)
    if s.main:
        print(f"grad checkpointing: {line}")
    if cfg.compile:
        model.compile_blocks()  # two graphs a run: with grad (training) and without (validation)
    return model, tok, template, base_dir, merged


def build_samples(cfg, s: Setup, records, tok, template, model):
    """Step 4: tokenise (cutting passages, never answers, to --cutoff-len), hold out --val-share, and lay out
    the phases: (name, training samples, steps, peak lr, seed offset of the data order). Stages 1-2 have one;
    stage 0 a second, polish phase (stage0.polish_phase). Returns (validation samples, phases)."""
    polish = stage0.polish_phase(cfg, records, tok, template) if cfg.stage == 0 else None
    records = [r for r in records if r.get("phase", 1) == 1]
    samples, dropped = data.tokenize_records(tok, records, cfg.cutoff_len, template, cfg.truncation)
    if not samples:
        raise data.DataError(f"every one of {len(records)} records is longer than --cutoff-len {cfg.cutoff_len}")
    order = torch.randperm(len(samples), generator=torch.Generator().manual_seed(cfg.seed)).tolist()
    n_val = math.ceil(cfg.val_share * len(samples)) if cfg.val_share > 0 else 0
    val, trn = [samples[i] for i in order[:n_val]], [samples[i] for i in order[n_val:]]
    per_step = cfg.micro_batch * cfg.grad_accum
    phases = [("main", trn, cfg.max_steps or math.ceil(len(trn) / per_step) * cfg.epochs, cfg.lr, 0)]
    phases += [polish] * bool(polish)
    if s.main:
        total = sum(p[2] for p in phases)
        print(f"{len(records)} records ({template.name} chat template) -> {len(trn)} train / {len(val)} val samples, "
              f"{dropped} dropped (longer than {cfg.cutoff_len} tokens even with the context cut); {total} steps of "
              f"{per_step}"
              + (" (" + ", then ".join(f"{name} {n} on {len(trn_)} samples at lr {lr}" for name, trn_, n, lr, _ in phases)
                 + ")" if len(phases) > 1 else "") + "; "
              f"{lora.num_trainable(model):,} trainable of {model.num_params():,} parameters on {s.device}")
        report = data.truncation_report(tok, records, cfg.cutoff_len, template, name=cfg.data)
        if report:  # both rules, whichever this run uses (--truncation)
            print(report)
    return val, phases


def train_loop(cfg, s: Setup, model, pad_id, val, phases, identity):
    """Step 5: AdamW with a warm-up and cosine decay per phase, gradient accumulation over micro-batches, a
    validation loss at the end of each epoch, metrics.jsonl, and a checkpoint every --save-every steps and at
    each epoch's end (runs.save_checkpoint); --resume continues from it exactly. False when stopped early
    (--stop-after)."""
    params = {k: p for k, p in model.named_parameters() if p.requires_grad}
    per_step = cfg.micro_batch * cfg.grad_accum
    bounds = [sum(p[2] for p in phases[:i + 1]) for i in range(len(phases))]  # the last step of each phase
    total = bounds[-1]

    def optimizer(phase):  # each phase: a fresh AdamW and its own warm-up and cosine decay
        _, _, steps, lr, _ = phases[phase]
        opt = torch.optim.AdamW(params.values(), lr=lr, betas=(0.9, cfg.adam_beta2), weight_decay=cfg.weight_decay,
                                fused=s.device.type == "cuda")
        return opt, cosine_with_warmup(opt, math.ceil(cfg.warmup_ratio * steps), steps)

    os.makedirs(cfg.out, exist_ok=True)
    if s.main and not cfg.resume:  # a new run: an earlier run's checkpoint must never be resumed into it
        for name in runs.CHECKPOINT_DIRS:
            shutil.rmtree(os.path.join(cfg.out, name), ignore_errors=True)
    if cfg.resume:
        runs.recover_checkpoint(cfg.out)
    at = (runs.checkpoint_step(cfg.out) or 0) if cfg.resume else 0
    phase = sum(at >= b for b in bounds[:-1])  # a checkpoint at a phase's last step resumes into the next
    opt, sched = optimizer(phase)
    # at a phase boundary the checkpoint's optimizer is the finished phase's: the next one starts fresh
    step = runs.load_checkpoint(cfg.out, params, *((opt, sched) if at not in bounds[:-1] else (None, None))) \
        if cfg.resume else 0
    metrics = os.path.join(cfg.out, "metrics.jsonl")
    if s.main:
        write_text(os.path.join(cfg.out, "train_config.json"), json.dumps(
            {**dataclasses.asdict(cfg), **({"base_identity": identity} if identity else {})}, indent=1))
        if not cfg.resume:
            write_text(metrics, "")
        else:  # the steps after the checkpoint run again: their rows (an interruption's) must not appear twice
            write_text(metrics, "".join(r for r in runs.read_rows(metrics) if json.loads(r)["step"] <= step))

    def log(**row):
        if s.main:
            append_text(metrics, json.dumps(row) + "\n")

    def validate():
        loss = torch.zeros(2, device=s.device)  # summed loss, answer tokens
        model.eval()
        with torch.no_grad():
            for chunk in distributed.rank_share(val, s.rank, s.world, cfg.micro_batch):
                loss[0] += run_micro_batch(model, chunk, pad_id, s.device, s.autocast, 0)
                loss[1] += sum(n_answer_tokens(x) for x in chunk)
        model.train()
        if s.world > 1:
            dist.all_reduce(loss)
        return (loss[0] / loss[1]).item() if loss[1] else float("nan")

    model.train()
    with tqdm(total=total, initial=step, desc=f"stage {cfg.stage} ({cfg.data})", disable=not s.main) as bar:
        t0, tokens_seen = time.time(), 0
        while step < total:
            if step == bounds[phase]:  # the next phase
                phase += 1
                opt, sched = optimizer(phase)
            _, trn, steps, _, offset = phases[phase]
            start = bounds[phase] - steps
            steps_per_epoch = math.ceil(len(trn) / per_step)
            epoch, batch = batch_at(step - start, trn, per_step, cfg.seed + offset)
            # Normalise by the answer tokens of the whole global batch: the sum of the micro-batch gradients is
            # then exactly the gradient of one big batch's mean loss, however the answers' lengths differ.
            n_tok = sum(n_answer_tokens(x) for x in batch)
            loss = torch.zeros((), device=s.device)
            for chunk in distributed.rank_share(batch, s.rank, s.world, cfg.micro_batch):
                loss += run_micro_batch(model, chunk, pad_id, s.device, s.autocast, n_tok)
            if s.world > 1:  # each rank holds the gradient of its share of the global batch: sum them
                loss = distributed.all_reduce_sum(list(params.values()), loss)
            loss = loss.item() / max(n_tok, 1)
            if not math.isfinite(loss):
                kept = runs.checkpoint_step(cfg.out)
                raise TrainError(f"loss is {loss} at step {step + 1}; stopped without saving; " + (
                    f"the last good checkpoint (step {kept}) is kept in {cfg.out}/checkpoint" if kept is not None
                    else "no checkpoint was saved before it") + "; try a lower --lr (a new run: --overwrite)")
            torch.nn.utils.clip_grad_norm_(params.values(), cfg.grad_clip)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            tokens_seen += n_tok
            rate = tokens_seen / (time.time() - t0)
            peak = torch.cuda.max_memory_allocated() / 2**20 if s.device.type == "cuda" else None
            lr = sched.get_last_lr()[0]
            log(step=step, epoch=epoch, loss=loss, lr=lr, answer_tokens_per_s=rate, peak_mem_mb=peak)
            bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.1e}", tok_s=f"{rate:.0f}")
            bar.update()
            end_of_epoch = (step - start) % steps_per_epoch == 0 or step in bounds
            if end_of_epoch and val:
                v = validate()
                log(step=step, epoch=epoch, val_loss=v)
                if s.main:
                    tqdm.write(f"step {step} epoch {epoch}: val loss {v:.4f}")
            if s.main and (step % cfg.save_every == 0 or end_of_epoch):
                runs.save_checkpoint(cfg.out, params, opt, sched, step)
            if cfg.stop_after and step >= cfg.stop_after and step < total:
                return False  # simulated interruption: the checkpoint is all that is left
    return True


def train(cfg: TrainConfig):
    """setup -> data -> model -> samples -> loop -> save; returns the trained model (None when stopped early)."""
    s = setup(cfg)
    records = build_records(cfg)
    memory = memory_to_plan(cfg, s.device)  # before any weight is on the device: the plan counts the weights
    model, tok, template, base_dir, merged = build_model(cfg, s, records, memory)
    val, phases = build_samples(cfg, s, records, tok, template, model)
    identity = base_identity(base_dir) if cfg.stage else None  # the base's files as this run loaded them
    if not train_loop(cfg, s, model, tok.pad_id, val, phases, identity):
        return None
    if s.main:
        save_result(cfg, model, base_dir, merged, identity)
        print(f"saved {cfg.out}")
    if s.world > 1:
        dist.barrier()
    return model


def save_result(cfg, model, base_dir, merged, identity):
    """The finished run's files, each whole or absent (files.write_file). The weights, which mark a run finished
    (claim_out), go last, and an earlier run's are removed first: a save cut short (a full disk) leaves an
    unfinished run, whose checkpoint of the last step --resume saves again."""
    weights = os.path.join(cfg.out, "model.safetensors" if cfg.stage == 0 else "adapter_model.safetensors")
    if os.path.exists(weights):
        os.remove(weights)
    if cfg.stage == 0:
        model.save_pretrained(cfg.out)
    else:
        runs.write_lineage(cfg.out, base_dir, merged, merge=cfg.merge_stage1, identity=identity)
        lora.save_adapter(model, cfg.out, base_model_name_or_path=os.path.abspath(base_dir))


def main(argv=None):
    cfg, lock = None, None
    sigterm = signal.signal(signal.SIGTERM, interrupted)
    try:
        cfg = parse_config(argv)
        if cfg.plan:
            return print_plan(cfg)
        if int(os.environ.get("RANK", "0")) == 0:
            lock = runs.claim_out(cfg, rebuild=cfg.stage == 0 and os.path.normpath(cfg.out) == tinyworld.BASE)
        train(cfg)
    except (CheckpointError, lora.AdapterError, runs.RunError, data.DataError, TrainError, OutError) as e:
        sys.exit(f"error: {e}")
    except WriteError as e:  # a full disk: what was written before is whole
        sys.exit(f"error: {e}; free disk space; {runs.go_on(cfg)}")
    except KeyboardInterrupt:
        sys.exit(f"error: interrupted; {runs.go_on(cfg)}")
    finally:
        signal.signal(signal.SIGTERM, sigterm)
        if lock and os.path.exists(lock):
            os.remove(lock)
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
