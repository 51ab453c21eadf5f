#!/usr/bin/env bash
# Authors the next migration for both dialects from the change to prisma/schema.prisma, with
# Prisma's own engine, offline (../shared/tools/prisma-diff). Never hand-write migration SQL.
#
#   npm run db:diff -- add_widgets            # diff against the schema in HEAD
#   BASE=main~3 npm run db:diff -- add_widgets
#
# Writes prisma/migrations/{sqlite,postgresql}/NNNN_<name>/migration.sql; review, then
# `npm run generate` and commit both. The migrations test fails CI if they drift from the model.
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: npm run db:diff -- <migration_name>}
[[ $name =~ ^[a-z0-9_]+$ ]] || { echo "db:diff: name must be [a-z0-9_]+" >&2; exit 2; }
tool=${PRISMA_DIFF:-../shared/tools/prisma-diff/prisma-diff}
[ -x "$tool" ] || { echo "db:diff: $tool not found (set PRISMA_DIFF)" >&2; exit 2; }

old=$(mktemp --suffix .prisma)
trap 'rm -f "$old"' EXIT
git show "${BASE:-HEAD}:prisma/schema.prisma" > "$old"
last=$(ls prisma/migrations/sqlite | sort | tail -n 1)
next=$(printf '%04d' $((10#${last%%_*} + 1)))
# The tool keeps a per-Node-major cache: it builds a native module for the node that runs it.
export XDG_CACHE_HOME=${XDG_CACHE_HOME:-$HOME/.cache/node$(node -p 'process.versions.node.split(".")[0]')}
for dialect in sqlite postgresql; do
  dir="prisma/migrations/$dialect/${next}_$name"
  mkdir -p "$dir"
  "$tool" --provider "$dialect" --from "$old" --to prisma/schema.prisma > "$dir/migration.sql"
  echo "wrote $dir/migration.sql"
done
