# `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
CORE   := $(VENV)/.installed-core
DEV    := $(VENV)/.installed-dev

.PHONY: install browser containers image demo test test-fast lint bench bench-peers clean

# Where pip finds the CPU build of torch. Elsewhere: the PyTorch CPU index (without it pip takes
# the multi-GB CUDA build). On machines whose pip already finds the CPU wheel in a local folder
# ($$PIP_FIND_LINKS or pip's find-links setting, as on the machines this is developed on):
# nothing extra. Override at will:  make install TORCH_INDEX=https://download.pytorch.org/whl/cpu
LOCAL_WHEELS = $(or $(PIP_FIND_LINKS),$(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null))
TORCH_INDEX ?= $(if $(LOCAL_WHEELS),,https://download.pytorch.org/whl/cpu)

# Re-installs only when the project's dependency files change, so repeat runs are quick.
# The core install is what `make demo` needs; the dev install adds the test tools and the
# scale-out engines (Ray Serve, Redis, PostgreSQL drivers) that the tests exercise.
$(CORE): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@# torch first, pinned to the tested version's CPU build (see constraints.txt and TORCH_INDEX)
	$(PY) -m pip install -q -c constraints.txt $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e .
	@touch $(CORE)

$(DEV): $(CORE)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,scale]'
	@touch $(DEV)

install: $(DEV)

demo: $(CORE)
	$(VENV)/bin/shelfops demo

# The peer server bench/serve.py --peers compares with (infinity-emb), in a venv of its own.
PEER_VENV := bench/peers/infinity/.venv
bench-peers: $(PEER_VENV)/.installed
$(PEER_VENV)/.installed: bench/peers/infinity/requirements.txt constraints.txt
	@test -x $(PEER_VENV)/bin/python || $(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install -q -c constraints.txt $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) torch==2.13.0
	$(PEER_VENV)/bin/python -m pip install -q -c constraints.txt -r bench/peers/infinity/requirements.txt
	@touch $@

# The dashboard test drives Debian's chromium through Playwright (no browser download).
browser:
	@command -v chromium >/dev/null || { command -v apt-get >/dev/null && \
	  (apt-get install -y -q chromium >/dev/null || (apt-get update -q && apt-get install -y -q chromium)); } \
	  || echo "chromium not installed: the dashboard browser test will fail"

# The container tests build the image with podman on a base made from Debian packages
# (deploy/base-image.sh); these are the Debian packages they need.
containers:
	@command -v podman >/dev/null && command -v mmdebstrap >/dev/null && command -v runc >/dev/null || \
	  { command -v apt-get >/dev/null && (apt-get install -y -q podman runc mmdebstrap podman-compose >/dev/null || \
	    (apt-get update -q && apt-get install -y -q podman runc mmdebstrap podman-compose >/dev/null)); } \
	  || echo "podman not installed: the container tests will fail"

# The serving image. TORCH_WHEELS: a folder holding the CPU torch wheel (default: $$PIP_FIND_LINKS
# where set, as on the developer machines; the CPU index is then not asked); without one the build
# takes torch from the PyTorch CPU index.
# CA_BUNDLE: the certificates pip trusts during the build (default: $$PIP_CERT where set, e.g. a
# network whose TLS proxy has its own CA).
SHELFOPS_IMAGE ?= shelfops
BASE_IMAGE   ?= localhost/shelfops-base:bookworm
TORCH_WHEELS ?= $(PIP_FIND_LINKS)
CA_BUNDLE    ?= $(PIP_CERT)
image: containers
	@podman image exists $(BASE_IMAGE) || CONTAINERS_CONF=$(CURDIR)/deploy/containers.conf deploy/base-image.sh $(BASE_IMAGE)
	CONTAINERS_CONF=$(CURDIR)/deploy/containers.conf podman build --format docker --network host --build-arg BASE=$(BASE_IMAGE) \
	  $(if $(TORCH_WHEELS),--volume $(TORCH_WHEELS):/wheels:ro --build-arg PIP_FIND_LINKS=/wheels --build-arg PIP_EXTRA_INDEX_URL=) \
	  $(if $(CA_BUNDLE),--volume $(CA_BUNDLE):/run/ca.crt:ro --build-arg PIP_CERT=/run/ca.crt) -t $(SHELFOPS_IMAGE) .

# Everything, slow tests included (CI runs this).
test: install browser containers
	$(PY) -m pytest -m 'slow or not slow'

# The fast loop: skips tests marked slow.
test-fast: install
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check shelfops tests bench

clean:
	rm -rf $(VENV) runs .pytest_cache
