// What the agents list does not carry, read per agent from GET /api/v1/agents/:id, and
// what an admin changes in a running agent (docs/agent-lifecycle.md §Config, §Restart):
// its config — desired (what an admin asked for) against applied (what the agent says
// it runs), a difference shown as pending — the agents whose name it took over
// (`replaced`), its upgrade (shown and asked for in agent-upgrade.js), the config
// fields of the Edit row, and the Restart button.
//
// An agent's detail is read when it is first listed, at every poll while its config is
// pending or (online) it is upgrading, when its status or version changes (a
// reconnecting agent reports its config in its hello), and otherwise every
// DETAIL_REFRESH_MS; at most MAX_READS at a time.
import { AuthError, ApiError, enc, get, post } from "./api.js";
import { $, confirmAction, el, say, when } from "./dom.js";

const DETAIL_REFRESH_MS = 60_000;
const MAX_READS = 6;
const RESTART_NOTE_MS = 60_000;
export const LOG_LEVELS = ["error", "warn", "info", "debug"];
const CONFIG_KEYS = [["concurrency", "concurrency"], ["logLevel", "log level"]];

const UPGRADE_ENDS = ["succeeded", "rolled-back", "failed"];

const details = new Map(); // agent id → { config, replaced, upgrade, readAt, status, version }
const reading = new Set(); // ids whose detail is being read
let tick = 0; // orders reads and writes: a read started before a write is stale
const written = new Map(); // agent id → tick of the last config written by this page
const restartRequested = new Map(); // agent id → when this page requested its restart
const openReplaced = new Set(); // ids whose "replaced" list is unfolded
let askingRestart = null;
let restarting = null;
let generation = 0;
let hooks = { refused: () => {}, rerender: () => {} };

export function initAgentControls(h) {
  hooks = h;
}

export function resetAgentControls() {
  generation++;
  details.clear();
  reading.clear();
  written.clear();
  restartRequested.clear();
  openReplaced.clear();
  askingRestart = restarting = null;
}

// The list's own config if the server ever sends one, else the one read per agent.
export const configOf = (a) => a.config ?? details.get(a.id)?.config ?? null;

export const upgradeOf = (a) => details.get(a.id)?.upgrade ?? null;
const upgrading = (d) => Boolean(d.upgrade) && !UPGRADE_ENDS.includes(d.upgrade.state);

const pendingKeys = (c) => (c ? CONFIG_KEYS.map(([k]) => k).filter((k) => c.desired[k] !== undefined && c.desired[k] !== c.applied[k]) : []);

// Reads the details that are due (see the top of this file); rerenders as they arrive.
export function refreshDetails(agents) {
  const listed = new Set(agents.map((a) => a.id));
  for (const id of details.keys()) if (!listed.has(id)) details.delete(id);
  const now = Date.now();
  const due = agents.filter((a) => {
    if (reading.has(a.id)) return false;
    const d = details.get(a.id);
    if (!d) return true;
    if ((upgrading(d) && a.status === "online") || d.readAt === 0) return true; // an offline agent upgrades when it returns
    if (a.config !== undefined) return false;
    return d.status !== a.status || d.version !== a.version || pendingKeys(d.config).length > 0 || now - d.readAt > DETAIL_REFRESH_MS;
  });
  for (const a of due.slice(0, Math.max(0, MAX_READS - reading.size))) readDetail(a);
}

async function readDetail(a) {
  const gen = generation;
  const started = ++tick;
  reading.add(a.id);
  try {
    const d = await get(`/api/v1/agents/${enc(a.id)}`);
    if (gen !== generation) return;
    if ((written.get(a.id) ?? 0) > started) return; // older than what this page just saved
    details.set(a.id, { config: d.config ?? { desired: {}, applied: {} }, replaced: d.replaced ?? [], upgrade: d.upgrade ?? null, readAt: Date.now(), status: a.status, version: a.version });
    hooks.rerender();
  } catch (err) {
    if (gen !== generation) return;
    if (err instanceof AuthError) return hooks.refused(err);
    if (!(err instanceof ApiError && err.status === 404)) console.error(`cannot read agent ${a.name}:`, err); // 404: revoked meanwhile
  } finally {
    if (gen === generation) reading.delete(a.id);
  }
}

