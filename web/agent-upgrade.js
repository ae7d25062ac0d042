// One agent's upgrade (docs/agent-lifecycle.md §Upgrade): under its version, the state of
// its latest upgrade as the agent reports it (pending → downloading → verifying →
// switching → succeeded, or failed / rolled-back with the agent's reason) and when it
// changed; for an admin, the Upgrade control: the first click asks, with a choice of the
// uploaded versions (agent-versions.js), the second posts POST /api/v1/agents/:id/upgrade.
// The state then follows by polling the agent's detail (agent-controls.js).
import { AuthError, enc, post } from "./api.js";
import { $, ago, badge, el, say, when } from "./dom.js";
import { noteUpgrade, upgradeOf } from "./agent-controls.js";
import { agentVersionList, currentAgentVersion } from "./agent-versions.js";

const ENDS = ["succeeded", "rolled-back", "failed"];

let asking = null; // id of the agent whose upgrade awaits confirmation
let chosen = null; // the version chosen there
let busy = null; // id of the agent whose upgrade is being posted
let hooks = { refused: () => {}, rerender: () => {} };

export function initAgentUpgrade(h) {
  hooks = h;
}

export function resetAgentUpgrade() {
  asking = chosen = busy = null;
}

const versionNames = () => agentVersionList().map((v) => v.version);

export const upgradeAsking = (a) => asking === a.id;

// What the row shows from here: part of its signature, so a change redraws it (while
// the upgrade is asked, not the time: see agents.js).
export function upgradeSig(a) {
  const u = upgradeOf(a);
  return [asking === a.id, busy === a.id, versionNames().join(" "), u && asking !== a.id ? ago(u.updatedAt) : ""];
}

// Under the version: "→ 1.4.0 [downloading] 3 s ago", and the reason of a failure.
export function upgradeNote(a) {
  const u = upgradeOf(a);
  if (!u) return null;
  const ended = ENDS.includes(u.state);
  const title = `upgrade to ${u.version}: ${u.state}${ended ? "" : " (the agent reports each step)"}; since ${when(u.updatedAt)}`;
  return el("span", { class: `upgrade u-${u.state}`, "data-state": u.state, "data-version": u.version, title },
    el("span", { class: "u-to", text: `→ ${u.version}` }), " ", badge(u.state), " ",
    el("span", { class: "muted u-when", text: ago(u.updatedAt) }),
    u.reason && (u.state === "failed" || u.state === "rolled-back") ? el("span", { class: "u-reason", text: u.reason }) : null);
}

// Beside Edit and Restart (the cell is admin-only).
export function upgradeControl(a) {
  const versions = versionNames();
  if (asking !== a.id) {
    return el("span", { class: "agent-upgrade" }, el("button", {
      type: "button", class: "quiet agent-upgrade-open", disabled: versions.length === 0,
      title: versions.length ? "Upgrade this agent to an uploaded version" : "Upload an agent version first (Agent versions)",
      onclick: () => {
        asking = a.id;
        chosen = versions.includes(currentAgentVersion()) ? currentAgentVersion() : versions[0];
        hooks.rerender();
      },
    }, "Upgrade"));
  }
  if (!versions.includes(chosen)) chosen = versions[0] ?? null;
  const select = el("select", { class: "au-version", "aria-label": `Version to upgrade ${a.name} to`, disabled: busy === a.id },
    ...versions.map((v) => el("option", { value: v, selected: v === chosen }, v === a.version ? `${v} (running)` : v)));
  select.addEventListener("change", () => { chosen = select.value; });
  return el("span", { class: "agent-upgrade confirm" },
    el("span", { class: "question", text: `Upgrade ${a.name}${a.version ? ` (runs ${a.version})` : ""} to` }), select,
    el("span", { class: "question", text: "? It downloads, verifies and switches by itself; running steps keep running." }),
    el("button", { type: "button", class: "au-confirm", disabled: busy === a.id, onclick: () => upgrade(a, select.value) }, busy === a.id ? "…" : "Upgrade agent"),
    el("button", { type: "button", class: "quiet", disabled: busy === a.id, onclick: () => { asking = chosen = null; hooks.rerender(); } }, "Cancel"));
}

async function upgrade(a, version) {
  if (!version || busy) return;
  busy = a.id;
  hooks.rerender();
  try {
    const r = await post(`/api/v1/agents/${enc(a.id)}/upgrade`, { version });
    noteUpgrade(a, r.upgrade);
    say($("agents-message"), `Upgrade of ${r.name ?? a.name} to ${version} requested: the agent downloads, verifies and switches to it by itself${a.status === "online" ? "" : " when it is back online"}; its state shows under its version.`, "ok");
    if (asking === a.id) asking = chosen = null;
  } catch (err) {
    if (err instanceof AuthError) return hooks.refused(err);
    say($("agents-message"), `Cannot upgrade ${a.name}: ${err.message}`);
  } finally {
    busy = null;
    hooks.rerender();
  }
}
