// Expressions in shell commands and plug-in inputs (docs/plugins.md §Expressions):
// `${{ deployment.properties.K }}`, `${{ agent.name }}`, `${{ agent.properties.K }}`,
// `${{ secrets.NAME }}`, `${{ steps.STEP.outputs.K }}`. Spaces inside the braces are
// optional; anything else — `$HOME`, `${HOME}`, an unknown `${{ … }}` — is left as
// written. The server checks references at creation (unknown secret → 422), the agent
// resolves them when the step starts.

export type Reference =
  | { kind: "deployment-property"; key: string }
  | { kind: "agent-name" }
  | { kind: "agent-property"; key: string }
  | { kind: "secret"; name: string }
  | { kind: "step-output"; step: string; key: string };

// Keys: property and output names, secret names and step names as the API allows them
// (a step name may hold spaces and most punctuation, but not '.' or '}' here).
const KEY = "[A-Za-z0-9_-]{1,64}";
const STEP = "[A-Za-z0-9_ -]{1,200}?";
const EXPRESSION = new RegExp(
  String.raw`\$\{\{\s*(?:deployment\.properties\.(${KEY})|agent\.name|agent\.properties\.(${KEY})|secrets\.(${KEY})|steps\.(${STEP})\.outputs\.(${KEY}))\s*\}\}`,
  "g",
);

function toReference(m: RegExpExecArray): Reference {
  if (m[1] !== undefined) return { kind: "deployment-property", key: m[1] };
  if (m[2] !== undefined) return { kind: "agent-property", key: m[2] };
  if (m[3] !== undefined) return { kind: "secret", name: m[3] };
  if (m[4] !== undefined) return { kind: "step-output", step: m[4], key: m[5] };
  return { kind: "agent-name" };
}

export function describeReference(r: Reference): string {
  switch (r.kind) {
    case "deployment-property":
      return `deployment.properties.${r.key}`;
    case "agent-name":
      return "agent.name";
    case "agent-property":
      return `agent.properties.${r.key}`;
    case "secret":
      return `secrets.${r.name}`;
    case "step-output":
      return `steps.${r.step}.outputs.${r.key}`;
  }
}

export function findReferences(text: string): Reference[] {
  return [...text.matchAll(EXPRESSION)].map((m) => toReference(m as RegExpExecArray));
}

export const secretNamesIn = (text: string): string[] => [
  ...new Set(findReferences(text).flatMap((r) => (r.kind === "secret" ? [r.name] : []))),
];

// Replaces every expression with what `resolve` gives; null means "cannot be resolved".
// Returns the text and the references that could not be resolved (in order, once each).
export function substitute(text: string, resolve: (r: Reference) => string | null): { text: string; unresolved: string[] } {
  const unresolved = new Set<string>();
  const out = text.replace(EXPRESSION, (...args) => {
    const m = args.slice(0, 6) as unknown as RegExpExecArray;
    const ref = toReference(m);
    const value = resolve(ref);
    if (value === null) {
      unresolved.add(describeReference(ref));
      return m[0];
    }
    return value;
  });
  return { text: out, unresolved: [...unresolved] };
}

// Is the whole text one expression (so a number or boolean input may be given by one)?
export function isSingleExpression(text: string): boolean {
  const m = new RegExp(`^${EXPRESSION.source}$`).exec(text.trim());
  return m !== null;
}
