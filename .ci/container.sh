#!/usr/bin/env bash
# The image test (`npm run test:container`; .ci/run runs it beside `npm test`): builds the image
# from the Containerfile on a local base (.ci/container-base.sh: Debian + Node 24, no registry to
# pull from) and runs test/container/ against it with podman.
#
# Where podman cannot run, this says so loudly: with CI=true that fails the run (podman is
# installable there: apt-get install podman runc mmdebstrap); elsewhere it warns and exits 0.
# Needs TEST_DATABASE_URL (eval "$(bash .ci/postgres.sh start)"). `--install-only`: only the
# apt-get install (.ci/run does it in the foreground, so that two apt-gets never run at once).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
IN_CI=0
case "${CI:-}" in "" | 0 | false) ;; *) IN_CI=1 ;; esac
PODMAN=(podman --storage-driver vfs --runtime runc)
IMAGE="${CONTAINER_IMAGE:-localhost/idtoken-signin:test}"
STARTED=$SECONDS

cannot_run() {
  printf '\n%s\n' "##########################################################################" >&2
  printf 'WARNING: the container image is NOT tested: %s\n' "$*" >&2
  printf '%s\n\n' "##########################################################################" >&2
  if [ "$IN_CI" = 1 ]; then
    echo "CI=true: failing, because podman can be installed here (apt-get install podman runc mmdebstrap)" >&2
    exit 1
  fi
  exit 0
}

if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v mmdebstrap >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing podman, runc and mmdebstrap from Debian"
    # Waits for another apt-get (CI installs Chromium meanwhile) instead of failing on its lock.
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq podman runc mmdebstrap >/dev/null
  fi
  command -v podman >/dev/null && command -v runc >/dev/null && command -v mmdebstrap >/dev/null \
    || cannot_run "podman, runc or mmdebstrap is missing, and cannot be installed (not root, or no apt-get)"
fi
if [ "${1:-}" = "--install-only" ]; then
  echo "podman $(podman --version | awk '{print $3}'), runc, mmdebstrap: installed"
  exit 0
fi
[ "$(id -u)" = 0 ] || cannot_run "the base image is made with mmdebstrap and podman as root; this is $(id -un)"

echo "==> base image (Debian bookworm minbase + node $(node -v))"
BASE="$(bash .ci/container-base.sh)" || cannot_run "could not make the base image (.ci/container-base.sh failed)"
"${PODMAN[@]}" run --rm --network host --ulimit nofile=20000:20000 --ulimit nproc=1000:1000 "$BASE" node -e 'process.exit(0)' \
  || cannot_run "podman cannot run a container on this machine (podman run $BASE failed)"
echo "    ($((SECONDS - STARTED))s)"

# .ci/run starts this script early, so the base image is made while it checks gen/ (which the
# build copies) and starts PostgreSQL; it then writes CONTAINER_GO_FILE: `export
# TEST_DATABASE_URL=…`, or `exit 1` when it gave up.
if [ -n "${CONTAINER_GO_FILE:-}" ]; then
  echo "==> waiting for .ci/run to check gen/ and start PostgreSQL"
  for _ in $(seq 3600); do [ -s "$CONTAINER_GO_FILE" ] && break; sleep 1; done
  [ -s "$CONTAINER_GO_FILE" ] || { echo "no go from .ci/run within 60 minutes" >&2; exit 1; }
  # shellcheck disable=SC1090
  source "$CONTAINER_GO_FILE"
fi
[ -n "${TEST_DATABASE_URL:-}" ] || cannot_run "TEST_DATABASE_URL is not set (eval \"\$(bash .ci/postgres.sh start)\")"

# The npm registry may be reached through a TLS-inspecting proxy whose CA only the host knows
# (NODE_EXTRA_CA_CERTS, or npm's cafile): lend that bundle to the build's npm ci.
CA_ARGS=()
HOST_CA="${NODE_EXTRA_CA_CERTS:-$(npm config get cafile 2>/dev/null || true)}"
if [ -n "$HOST_CA" ] && [ "$HOST_CA" != null ] && [ -f "$HOST_CA" ]; then
  echo "lending $HOST_CA to the build's npm (NODE_EXTRA_CA_CERTS)"
  CA_ARGS=(-v "$HOST_CA:/run/host-ca.crt:ro")
fi

# Built once per content: the tag is a hash of everything the build reads (the Containerfile, its
# context, the base), so a rerun on the same tree reuses the image and a change rebuilds it.
# --layers=false: on vfs storage every cached step is a full copy of the filesystem (minutes of
# disk I/O on a shared machine); one working container per stage is far cheaper than the cache.
BUILD_KEY="$(
  {
    echo "$BASE"
    git ls-files -z --cached --others --exclude-standard -- Containerfile .dockerignore package.json package-lock.json \
      config.example.yaml prisma/migrations gen src | sort -z | xargs -0 sha256sum
  } | sha256sum | cut -c1-16
)"
BUILT="localhost/idtoken-signin:build-$BUILD_KEY"
if "${PODMAN[@]}" image exists "$BUILT"; then
  echo "==> image $BUILT is built from this very tree: reusing it"
else
  echo "==> podman build -t $BUILT --build-arg BASE=$BASE"
  nice -n 10 "${PODMAN[@]}" build --isolation chroot --network host --format docker --layers=false \
    "${CA_ARGS[@]}" \
    --build-arg "BASE=$BASE" \
    --label "org.opencontainers.image.version=$(node -p 'require("./package.json").version')" \
    --label "org.opencontainers.image.revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
    --label "org.opencontainers.image.created=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    --label "org.opencontainers.image.base.name=$BASE" \
    -f Containerfile -t "$BUILT" .
fi
"${PODMAN[@]}" tag "$BUILT" "$IMAGE"
# Earlier builds of this image would pile up on a shared disk (each a full copy on vfs).
"${PODMAN[@]}" images --format '{{.Repository}}:{{.Tag}}' | grep '^localhost/idtoken-signin:build-' | grep -vx "$BUILT" \
  | xargs -r "${PODMAN[@]}" rmi --force >/dev/null || true
"${PODMAN[@]}" image prune --force >/dev/null || true
"${PODMAN[@]}" image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' "$BUILT"
echo "    ($((SECONDS - STARTED))s)"

echo "==> test/container (vitest.container.config.ts)"
CONTAINER_IMAGE="$IMAGE" npx vitest run --config vitest.container.config.ts
echo "    ($((SECONDS - STARTED))s)"
