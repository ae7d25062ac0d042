// Agents: the list with live status, tags and properties; editing an agent's tags and
// properties (admin), revoking one (admin, two clicks), and creating a registration
// token for a new one (shown once, with the command that uses it).
import { AuthError, del, enc, patch, post } from "./api.js";
import { $, ago, badge, confirmAction, copyText, el, reconcile, say, when } from "./dom.js";
import { formatLines, formatTags, parseLines, parseTags } from "./kv.js";

let agents = [];
let asking = null; // id of the agent whose revoke awaits confirmation
let revoking = null; // id of the agent being revoked
let editing = null; // id of the agent whose tags and properties are being edited
let saving = false;
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
  asking = revoking = editing = null;
  saving = false;
  clearRegistrationToken();
  say($("agents-message"), "");
  $("agents").tBodies[0].replaceChildren();
}

export function renderAgents(list) {
  agents = [...list].sort((x, y) => x.name.localeCompare(y.name));
  if (asking && !agents.some((a) => a.id === asking)) asking = null;
  if (editing && !agents.some((a) => a.id === editing)) editing = null;
  $("agent-count").textContent = agents.length ? `${agents.filter((a) => a.status === "online").length}/${agents.length} online` : "";
  $("agents-empty").hidden = agents.length > 0;
  $("agents").hidden = agents.length === 0;
  // The edit row's signature does not change while it is open: a poll leaves what is
  // being typed alone.
  const items = agents.flatMap((a) => (editing === a.id ? [{ a }, { a, edit: true }] : [{ a }]));
  reconcile($("agents").tBodies[0], items, (i) => (i.edit ? `edit:${i.a.id}` : i.a.id),
    (i) => (i.edit ? "edit" : JSON.stringify([i.a, i.a.lastSeenAt ? ago(i.a.lastSeenAt) : "", asking === i.a.id, revoking === i.a.id, editing === i.a.id])),
    (i) => (i.edit ? editRow(i.a) : agentRow(i.a)));
}

const rerender = () => renderAgents(agents);

function agentRow(a) {
  return el("tr", { "data-agent": a.name, "data-status": a.status },
    el("td", { class: "name", text: a.name }),
    el("td", { class: "status" }, badge(a.status)),
    el("td", { class: "mono", text: a.version ?? "—" }),
    el("td", { class: "tags" }, ...(a.tags ?? []).map((t) => el("span", { class: "tag", text: t }))),
    el("td", { class: "properties" }, ...Object.entries(a.properties ?? {}).map(([k, v]) =>
      el("span", { class: "prop mono", "data-prop": k }, el("span", { class: "k", text: k }), "=", el("span", { class: "v", text: v })))),
    el("td", { title: when(a.lastSeenAt) }, a.lastSeenAt ? ago(a.lastSeenAt) : "never"),
    el("td", { class: "edit admin-only" }, el("button", {
      type: "button", class: "quiet agent-edit-open", "aria-expanded": String(editing === a.id),
      onclick: () => { editing = editing === a.id ? null : a.id; rerender(); focusEdit(); },
    }, "Edit")),
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

function editRow(a) {
  const tags = el("input", { class: "ae-tags mono", id: "ae-tags", value: formatTags(a.tags), placeholder: "web, eu-west", autocomplete: "off", spellcheck: "false" });
  const props = el("textarea", { class: "ae-props mono", id: "ae-props", rows: 4, placeholder: "region=eu-west\nport=8080", spellcheck: "false" });
  props.value = formatLines(a.properties);
  const message = el("p", { class: "message", id: "ae-message", role: "status" });
  const form = el("form", { class: "agent-edit-form" },
    el("div", { class: "ae-field" }, el("label", { for: "ae-tags", text: "Tags (comma-separated)" }), tags),
    el("div", { class: "ae-field" }, el("label", { for: "ae-props", text: "Properties (key=value, one a line)" }), props),
    message,
    el("div", { class: "buttons" },
      el("button", { type: "submit", class: "ae-save" }, "Save"),
      el("button", { type: "button", class: "quiet", onclick: () => { editing = null; rerender(); } }, "Cancel")),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    saveLabels(a, tags.value, props.value, message, form.querySelector(".ae-save"));
  });
  return el("tr", { class: "agent-edit", "data-agent-edit": a.name }, el("td", { colspan: 8 }, form));
}

function focusEdit() {
  $("ae-tags")?.focus();
}

async function saveLabels(a, tagText, propText, message, button) {
  const tags = parseTags(tagText);
  if (tags.error) return say(message, `Tags: ${tags.error}.`);
  const props = parseLines(propText);
  if (props.error) return say(message, `Properties: ${props.error}.`);
  if (saving) return;
  saving = true;
  button.disabled = true;
  say(message, "");
  try {
    const view = await patch(`/api/v1/agents/${enc(a.id)}`, { tags: tags.tags, properties: props.properties });
    agents = agents.map((x) => (x.id === a.id ? { ...x, ...view } : x));
    editing = null;
    say($("agents-message"), `Tags and properties of ${a.name} saved.`, "ok");
    rerender();
    hooks.changed();
  } catch (err) {
    if (err instanceof AuthError) return hooks.refused(err);
    say(message, `Cannot save: ${err.message}`);
  } finally {
    saving = false;
    button.disabled = false;
  }
}

async function revoke(a) {
  revoking = a.id;
  rerender();
  try {
    await del(`/api/v1/agents/${enc(a.id)}`);
    agents = agents.filter((x) => x.id !== a.id);
    say($("agents-message"), `Agent ${a.name} is revoked; its machine can be registered again under this name with \`outpost-agent register --replace\`.`, "ok");
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
