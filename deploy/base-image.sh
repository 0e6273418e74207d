#!/usr/bin/env bash
# A Python base image built from Debian packages, for machines that reach no image registry:
#   deploy/base-image.sh [TAG]     (default localhost/shelfops-base:bookworm; ~1 min, ~250 MB)
# then: podman build --build-arg BASE=localhost/shelfops-base:bookworm -t shelfops .
# Debian bookworm's python3 is 3.11, the version shelfops is tested on.
set -euo pipefail
TAG=${1:-localhost/shelfops-base:bookworm}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates,passwd \
  bookworm "$tmp/base.tar"
podman import --quiet "$tmp/base.tar" "$TAG" >/dev/null
echo "$TAG"
