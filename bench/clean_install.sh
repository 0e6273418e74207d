#!/bin/bash
# A user's install, outside the repo and without make: a wheel of shelfops in a clean venv,
# then `shelfops demo` from an empty folder (issue 20). Prints the seconds of each step.
#   bench/clean_install.sh [REPO (default: this checkout)] [WORKDIR (default: /tmp/shelfops-clean)]
# torch is installed first and pinned, as the Makefile does: elsewhere add
#   PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu   (CPU build, not the CUDA one)
set -euo pipefail
REPO=$(cd "${1:-$(dirname "$0")/..}" && pwd)
WORK=${2:-/tmp/shelfops-clean}
PY=${PYTHON:-python3.11}
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK"
git clone -q "$REPO" src
echo "commit $(git -C src rev-parse --short HEAD); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-);" \
     "bf16 flags: $(grep -o -m1 -E 'avx512_bf16|amx_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')"
"$PY" -m venv venv
t0=$(date +%s)
venv/bin/pip install -q torch==2.13.0
venv/bin/pip wheel -q --no-deps -w dist ./src
venv/bin/pip install -q dist/shelfops-*.whl
t1=$(date +%s)
echo "install seconds: $((t1 - t0))"
venv/bin/shelfops --version
mkdir work && cd work
../venv/bin/shelfops demo > demo.log 2>&1 || { tail -40 demo.log; exit 1; }
t2=$(date +%s)
echo "demo seconds: $((t2 - t1))"
grep -E '^(yes|no) ' demo.log
