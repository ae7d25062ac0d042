// Text modules (wrangler.toml `[[rules]] type = "Text"`): drizzle's ledger migrations.
declare module "*.sql" {
  const text: string;
  export default text;
}

// drizzle-kit writes this file as plain JS; its shape is what drizzle's DO migrator takes.
declare module "*/migrations/ledger/migrations.js" {
  const migrations: {
    journal: { entries: { idx: number; when: number; tag: string; breakpoints: boolean }[] };
    migrations: Record<string, string>;
  };
  export default migrations;
}
