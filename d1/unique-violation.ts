// D1 reports constraint violations as error text ("UNIQUE constraint failed: agents.name"),
// sometimes wrapped by drizzle in a DrizzleQueryError whose `cause` holds the original.
export function isUniqueViolation(err: unknown, column: string): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (e.message.includes(`UNIQUE constraint failed: ${column}`)) return true;
  }
  return false;
}
