// Upgrading many agents (docs/agent-lifecycle.md §Upgrading many agents), in the Agent
// versions panel: the admin's form — a version, the agents (all, by names, or those
// carrying all the given tags), a batch size — posts POST /api/v1/agents/upgrade, whose
// refusals (404 unknown version, 422 unknown agents or no agent with the tags, 400) are
// said in the server's words; and, for everyone, the recent rollouts (GET
// /api/v1/agents/upgrade): their state, the current wave among the waves (agent names
// resolved from the agents list) and why one stopped. A running rollout is read again at
// every poll of the page, and the agents of a wave it starts have their details read
// again (agent-controls.js), so that their rows follow.
import { AuthError, get, post } from "./api.js";
import { $, ago, badge, el, reconcile, say, when } from "./dom.js";
import { parseTags } from "./kv.js";
import { agentList } from "./agents.js";
import { staleDetails } from "./agent-controls.js";
import { agentVersionList, currentAgentVersion } from "./agent-versions.js";

let rollouts = [];
let loaded = false;
let posting = false;
let versionTyped = false; // once someone types a version, the page no longer fills it in
let generation = 0;
const seen = new Set(); // "id:wave:state" of the rollouts whose wave's agents were marked for a read
let hooks = { refused: () => {} };

export function initUpgradeRollouts(h) {
  hooks = h;
  $("upgrade-form").addEventListener("submit", (e) => {
    e.preventDefault();
    start();
  });
  $("up-version").addEventListener("input", () => { versionTyped = true; });
  for (const id of ["up-all", "up-by-names", "up-by-tags"]) $(id).addEventListener("change", renderTargets);
  $("up-targets").addEventListener("input", renderMatches);
}

export function resetUpgradeRollouts() {
  generation++;
  rollouts = [];
  loaded = posting = versionTyped = false;
  seen.clear();
  $("upgrade-form").reset();
  $("upgrade-submit").disabled = false;
  renderTargets();
  say($("upgrade-message"), "");
  say($("upgrade-rollouts-message"), "");
  $("upgrade-rollouts").tBodies[0].replaceChildren();
  $("upgrade-rollouts").hidden = true;
  $("upgrade-rollouts-empty").hidden = true;
}

export async function loadUpgradeRollouts() {
  const gen = generation;
  try {
    const body = await get("/api/v1/agents/upgrade");
    if (gen !== generation) return;
    rollouts = body.rollouts ?? [];
    loaded = true;
    say($("upgrade-rollouts-message"), "");
    markWaves();
    renderRollouts();
  } catch (err) {
    if (gen !== generation) return;
    if (err instanceof AuthError) throw err;
    say($("upgrade-rollouts-message"), `Cannot list the upgrade rollouts: ${err.message}`);
  }
}

// At every poll of the page: a running rollout is read again; otherwise the list is
// redrawn (agent names may have come since).
export function pollUpgradeRollouts() {
  if (rollouts.some((r) => r.state === "running")) return loadUpgradeRollouts();
  if (loaded) renderRollouts();
  return Promise.resolve();
}

// The uploaded versions as the version field's suggestions; the current one filled in
// until someone types.
export function refreshUpgradeVersions() {
  $("up-version-list").replaceChildren(...agentVersionList().map((v) => el("option", { value: v.version })));
  if (!versionTyped && currentAgentVersion()) $("up-version").value = currentAgentVersion();
}

// --- the form ---------------------------------------------------------------------------

const mode = () => (["agents", "tags"].find((m) => $(m === "agents" ? "up-by-names" : "up-by-tags").checked) ?? "all");
const splitNames = (text) => text.split(/[\s,]+/).filter(Boolean);

function renderTargets() {
  const m = mode();
  $("up-targets-row").hidden = m === "all";
  $("up-targets").placeholder = m === "agents" ? "web-01, web-02" : "web, eu-west";
  renderMatches();
}

// What the names or tags typed so far come to, from the agents list.
function renderMatches() {
  const m = mode();
  const agents = agentList();
  let text = "";
  if (m === "agents") {
    const names = splitNames($("up-targets").value);
    const unknown = names.filter((n) => !agents.some((a) => a.name === n));
    text = unknown.length ? `not an agent: ${unknown.join(", ")}` : "";
  } else if (m === "tags") {
    const { tags, error } = parseTags($("up-targets").value);
    if (error) text = error;
    else if (tags.length) {
      const matching = agents.filter((a) => tags.every((t) => (a.tags ?? []).includes(t)));
      text = matching.length ? `${matching.length} agent${matching.length > 1 ? "s" : ""}: ${matching.map((a) => a.name).join(", ")}` : "no agent carries them";
    }
  }
  $("up-target-matches").textContent = text;
}

