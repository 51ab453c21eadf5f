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
[ -n "${TEST_DATABASE_URL:-}" ] || cannot_run "TEST_DATABASE_URL is not set (eval \"\$(bash .ci/postgres.sh start)\")"

echo "==> base image (Debian bookworm minbase + node $(node -v))"
BASE="$(bash .ci/container-base.sh)" || cannot_run "could not make the base image (.ci/container-base.sh failed)"
"${PODMAN[@]}" run --rm --network host --ulimit nofile=20000:20000 --ulimit nproc=1000:1000 "$BASE" node -e 'process.exit(0)' \
  || cannot_run "podman cannot run a container on this machine (podman run $BASE failed)"
echo "    ($((SECONDS - STARTED))s)"

# The npm registry may be reached through a TLS-inspecting proxy whose CA only the host's npm
# knows (npm config cafile): lend that bundle to the build's npm ci.
CA_ARGS=()
NPM_CAFILE_HOST="$(npm config get cafile 2>/dev/null || true)"
if [ -n "$NPM_CAFILE_HOST" ] && [ "$NPM_CAFILE_HOST" != null ] && [ -f "$NPM_CAFILE_HOST" ]; then
  CA_ARGS=(-v "$NPM_CAFILE_HOST:/run/host-ca.crt:ro" --build-arg NPM_CAFILE=/run/host-ca.crt)
fi

echo "==> podman build -t $IMAGE --build-arg BASE=$BASE"
nice -n 10 "${PODMAN[@]}" build --isolation chroot --network host --format docker --layers \
  "${CA_ARGS[@]}" \
  --build-arg "BASE=$BASE" \
  --build-arg "VERSION=$(node -p 'require("./package.json").version')" \
  --build-arg "REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
  -f Containerfile -t "$IMAGE" .
"${PODMAN[@]}" image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' "$IMAGE"
# Superseded builds of this image (untagged by the new tag) would pile up on a shared disk.
"${PODMAN[@]}" image prune --force >/dev/null || true
echo "    ($((SECONDS - STARTED))s)"

echo "==> test/container (vitest.container.config.ts)"
CONTAINER_IMAGE="$IMAGE" npx vitest run --config vitest.container.config.ts
echo "    ($((SECONDS - STARTED))s)"
