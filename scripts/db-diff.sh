#!/usr/bin/env bash
# Authors the next migration for both dialects from the change to prisma/schema.prisma, with
# Prisma's own engine, offline (tools/prisma-diff, installed by `npm ci`). Never hand-write
# schema SQL; a data change the diff cannot write (an UPDATE, as in 0016) goes below its statements.
#
#   npm run db:diff -- add_widgets            # diff against the schema in HEAD
#   BASE=main~3 npm run db:diff -- add_widgets
#
# Writes prisma/migrations/{sqlite,postgresql}/NNNN_<name>/migration.sql; review, then
# `npm run generate` and commit both. The migrations test fails CI if they drift from the model.
# The PostgreSQL diff needs a server to connect to (it writes nothing there): PRISMA_DIFF_PG_URL,
# else TEST_DATABASE_URL, else a throwaway cluster started (and stopped) with .ci/postgres.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: npm run db:diff -- <migration_name>}
[[ $name =~ ^[a-z0-9_]+$ ]] || { echo "db:diff: name must be [a-z0-9_]+" >&2; exit 2; }

work=$(mktemp -d)
pg_state=""
cleanup() {
  if [ -n "$pg_state" ]; then PG_TEST_STATE_FILE=$pg_state bash .ci/postgres.sh stop; fi
  rm -rf "$work"
}
trap cleanup EXIT

git show "${BASE:-HEAD}:prisma/schema.prisma" > "$work/old.prisma"
pg_url=${PRISMA_DIFF_PG_URL:-${TEST_DATABASE_URL:-}}
if [ -z "$pg_url" ]; then
  echo "db:diff: no PRISMA_DIFF_PG_URL or TEST_DATABASE_URL; starting a throwaway PostgreSQL for the diff" >&2
  pg_state="$work/postgres.state"
  PG_TEST_STATE_FILE=$pg_state bash .ci/postgres.sh start >/dev/null 2>"$work/postgres.log" || { cat "$work/postgres.log" >&2; exit 1; }
  pg_url=$(PG_TEST_STATE_FILE=$pg_state bash .ci/postgres.sh url)
  [ -n "$pg_url" ] || { echo "db:diff: could not start PostgreSQL (see above); set PRISMA_DIFF_PG_URL" >&2; exit 1; }
fi

last=$(ls prisma/migrations/sqlite | sort | tail -n 1)
next=$(printf '%04d' $((10#${last%%_*} + 1)))
for dialect in sqlite postgresql; do
  # Into a scratch file first: a failed diff leaves no half-written migration behind.
  node tools/prisma-diff/prisma-diff.ts --provider "$dialect" --from "$work/old.prisma" --to prisma/schema.prisma \
    --postgres-url "$pg_url" > "$work/$dialect.sql"
done
for dialect in sqlite postgresql; do
  dir="prisma/migrations/$dialect/${next}_$name"
  mkdir -p "$dir"
  mv "$work/$dialect.sql" "$dir/migration.sql"
  echo "wrote $dir/migration.sql"
done