// The request's body, or {error} said before anything is sent.
function readForm() {
  const version = $("up-version").value.trim();
  if (!version) return { error: "Version: choose or type an uploaded agent version." };
  const body = { version };
  const m = mode();
  if (m === "agents") {
    const names = splitNames($("up-targets").value);
    if (names.length === 0) return { error: "Agents: name at least one agent (comma-separated)." };
    body.agents = names;
  } else if (m === "tags") {
    const { tags, error } = parseTags($("up-targets").value);
    if (error) return { error: `Tags: ${error}.` };
    if (tags.length === 0) return { error: "Tags: give at least one tag." };
    body.tags = tags;
  }
  const batch = $("up-batch").value.trim();
  if (/^\d+$/.test(batch)) body.batchSize = Number(batch);
  else if (/^\d+%$/.test(batch)) body.batchSize = batch;
  else if (batch) return { error: "Batch size: a count such as 2, or a share such as 25%." };
  return { body };
}

async function start() {
  const message = $("upgrade-message");
  const { body, error } = readForm();
  if (error) return say(message, error);
  if (posting) return;
  posting = true;
  $("upgrade-submit").disabled = true;
  say(message, "");
  try {
    const r = await post("/api/v1/agents/upgrade", body);
    const count = r.waves.reduce((n, w) => n + w.length, 0);
    say(message, `Upgrade to ${r.version} started: ${count} agent${count > 1 ? "s" : ""} in ${r.waves.length} wave${r.waves.length > 1 ? "s" : ""} (${r.waves.map((w) => w.join(", ")).join(" | ")}).`, "ok");
    const ids = new Map(agentList().map((a) => [a.name, a.id]));
    staleDetails((r.waves[0] ?? []).map((n) => ids.get(n)).filter(Boolean));
    await loadUpgradeRollouts();
  } catch (err) {
    if (err instanceof AuthError) return hooks.refused(err);
    say(message, `Cannot start the upgrade${err.status ? ` (HTTP ${err.status})` : ""}: ${err.message}`);
  } finally {
    posting = false;
    $("upgrade-submit").disabled = false;
  }
}

// --- the list ---------------------------------------------------------------------------

// The agents of a running rollout's current wave (once per wave) and of one that just
// ended are read again at the next poll.
function markWaves() {
  for (const r of rollouts) {
    const key = `${r.id}:${r.currentWave}:${r.state}`;
    if (seen.has(key)) continue;
    seen.add(key);
    if (r.state === "running" || seen.has(`${r.id}:${r.currentWave}:running`)) staleDetails(r.waves[r.currentWave - 1] ?? []);
  }
}

function renderRollouts() {
  const names = new Map(agentList().map((a) => [a.id, a.name]));
  const named = (ids) => ids.map((id) => names.get(id) ?? id);
  $("upgrade-rollouts").hidden = rollouts.length === 0;
  $("upgrade-rollouts-empty").hidden = rollouts.length > 0;
  reconcile($("upgrade-rollouts").tBodies[0], rollouts, (r) => r.id,
    (r) => JSON.stringify([r, r.waves.map(named), ago(r.createdAt)]), (r) => rolloutRow(r, named));
}

function progress(r) {
  const n = r.waves.length;
  if (r.state === "succeeded") return `${n} of ${n} wave${n > 1 ? "s" : ""} done`;
  return `${r.state === "stopped" ? "stopped at " : ""}wave ${r.currentWave} of ${n}`;
}

function waveState(r, wave) {
  if (r.state === "succeeded" || wave < r.currentWave) return "done";
  if (wave > r.currentWave) return "later";
  return r.state === "stopped" ? "failed" : "running";
}

function rolloutRow(r, named) {
  return el("tr", { "data-rollout": r.id, "data-state": r.state },
    el("td", { class: "name mono", text: r.version }),
    el("td", { class: "state" }, badge(r.state), r.reason ? el("span", { class: "reason", text: r.reason }) : null),
    el("td", { class: "waves" },
      el("span", { class: "up-progress", text: progress(r) }),
      el("ol", { class: "up-waves" }, ...r.waves.map((ids, i) => {
        const state = waveState(r, i + 1);
        return el("li", { class: `up-wave w-${state}`, "data-wave": i + 1, "data-wave-state": state, title: state === "later" ? "not started" : state },
          el("span", { class: "wave-names", text: named(ids).join(", ") }));
      }))),
    el("td", { class: "started", title: when(r.createdAt) }, ago(r.createdAt)),
  );
}
