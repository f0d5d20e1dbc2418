"""train.py's presets: the values each setting gives a run, per stage, over the TrainConfig defaults (the
paper's). A bare `python train.py` uses `tiny`, a run with --model `paper`; --preset picks another, and every
flag given on the command line beats its preset. Each value's comment says which measurement chose it.
"""

# The paper's values are the dataclass defaults; stage 2 changes lr and epochs. `tiny` stage 0 is the shipped
# base's recipe, chosen among the variants in docs/tiny-world-log.md (tied embeddings, 4 layers of
# d 256, AdamW beta2 0.95: the first setting whose base copied the passage's years within the budget; then a
# second phase, tilted towards the eight-word values, that taught the base to copy them too; the other stage-0
# variants tried are in docs/tiny-world-log.md).
# Its stages 1-2 put a rank-16 LoRA on all seven linear layers and on lm_head. lm_head because the tiny base never
# wrote the method's words ("Sufficient", "CHECKING", the requirement sentences): its residual stream is large
# (RMS 100-3000 at answer positions) and the seven block linears alone could not turn it towards them;
# overfitting 8 stage-1 samples for 40 steps ended at 1.0 nats/token without lm_head (lr 3e-3 or 1e-2, alpha
# 16 to 512) and at 0.001 with it (full fine-tuning: 0.001). Measured on the v12 base (docs/tiny-world-log.md): stage 1 at lr
# 3e-3 judged 69.9% of the test Cognition prompts right after 3 epochs (val 0.174) and 96.2% after 6 (val
# 0.026); lr 1e-2, 3 epochs: 63.7%. Stage 2 (docs/tiny-world-log.md) for 3 epochs ended at val 2.74 (lr 3e-3),
# 1.63 (alpha 64), 1.38 (lr 1e-2), 1.68 (lr 2e-2); for 6 epochs at 1.18 (lr 3e-3) and 0.71 (lr 1e-2). micro is
# for CI only.
ALL_LINEAR = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
TINY_TARGETS = ALL_LINEAR + ",lm_head"
PRESETS = {
    "paper": {1: {}, 2: dict(lr=5e-5, epochs=5)},
    "tiny": {0: dict(lr=2e-3, max_steps=4000, polish_steps=2000, polish_lr=5e-4, micro_batch=16, grad_accum=1,
                     warmup_ratio=0.03, val_share=0.01, hidden_size=256, num_layers=4, num_heads=8,
                     tie_embeddings=True, save_every=100, adam_beta2=0.95),
             1: dict(lr=3e-3, epochs=6, lora_r=16, lora_targets=TINY_TARGETS),
             2: dict(lr=1e-2, epochs=6, lora_r=16, lora_targets=TINY_TARGETS)},
    # `make smol`: SmolLM2-135M-Instruct (tools/get_smollm2.py) on the tiny world's files, one value per line,
    # each with the measurement that chose it (runs in docs/tiny-world-log.md, "SmolLM2-135M-Instruct runs"):
    # - max_records 600, val_share 0.05, grad_accum 2 (global batch 8): 216 stage-1 steps in 19 min on 2 cores.
    # - lr 1e-3, r 16, alpha 32, all seven linears: at lr 2e-4, r 8 on q,v stage 1 ended at chance (val 0.239).
    # - epochs 3: val 0.265 after epoch 1, 0.0002 after epoch 2; stage-1 accuracy 100.0 on the 364 test rows.
    # - dtype float32: the same run under bf16 autocast stayed at chance (val 0.233 after 3 epochs), though its
    #   first gradient matches fp32's (cosine 1.000); on a 2-core CPU fp32 steps took as long (5.3 s vs 5.4 s).
    # - stage 2: n_items 300 (the paper's), epochs 2, lr 5e-4: 120 items x 2 epochs at lr 1e-3 learned the
    #   CHECKING form but applied no instruction (pass 10.0 on 30 items) and undid stage 1.
    "smol": {1: dict(lr=1e-3, epochs=3, max_records=600, val_share=0.05, grad_accum=2, lora_r=16, lora_alpha=32,
                     lora_targets=ALL_LINEAR, dtype="float32"),
             2: dict(lr=5e-4, epochs=2, n_items=300, grad_accum=2, lora_r=16, lora_alpha=32,
                     lora_targets=ALL_LINEAR, dtype="float32")},
    "micro": {0: dict(lr=1e-2, max_steps=60, micro_batch=8, grad_accum=1, vocab_size=1500, hidden_size=32,
                      num_layers=2, num_heads=2, val_share=0.1),
              1: dict(lr=1e-3, epochs=1, max_steps=4, micro_batch=2, grad_accum=2),
              2: dict(lr=1e-3, epochs=1, max_steps=4, micro_batch=2, grad_accum=2, n_items=12, cutoff_len=2048)},
}
