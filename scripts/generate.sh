#!/usr/bin/env bash
# Regenerates everything under gen/ from its sources; CI fails if the result differs from git.
#   gen/pb/              protobuf-es code from proto/ (buf + protoc-gen-es, both from npm)
#   gen/openapi/         the REST API as OpenAPI 3.1, from proto/ (scripts/protoc-gen-openapi.ts)
#   gen/prisma/sqlite/   Prisma client for SQLite, from prisma/schema.prisma
#   gen/prisma/postgresql/  the same model for PostgreSQL (only the datasource provider differs)
#   gen/web/             the web app served at / (web/, bundled by rolldown: scripts/build-web.ts)
#   clients/ts/index.{js,d.ts}  the client package's entry, from the service list (scripts/generate-client-index.ts)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$PATH"

buf generate
node scripts/build-web.ts

# `prisma generate` never runs the schema engine, but Prisma 7's CLI would download one unless
# told where it is; any existing file will do (the install must stay air-gapped).
export PRISMA_SCHEMA_ENGINE_BINARY="$PWD/package.json" PRISMA_HIDE_UPDATE_MESSAGE=1 PRISMA_SKIP_POSTINSTALL_GENERATE=1 CHECKPOINT_DISABLE=1
rm -rf gen/prisma
prisma generate --schema prisma/schema.prisma >/dev/null

pg_schema=prisma/.schema.postgresql.prisma
trap 'rm -f "$pg_schema"' EXIT
sed -e 's#provider = "sqlite"#provider = "postgresql"#' \
    -e 's#"../gen/prisma/sqlite"#"../gen/prisma/postgresql"#' prisma/schema.prisma > "$pg_schema"
grep -q 'provider = "postgresql"' "$pg_schema" || { echo "generate: could not derive the PostgreSQL schema" >&2; exit 1; }
prisma generate --schema "$pg_schema" >/dev/null
# Last: it loads the service list, and with it the code generated above.
node scripts/generate-client-index.ts
echo "generated gen/pb, gen/openapi, gen/web, gen/prisma/{sqlite,postgresql} and clients/ts/index.{js,d.ts}"
