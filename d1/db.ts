// D1 access, used by the Worker and the Durable Objects alike: drizzle over the
// binding, and raw statements rendered for D1's own batch API.
import { drizzle } from "drizzle-orm/d1";
import type { SQL } from "drizzle-orm";
import { SQLiteAsyncDialect } from "drizzle-orm/sqlite-core";

export type Db = ReturnType<typeof drizzle>;

export function d1(env: { DB: D1Database }): Db {
  return drizzle(env.DB);
}

const dialect = new SQLiteAsyncDialect();

// A fixed list of the vocabulary (schema/steps.ts) as SQL text: `('pending', 'running')`.
// Only for constants of the code, never for input.
export function sqlList(values: readonly string[]): string {
  return `(${values.map((v) => `'${v.replace(/'/g, "''")}'`).join(", ")})`;
}

// drizzle 0.45's db.batch cannot carry raw `sql` statements that have parameters
// (db.run(sql) has no prepared statement to bind), so raw statements meant for a
// batch are rendered by drizzle's dialect and batched with D1's own API.
export function prepared(db: D1Database, query: SQL): D1PreparedStatement {
  const { sql, params } = dialect.sqlToQuery(query);
  return db.prepare(sql).bind(...params);
}