// The config a PATCH answered with: shown at once, and no older read may replace it.
export function noteSaved(a, config) {
  if (!config) return;
  written.set(a.id, ++tick);
  const d = details.get(a.id);
  details.set(a.id, { replaced: [], upgrade: null, readAt: Date.now(), status: a.status, version: a.version, ...d, config });
}

// The upgrade a POST answered with: shown at once (no older read may replace it), then
// read again at every poll until the agent reports an end state.
export function noteUpgrade(a, upgrade) {
  written.set(a.id, ++tick);
  const d = details.get(a.id);
  details.set(a.id, { config: null, replaced: [], readAt: Date.now(), status: a.status, version: a.version, ...d, upgrade });
}

// Agents an upgrade rollout has just handed commands: their details are read at the next poll.
export function staleDetails(ids) {
  for (const id of ids) {
    const d = details.get(id);
    if (d) d.readAt = 0;
  }
}

// What the row shows from here: part of its signature, so a change redraws it.
export function controlsSig(a) {
  const requested = restartRequested.get(a.id);
  return [configOf(a), details.get(a.id)?.replaced ?? null, upgradeOf(a), openReplaced.has(a.id), askingRestart === a.id, restarting === a.id,
    requested !== undefined && Date.now() - requested < RESTART_NOTE_MS];
}

// --- the row's cells ----------------------------------------------------------------

export function configCell(a) {
  const c = configOf(a);
  if (!c) return el("td", { class: "config muted", title: "being read" }, "…");
  const items = CONFIG_KEYS.filter(([k]) => c.desired[k] !== undefined || c.applied[k] !== undefined)
    .map(([k, label]) => configItem(k, label, c.desired[k], c.applied[k]));
  return el("td", { class: "config", "data-pending": String(pendingKeys(c).length > 0) },
    ...(items.length ? items : [el("span", { class: "muted", title: "neither set by an admin nor reported by the agent", text: "—" })]));
}

function configItem(key, label, desired, applied) {
  const state = desired === undefined ? "agent" : desired === applied ? "applied" : "pending";
  const shown = String(desired ?? applied);
  const attrs = { class: `cfg cfg-${state}`, "data-cfg": key, "data-state": state, "data-desired": desired ?? "", "data-applied": applied ?? "" };
  if (state === "agent") {
    return el("span", { ...attrs, title: "the agent's own setting: no admin has set it" },
      el("span", { class: "k", text: label }), " ", el("span", { class: "v", text: shown }), " ", el("span", { class: "muted note", text: "(agent's own)" }));
  }
  if (state === "applied") {
    return el("span", { ...attrs, title: `desired ${shown}; the agent applies it` },
      el("span", { class: "k", text: label }), " ", el("span", { class: "v", text: shown }), " ", el("span", { class: "applied-mark", text: "applied" }));
  }
  return el("span", { ...attrs, title: `desired ${shown}; the agent has not yet said it applies it` },
    el("span", { class: "k", text: label }), " ", el("span", { class: "v", text: shown }), " ", el("span", { class: "pending", text: "pending" }),
    " ", el("span", { class: "muted note applied", text: `(applied: ${applied ?? "—"})` }));
}

// Under the agent's name: the agents whose name it took over (`register --replace`).
export function replacedNote(a) {
  const replaced = details.get(a.id)?.replaced ?? [];
  if (replaced.length === 0) return null;
  const box = el("details", { class: "replaced", open: openReplaced.has(a.id) },
    el("summary", { text: `replaces ${replaced.length === 1 ? "an earlier agent" : `${replaced.length} earlier agents`}` }),
    el("ul", {}, ...replaced.map((r) => el("li", { "data-replaced": r.id },
      el("span", { class: "mono", text: r.id }), el("span", { class: "muted", text: ` revoked ${when(r.revokedAt)}` })))));
  box.addEventListener("toggle", () => {
    if (box.open) openReplaced.add(a.id);
    else openReplaced.delete(a.id);
  });
  return box;
}

