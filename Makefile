PY ?= python3

# The tiny-world demo: stage 0 -> 1 -> 2 -> eval, on CPU.
demo:
	$(PY) train.py --stage 0
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

.PHONY: demo ablations test
