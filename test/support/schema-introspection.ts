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
      .prepare(
        `SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' AND name NOT IN ('_migrations','_prisma_migrations')`,
      )
      .all() as { name: string }[];
    for (const { name } of tables) {
      for (const c of db.pragma(`table_info("${name}")`) as {
        name: string;
        type: string;
        notnull: number;
        dflt_value: string | null;
        pk: number;
      }[]) {
        out.push(`column ${name}.${c.name} ${c.type} notnull=${c.notnull} default=${c.dflt_value} pk=${c.pk}`);
      }
      for (const i of db.pragma(`index_list("${name}")`) as { name: string; unique: number; origin: string }[]) {
        const cols = (db.pragma(`index_info("${i.name}")`) as { name: string }[]).map((x) => x.name).join(",");
        out.push(`index ${name}(${cols}) unique=${i.unique} origin=${i.origin}`);
      }
      for (const f of db.pragma(`foreign_key_list("${name}")`) as {
        table: string;
        from: string;
        to: string;
        on_delete: string;
      }[]) {
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
    const columns = await client.query<{
      table_name: string;
      column_name: string;
      data_type: string;
      is_nullable: string;
      column_default: string | null;
    }>(
      `SELECT table_name, column_name, data_type, is_nullable, column_default FROM information_schema.columns
       WHERE table_schema = 'public' AND table_name NOT IN ('_migrations','_prisma_migrations')`,
    );
    for (const c of columns.rows)
      out.push(
        `column ${c.table_name}.${c.column_name} ${c.data_type} nullable=${c.is_nullable} default=${c.column_default}`,
      );
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

/** The rows `sql` selects, over a connection of its own (either dialect). */
export async function queryRows(url: string, sql: string): Promise<Record<string, unknown>[]> {
  if (url.startsWith("file:")) {
    const db = new Sqlite(sqlitePath(url), { readonly: true });
    try {
      return db.prepare(sql).all() as Record<string, unknown>[];
    } finally {
      db.close();
    }
  }
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql)).rows as Record<string, unknown>[];
  } finally {
    await client.end();
  }
}

export interface RowCounter {
  /** Rows in every table (our bookkeeping left out), by table name. */
  count(): Promise<Record<string, number>>;
  /** `table.column` of every stored text value that holds a control character. */
  textWithControlCharacters(): Promise<string[]>;
  close(): Promise<void>;
}

/**
 * Counts the rows of every table over one connection of its own, for "nothing was written"
 * checked over the whole schema (tables added later included), cheap enough to run per request.
 */
export async function createRowCounter(url: string): Promise<RowCounter> {
  if (url.startsWith("file:")) {
    const db = new Sqlite(sqlitePath(url), { readonly: true });
    const tables = (
      db
        .prepare(
          `SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' AND name NOT IN ('_migrations','_prisma_migrations')`,
        )
        .all() as { name: string }[]
    ).map((t) => t.name);
    const statement = db.prepare(
      tables.map((name) => `SELECT '${name}' AS name, count(*) AS n FROM "${name}"`).join(" UNION ALL "),
    );
    return {
      count: async () =>
        Object.fromEntries((statement.all() as { name: string; n: number }[]).map((r) => [r.name, r.n])),
      textWithControlCharacters: async () =>
        controlled(
          tables.map((name) => [name, db.prepare(`SELECT * FROM "${name}"`).all() as Record<string, unknown>[]]),
        ),
      close: async () => {
        db.close();
      },
    };
  }
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const tables = (
    await client.query<{ table_name: string }>(
      `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'
     AND table_name NOT IN ('_migrations','_prisma_migrations')`,
    )
  ).rows.map((t) => t.table_name);
  const sql = tables.map((name) => `SELECT '${name}' AS name, count(*) AS n FROM "${name}"`).join(" UNION ALL ");
  return {
    count: async () =>
      Object.fromEntries((await client.query<{ name: string; n: string }>(sql)).rows.map((r) => [r.name, Number(r.n)])),
    textWithControlCharacters: async () => {
      const all: Array<[string, Record<string, unknown>[]]> = [];
      for (const name of tables)
        all.push([name, (await client.query<Record<string, unknown>>(`SELECT * FROM "${name}"`)).rows]);
      return controlled(all);
    },
    close: () => client.end(),
  };
}

function controlled(tables: Array<[string, Record<string, unknown>[]]>): string[] {
  const found = new Set<string>();
  for (const [name, rows] of tables) {
    for (const row of rows) {
      for (const [column, value] of Object.entries(row)) {
        // eslint-disable-next-line no-control-regex -- looking for stored control characters is the point
        if (typeof value === "string" && /[\u0000-\u001f\u007f-\u009f]/.test(value)) found.add(`${name}.${column}`);
      }
    }
  }
  return [...found].sort();
}

/** Rows in every table of the database, by table name (one reading; see createRowCounter). */
export async function countRows(url: string): Promise<Record<string, number>> {
  const counter = await createRowCounter(url);
  try {
    return await counter.count();
  } finally {
    await counter.close();
  }
}
