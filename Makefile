PY ?= python3

# The tiny-world demo on CPU: stage 1 -> 2 -> eval, from the shipped base model tiny/base.
demo:
	$(PY) train.py --stage 1
	$(PY) train.py --stage 2 --init out/stage1
	$(PY) eval.py

# The paper's ablation rows, then the whole table again.
ablations:
	$(PY) train.py --stage 2
	$(PY) train.py --stage 2 --data qa
	$(PY) train.py --stage 2 --data qa --init out/stage1
	$(PY) eval.py

test:
	$(PY) -m pytest -q tests

# Rebuild the shipped base tiny/base from scratch (stage 0; about an hour on 2 cores, byte-identical).
base:
	$(PY) train.py --stage 0

.PHONY: demo ablations test base
