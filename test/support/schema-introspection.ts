import Sqlite from "better-sqlite3";
import pg from "pg";
import { sqlitePath } from "../../src/store/database.ts";

/**
 * A dialect-specific, order-independent description of a database's schema (tables, columns
 * with type/nullability/default, indexes with uniqueness and columns, foreign keys), for
 * comparing two databases. `_migrations` (our bookkeeping) and Prisma's own tables are left out.
 */
export async function describeSchema(url: string): Promise<string[]> {
  return url.startsWith("file:") ? describeSqlite(url) : describePostgres(url);
}

function describeSqlite(url: string): string[] {
  const db = new Sqlite(sqlitePath(url), { readonly: true });
  try {
    const out: string[] = [];
    const tables = db
      .prepare(`SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' AND name NOT IN ('_migrations','_prisma_migrations')`)
      .all() as { name: string }[];
    for (const { name } of tables) {
      for (const c of db.pragma(`table_info("${name}")`) as { name: string; type: string; notnull: number; dflt_value: string | null; pk: number }[]) {
        out.push(`column ${name}.${c.name} ${c.type} notnull=${c.notnull} default=${c.dflt_value} pk=${c.pk}`);
      }
      for (const i of db.pragma(`index_list("${name}")`) as { name: string; unique: number; origin: string }[]) {
        const cols = (db.pragma(`index_info("${i.name}")`) as { name: string }[]).map((x) => x.name).join(",");
        out.push(`index ${name}(${cols}) unique=${i.unique} origin=${i.origin}`);
      }
      for (const f of db.pragma(`foreign_key_list("${name}")`) as { table: string; from: string; to: string; on_delete: string }[]) {
        out.push(`fk ${name}.${f.from} -> ${f.table}.${f.to} on_delete=${f.on_delete}`);
      }
    }
    return out.sort();
  } finally {
    db.close();
  }
}

async function describePostgres(url: string): Promise<string[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const out: string[] = [];
    const columns = await client.query<{ table_name: string; column_name: string; data_type: string; is_nullable: string; column_default: string | null }>(
      `SELECT table_name, column_name, data_type, is_nullable, column_default FROM information_schema.columns
       WHERE table_schema = 'public' AND table_name NOT IN ('_migrations','_prisma_migrations')`,
    );
    for (const c of columns.rows) out.push(`column ${c.table_name}.${c.column_name} ${c.data_type} nullable=${c.is_nullable} default=${c.column_default}`);
    const indexes = await client.query<{ tablename: string; indexdef: string }>(
      `SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename NOT IN ('_migrations','_prisma_migrations')`,
    );
    for (const i of indexes.rows) out.push(`index ${i.indexdef}`);
    const fks = await client.query<{ conname: string; def: string }>(
      `SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE contype = 'f' AND connamespace = 'public'::regnamespace`,
    );
    for (const f of fks.rows) out.push(`fk ${f.conname} ${f.def}`);
    return out.sort();
  } finally {
    await client.end();
  }
}

/** Runs SQL (several statements) on a database, outside our migrator. */
export async function execSql(url: string, sql: string): Promise<void> {
  if (url.startsWith("file:")) {
    const db = new Sqlite(sqlitePath(url));
    try {
      db.exec(sql);
    } finally {
      db.close();
    }
    return;
  }
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/**
 * Rows in every table of the database (our bookkeeping left out), by table name: "nothing was
 * written" checked over the whole schema, including tables added later.
 */
export async function countRows(url: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  if (url.startsWith("file:")) {
    const db = new Sqlite(sqlitePath(url), { readonly: true });
    try {
      const tables = db
        .prepare(`SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' AND name NOT IN ('_migrations','_prisma_migrations')`)
        .all() as { name: string }[];
      for (const { name } of tables) out[name] = (db.prepare(`SELECT count(*) AS n FROM "${name}"`).get() as { n: number }).n;
    } finally {
      db.close();
    }
    return out;
  }
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const tables = await client.query<{ table_name: string }>(
      `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'
       AND table_name NOT IN ('_migrations','_prisma_migrations')`,
    );
    for (const { table_name: name } of tables.rows) {
      out[name] = Number((await client.query<{ n: string }>(`SELECT count(*) AS n FROM "${name}"`)).rows[0]!.n);
    }
  } finally {
    await client.end();
  }
  return out;
}