// Beside the status badge, for a while after this page asked for a restart.
export function restartNote(a) {
  const requested = restartRequested.get(a.id);
  if (requested === undefined || Date.now() - requested >= RESTART_NOTE_MS) return null;
  return el("span", { class: "restart-note", title: "the monitor starts a new worker when the agent gets the request; running steps keep running", text: "restart requested" });
}

export function restartControl(a) {
  return el("span", { class: "agent-restart" }, confirmAction({
    label: "Restart",
    question: `Restart ${a.name}? Its monitor starts a new worker; running steps keep running.`,
    confirmLabel: "Restart agent",
    asking: askingRestart === a.id,
    busy: restarting === a.id,
    onAsk: () => { askingRestart = a.id; hooks.rerender(); },
    onCancel: () => { askingRestart = null; hooks.rerender(); },
    onConfirm: () => restart(a),
  }));
}

async function restart(a) {
  restarting = a.id;
  hooks.rerender();
  try {
    const r = await post(`/api/v1/agents/${enc(a.id)}/restart`, {});
    restartRequested.set(a.id, Date.now());
    say($("agents-message"), `Restart of ${r.name ?? a.name} requested: its monitor starts a new worker as soon as the agent gets the request${a.status === "online" ? "" : " (when it is back online)"}; running steps keep running.`, "ok");
  } catch (err) {
    if (err instanceof AuthError) return hooks.refused(err);
    say($("agents-message"), `Cannot restart ${a.name}: ${err.message}`);
  } finally {
    if (askingRestart === a.id) askingRestart = null;
    restarting = null;
    hooks.rerender();
  }
}

// --- the Edit row's config fields ----------------------------------------------------------

// The fields, filled with the desired config (empty: not set by an admin; the agent's
// own value as placeholder), and read() → {change} (only what differs from the desired
// config) or {error}.
export function configFields(a) {
  const c = configOf(a) ?? { desired: {}, applied: {} };
  const concurrency = el("input", {
    id: "ae-concurrency", class: "ae-concurrency", type: "number", min: 1, max: 64, step: 1, inputmode: "numeric",
    value: c.desired.concurrency ?? "", placeholder: c.applied.concurrency !== undefined ? `agent's own: ${c.applied.concurrency}` : "1–64",
  });
  const level = el("select", { id: "ae-log-level", class: "ae-log-level" },
    el("option", { value: "" }, c.applied.logLevel ? `(agent's own: ${c.applied.logLevel})` : "(not set)"),
    ...LOG_LEVELS.map((l) => el("option", { value: l, selected: c.desired.logLevel === l }, l)));
  const fields = [
    el("div", { class: "ae-field" }, el("label", { for: "ae-concurrency", text: "Concurrency (deployments at once, 1–64)" }), concurrency),
    el("div", { class: "ae-field" }, el("label", { for: "ae-log-level", text: "Log level" }), level),
  ];
  const read = () => {
    const change = {};
    const text = concurrency.value.trim();
    if (concurrency.validity.badInput) return { error: "Concurrency: a whole number from 1 to 64." };
    if (text !== "") {
      const n = Number(text);
      if (!Number.isInteger(n) || n < 1 || n > 64) return { error: "Concurrency: a whole number from 1 to 64." };
      if (n !== c.desired.concurrency) change.concurrency = n;
    }
    if (level.value && level.value !== c.desired.logLevel) change.logLevel = level.value;
    return { change };
  };
  return { fields, read };
}

// "concurrency 4, log level debug"
export function describeChange(change) {
  return CONFIG_KEYS.filter(([k]) => change[k] !== undefined).map(([k, label]) => `${label} ${change[k]}`).join(", ");
}
