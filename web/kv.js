// Tags and properties as people type them: tags as comma-separated text, properties as
// `key=value` lines (an agent's) or as rows of two fields (a deployment's). The server
// checks names and sizes itself; here only the shape is read, and a line that is not
// `key=value` or a key given twice is said plainly before anything is sent.
import { el } from "./dom.js";

// "web, eu-west ,db" → ["web", "eu-west", "db"]; empty pieces are dropped.
export function parseTags(text) {
  const tags = text.split(",").map((t) => t.trim()).filter(Boolean);
  const seen = new Set();
  for (const t of tags) {
    if (seen.has(t)) return { error: `the tag “${t}” is given twice` };
    seen.add(t);
  }
  return { tags };
}

export const formatTags = (tags) => (tags ?? []).join(", ");

// `key=value` per line; the value is everything after the first "=" (it may hold more).
export function parseLines(text) {
  const properties = {};
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (!line) continue;
    const eq = line.indexOf("=");
    if (eq <= 0) return { error: `line ${i + 1}: write key=value` };
    const added = add(properties, line.slice(0, eq).trim(), line.slice(eq + 1).trim());
    if (added) return { error: `line ${i + 1}: ${added}` };
  }
  return { properties };
}

export const formatLines = (properties) => Object.entries(properties ?? {}).map(([k, v]) => `${k}=${v}`).join("\n");

function add(properties, key, value) {
  if (!key) return "a property needs a name";
  if (Object.hasOwn(properties, key)) return `the property “${key}” is given twice`;
  properties[key] = value;
  return null;
}

// --- rows of key and value fields -----------------------------------------------------------

export function addRow(list, key = "", value = "") {
  const row = el("li", { class: "kv-row" },
    el("input", { class: "kv-key mono", "aria-label": "Property name", placeholder: "name", maxlength: 64, value: key }),
    el("span", { class: "muted", text: "=" }),
    el("input", { class: "kv-value mono", "aria-label": "Property value", placeholder: "value", value }),
    el("button", { type: "button", class: "quiet", "aria-label": "Remove this property", onclick: () => row.remove() }, "Remove"),
  );
  list.append(row);
  return row;
}

// Rows whose name and value are both empty are ignored.
export function readRows(list) {
  const properties = {};
  for (const row of list.querySelectorAll(".kv-row")) {
    const key = row.querySelector(".kv-key").value.trim();
    const value = row.querySelector(".kv-value").value;
    if (!key && !value) continue;
    const added = add(properties, key, value);
    if (added) return { error: added };
  }
  return { properties };
}
