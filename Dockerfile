# shelfops: the serving image (`shelfops serve`), and every other command of the CLI.
#
#   podman build -t shelfops .                       # python:3.11-slim, torch from the CPU index
#   podman run -p 8000:8000 -v $PWD/runs/demo:/data:ro shelfops \
#       serve --host 0.0.0.0 --model search=/data/optimized/auto-1 --data /data/data/v1
#
# Build arguments:
#   BASE        any image with Python 3.11+ and its venv module (the default is the usual one;
#               tests here pass a base built from Debian packages: deploy/base-image.sh)
#   PIP_EXTRA_INDEX_URL  where pip finds the CPU build of torch: the PyTorch CPU index by
#               default, so that pip does not take the multi-GB CUDA build
#   PIP_FIND_LINKS       a local wheel folder mounted into the build (e.g. --volume DIR:/wheels:ro
#               --build-arg PIP_FIND_LINKS=/wheels), searched before the indexes
#   PIP_CERT    a CA bundle mounted into the build, for networks whose TLS proxy has its own CA
#   EXTRAS      optional dependency groups: `scale` adds Ray Serve, Redis and PostgreSQL
#               drivers (the shared state of several replicas); empty for one process
# (pip reads the PIP_* arguments as its environment, in the build of the project too)
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
ARG PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_FIND_LINKS=""
ARG PIP_CERT=""
ARG EXTRAS=scale
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python3 -m venv /opt/shelfops
COPY pyproject.toml constraints.txt LICENSE /src/
# the dependencies first, from pyproject.toml alone (an empty package and README stand in), so
# that a change to the code or the docs rebuilds only the last layers: torch first, pinned to the
# tested version and its CPU build; an empty PIP_* argument is unset, not handed to pip as empty
RUN for v in PIP_EXTRA_INDEX_URL PIP_FIND_LINKS PIP_CERT; do eval "[ -n \"\$$v\" ]" || unset $v; done \
 && mkdir -p /src/shelfops && touch /src/shelfops/__init__.py /src/README.md \
 && /opt/shelfops/bin/pip install -c /src/constraints.txt torch==2.13.0 \
 && /opt/shelfops/bin/pip install -c /src/constraints.txt "/src${EXTRAS:+[$EXTRAS]}" \
 && rm -rf /src/shelfops /src/build
COPY README.md /src/
COPY shelfops /src/shelfops
# then the project itself (not editable)
RUN for v in PIP_EXTRA_INDEX_URL PIP_FIND_LINKS PIP_CERT; do eval "[ -n \"\$$v\" ]" || unset $v; done \
 && /opt/shelfops/bin/pip install --no-deps --force-reinstall /src \
 && /opt/shelfops/bin/shelfops --version

FROM ${BASE}
LABEL org.opencontainers.image.title="shelfops" \
      org.opencontainers.image.description="Pretrained transformers behind e-commerce search and recommendation" \
      org.opencontainers.image.licenses="Apache-2.0"
# /var/lib/shelfops: state worth a volume (the registry's cache, MLflow's artifacts); owned by
# the user, so a fresh named volume mounted there is too
RUN useradd --system --uid 10001 --create-home --home-dir /home/shelfops shelfops \
 && install -d -o 10001 -g 10001 /var/lib/shelfops
COPY --from=build /opt/shelfops /opt/shelfops
ENV PATH=/opt/shelfops/bin:$PATH PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1
USER 10001
WORKDIR /home/shelfops
EXPOSE 8000
# (OCI images drop HEALTHCHECK: podman build --format docker keeps it)
# ready = the models are loaded and every dependency answers (a 503 before)
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
  CMD ["python3", "-c", "import sys, urllib.request as u; sys.exit(u.urlopen('http://127.0.0.1:8000/readyz', timeout=2).status != 200)"]
ENTRYPOINT ["shelfops"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
