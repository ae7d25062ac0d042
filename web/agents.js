// Agents: the list with live status, revoking one (admin, two clicks), and creating a
// registration token for a new one (shown once, with the command that uses it).
import { AuthError, del, enc, post } from "./api.js";
import { $, ago, badge, confirmAction, copyText, el, reconcile, say, when } from "./dom.js";

let agents = [];
let asking = null; // id of the agent whose revoke awaits confirmation
let revoking = null; // id of the agent being revoked
let hooks = { refused: () => {}, changed: () => {} };

export const agentList = () => agents;
export const agentStatus = () => new Map(agents.map((a) => [a.name, a.status]));

export function initAgents(h) {
  hooks = h;
  $("reg-token-new").addEventListener("click", newRegistrationToken);
  $("reg-token-copy").addEventListener("click", (e) => copyText(e.currentTarget, $("reg-token-value")));
  $("reg-token-hint-copy").addEventListener("click", (e) => copyText(e.currentTarget, $("reg-token-hint")));
  $("reg-token-done").addEventListener("click", clearRegistrationToken);
}

export function resetAgents() {
  agents = [];
  asking = revoking = null;
  clearRegistrationToken();
  say($("agents-message"), "");
  $("agents").tBodies[0].replaceChildren();
}

export function renderAgents(list) {
  agents = [...list].sort((x, y) => x.name.localeCompare(y.name));
  if (asking && !agents.some((a) => a.id === asking)) asking = null;
  $("agent-count").textContent = agents.length ? `${agents.filter((a) => a.status === "online").length}/${agents.length} online` : "";
  $("agents-empty").hidden = agents.length > 0;
  $("agents").hidden = agents.length === 0;
  reconcile($("agents").tBodies[0], agents, (a) => a.id,
    (a) => JSON.stringify([a, a.lastSeenAt ? ago(a.lastSeenAt) : "", asking === a.id, revoking === a.id]), agentRow);
}

const rerender = () => renderAgents(agents);

function agentRow(a) {
  return el("tr", { "data-agent": a.name, "data-status": a.status },
    el("td", { class: "name", text: a.name }),
    el("td", { class: "status" }, badge(a.status)),
    el("td", { class: "mono", text: a.version ?? "—" }),
    el("td", { title: when(a.lastSeenAt) }, a.lastSeenAt ? ago(a.lastSeenAt) : "never"),
    el("td", { class: "actions" }, confirmAction({
      label: "Revoke",
      question: `Revoke ${a.name}? Its credential stops working and its unfinished steps are canceled.`,
      confirmLabel: "Revoke agent",
      asking: asking === a.id,
      busy: revoking === a.id,
      onAsk: () => { asking = a.id; rerender(); },
      onCancel: () => { asking = null; rerender(); },
      onConfirm: () => revoke(a),
    })),
  );
}

async function revoke(a) {
  revoking = a.id;
  rerender();
  try {
    await del(`/api/v1/agents/${enc(a.id)}`);
    agents = agents.filter((x) => x.id !== a.id);
    say($("agents-message"), `Agent ${a.name} is revoked; its name cannot be registered again.`, "ok");
    hooks.changed();
  } catch (err) {
    if (err instanceof AuthError) return hooks.refused(err);
    say($("agents-message"), `Cannot revoke ${a.name}: ${err.message}`);
  } finally {
    if (asking === a.id) asking = null;
    revoking = null;
    rerender();
  }
}

async function newRegistrationToken() {
  const button = $("reg-token-new");
  button.disabled = true;
  say($("agents-message"), "");
  try {
    const { token } = await post("/api/v1/registration-tokens", {});
    $("reg-token-value").textContent = token;
    $("reg-token-hint").textContent =
      `npx outpost-agent register --server ${location.origin} --token-file registration-token --name <agent-name> --home /var/lib/outpost-agent`;
    $("reg-token").hidden = false;
  } catch (err) {
    if (err instanceof AuthError) return hooks.refused(err);
    say($("agents-message"), `Cannot create a registration token: ${err.message}`);
  } finally {
    button.disabled = false;
  }
}

function clearRegistrationToken() {
  $("reg-token").hidden = true;
  $("reg-token-value").textContent = "";
  $("reg-token-hint").textContent = "";
}
