// DOM and formatting helpers. Every piece of server data goes into the page through
// textContent or a text node (el() below), never through innerHTML; no inline style
// and no inline handler is ever written (the page's CSP forbids both).

export const $ = (id) => document.getElementById(id);

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) node.append(c instanceof Node ? c : String(c));
  return node;
}

export const badge = (status) => el("span", { class: `badge s-${status}`, text: status });

// A message line under a card's heading: kind "error" or "ok"; empty text hides it.
export function say(node, text, kind = "error") {
  node.textContent = text || "";
  node.className = `message ${text ? kind : ""}`;
}

// Shows `items` in `container` as one element each, in order, reusing the element
// already there for an item whose signature has not changed: a poll that changed
// nothing leaves the DOM (focus, hover, a half-done confirmation) alone. Children
// without a key (a table's thead) are left where they are.
export function reconcile(container, items, keyOf, sigOf, render) {
  const old = new Map();
  for (const n of container.children) if (n.dataset.key !== undefined) old.set(n.dataset.key, n);
  const nodes = items.map((item) => {
    const key = keyOf(item);
    const sig = sigOf(item);
    const prev = old.get(key);
    if (prev && prev.dataset.sig === sig) return prev;
    const node = render(item);
    node.dataset.key = key;
    node.dataset.sig = sig;
    return node;
  });
  const keep = new Set(nodes);
  for (const n of old.values()) if (!keep.has(n)) n.remove();
  let next = null;
  for (let i = nodes.length - 1; i >= 0; i--) {
    if (nodes[i].parentNode !== container || nodes[i].nextSibling !== next) container.insertBefore(nodes[i], next);
    next = nodes[i];
  }
}

// A destructive action in two clicks: the first asks, the second does it. The caller
// keeps whether it is asking (so a re-render shows the same thing).
export function confirmAction({ label, question, confirmLabel, asking, onAsk, onCancel, onConfirm, busy = false }) {
  if (!asking) return el("button", { type: "button", class: "quiet danger-quiet", onclick: onAsk }, label);
  return el("span", { class: "confirm" },
    el("span", { class: "question", text: question }),
    el("button", { type: "button", class: "danger", disabled: busy, onclick: onConfirm }, busy ? "…" : confirmLabel),
    el("button", { type: "button", class: "quiet", disabled: busy, onclick: onCancel }, "Cancel"),
  );
}

// Copies the text of `source` (an element) to the clipboard; where the clipboard is
// not available, selects the text so that Ctrl+C copies it.
export async function copyText(button, source) {
  const label = button.dataset.label ?? (button.dataset.label = button.textContent);
  try {
    await navigator.clipboard.writeText(source.textContent);
    button.textContent = "Copied";
  } catch {
    const range = document.createRange();
    range.selectNodeContents(source);
    const sel = getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
    button.textContent = "Press Ctrl+C";
  }
  setTimeout(() => { button.textContent = label; }, 2000);
}

// --- formatting -----------------------------------------------------------------

export function ago(iso) {
  const s = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
  if (s < 5) return "just now";
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(iso).toLocaleDateString();
}

export function span(ms) {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
  return `${Math.floor(ms / 3_600_000)} h ${Math.round((ms % 3_600_000) / 60_000)} min`;
}

// From `fromIso` to `toIso`, or to now while it is still going.
export function duration(fromIso, toIso) {
  const ms = (toIso ? new Date(toIso) : new Date()).getTime() - new Date(fromIso).getTime();
  return ms < 0 ? "" : span(ms);
}

// "40 min", "12 s": for notes such as "reported 40 min later".
export function roughly(ms) {
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  if (s < 86400) return `${(s / 3600).toFixed(s < 36000 ? 1 : 0)} h`;
  return `${Math.round(s / 86400)} d`;
}

export const clock = (d) => d.toLocaleTimeString([], { hour12: false });
export const when = (iso) => (iso ? new Date(iso).toLocaleString() : "");
export const bytes = (n) => (n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1048576).toFixed(1)} MiB`);
