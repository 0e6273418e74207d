#!/usr/bin/env bash
# PostgreSQL and Redis images built from Debian packages, for machines that reach no image
# registry (deploy/compose.yaml takes them through POSTGRES_IMAGE and REDIS_IMAGE):
#   deploy/service-images.sh     -> localhost/shelfops-postgres:bookworm, localhost/shelfops-redis:bookworm
# Elsewhere the compose file's defaults, the official postgres and redis images, need none of this.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
podman image exists localhost/shelfops-postgres:bookworm || {
  mmdebstrap --quiet --variant=minbase --include=postgresql,postgresql-client,ca-certificates \
    --customize-hook="copy-in $here/services/postgres-entrypoint.sh /usr/local/bin" \
    bookworm "$tmp/pg.tar"
  podman import --quiet --change 'ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$tmp/pg.tar" localhost/shelfops-postgres:bookworm >/dev/null
}
podman image exists localhost/shelfops-redis:bookworm || {
  mmdebstrap --quiet --variant=minbase --include=redis-server bookworm "$tmp/redis.tar"
  podman import --quiet --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$tmp/redis.tar" localhost/shelfops-redis:bookworm >/dev/null
}
echo localhost/shelfops-postgres:bookworm localhost/shelfops-redis:bookworm
