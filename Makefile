# Everything runs inside .venv in the repository root, created when missing.
#   make run     the degradation suite at the size this machine can do (GPU: the paper's schedule;
#                CPU: sized to BUDGET, default 30m: make run BUDGET=1h)
#   make test    the test suite (installs the project, its dev tools and, where the system
#                libraries are present, the FFCV extra)
#   make bench   the benchmarks (pytest-benchmark): loaders, training step, fleet, report
#   make gpu-check   every CUDA path on one GPU in minutes (python -m benchmark gpu-check)
#   make system-deps   Debian packages for FFCV and the browser test (needs root)

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
FFCV_STAMP := $(VENV)/.installed-ffcv
DEBIAN_PACKAGES := pkg-config libturbojpeg0-dev libopencv-dev chromium

.PHONY: install install-ffcv system-deps test bench run run-gpu run-cpu smoke gpu-check clean-venv

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel

# torch and torchvision first: their range in pyproject admits the known-good 2.14.1/0.29.1 pair.
$(STAMP): pyproject.toml | $(PY)
	$(PIP) install -q -e '.[dev]'
	@touch $@

install: $(STAMP)

# FFCV compiles against libturbojpeg and OpenCV (Debian: $(DEBIAN_PACKAGES)), after torch is in
# the venv; it imports pillow without declaring it (the extra lists it).
$(FFCV_STAMP): $(STAMP)
	$(PIP) install -q -e '.[ffcv]'
	@touch $@

install-ffcv: $(FFCV_STAMP)

system-deps:
	@if dpkg -s $(DEBIAN_PACKAGES) >/dev/null 2>&1; then echo "system-deps: already installed"; \
	else apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEBIAN_PACKAGES) >/dev/null; fi

# The FFCV extra is installed when its system libraries are there (CI installs them first).
# Two test processes (pytest-xdist): the end-to-end tests wait on Ray and on process starts about as
# much as they compute, so two overlap well on 2 cores; four fought over them and took longer
# (docs/testing.md). `--dist loadgroup` keeps each module's shared Ray cluster in one process.
TEST_PROCESSES ?= 2
test: $(STAMP)
	@if pkg-config --exists libturbojpeg opencv4 2>/dev/null; then $(MAKE) --no-print-directory install-ffcv; \
	else echo "test: FFCV's system libraries are missing (make system-deps); its tests will be skipped"; fi
	$(PY) -m pytest -q -n $(TEST_PROCESSES) --dist loadgroup

# Each benchmark file in a fresh process: FFCV (numba) and Ray leave process-wide state behind that
# slowed the training-step benchmarks run after them in the same process (seen: 459 vs 770 img/s).
bench: $(STAMP)
	@set -e; for file in tests/benchmarks/test_bench_*.py; do \
		$(PY) -m pytest $$file --benchmark-only --benchmark-columns=min,mean,rounds -q -s -p no:cacheprovider; done

# The main job: the paper's schedule where a GPU is present, the CPU-sized suite otherwise.
run: $(STAMP)
	@if $(PY) -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then \
		$(MAKE) --no-print-directory run-gpu; else $(MAKE) --no-print-directory run-cpu; fi

run-gpu: $(STAMP)
	$(PY) -m benchmark run suites/degradation.yaml

# Without CUDA the suite is sized by time: each model's step is measured here, then every trial gets
# the same number of iterations so that the suite ends within BUDGET (make run BUDGET=1h).
BUDGET ?= 30m
run-cpu: $(STAMP)
	$(PY) -m benchmark run suites/degradation_cpu.yaml --budget $(BUDGET)

smoke: $(STAMP)
	$(PY) -m benchmark run suites/degradation.yaml --smoke --set resources.gpu=0 --set resources.cpu=1 --set precision=fp32 --set compile=false

# No install step: a GPU machine may have no internet. It runs with this venv where there is one,
# else with $(PYTHON) as it is (torch only; Ray and pydantic from the device-wheels kit on
# PYTHONPATH, or the checks that need them are skipped with the reason: docs/hardware-and-gpu.md, GPU).
gpu-check:
	@if [ -x $(PY) ]; then $(PY) -m benchmark gpu-check; else $(PYTHON) -m benchmark gpu-check; fi

clean-venv:
	rm -rf $(VENV)
