// Agents: the list with live status, version, config (desired against applied), tags
// and properties; editing an agent's tags, properties, concurrency and log level (admin),
// restarting it (admin, two clicks: agent-controls.js), upgrading it (admin, a version
// and a confirmation: agent-upgrade.js, which also shows its upgrade's state), revoking
// one (admin, two clicks).
// The registration panel is install-command.js.
import { AuthError, del, enc, patch } from "./api.js";
import { $, ago, badge, confirmAction, el, reconcile, say, when } from "./dom.js";
import { formatLines, formatTags, parseLines, parseTags } from "./kv.js";
import {
  configCell, configFields, controlsSig, describeChange, initAgentControls, noteSaved, refreshDetails, replacedNote,
  resetAgentControls, restartControl, restartNote,
} from "./agent-controls.js";
import { initAgentUpgrade, resetAgentUpgrade, upgradeAsking, upgradeControl, upgradeNote, upgradeSig } from "./agent-upgrade.js";

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
  initAgentControls({ refused: (err) => hooks.refused(err), rerender: () => rerender() });
  initAgentUpgrade({ refused: (err) => hooks.refused(err), rerender: () => rerender() });
}

export function resetAgents() {
  agents = [];
  asking = revoking = editing = null;
  saving = false;
  resetAgentControls();
  resetAgentUpgrade();
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
    (i) => (i.edit ? "edit" : rowSig(i.a)),
    (i) => (i.edit ? editRow(i.a) : agentRow(i.a)));
  refreshDetails(agents);
}

const rerender = () => renderAgents(agents);

// While an agent's upgrade is asked, its row's signature leaves out what every poll
// changes (last seen): the open version choice stays as it is, as the Edit row does.
function rowSig(a) {
  const own = [asking === a.id, revoking === a.id, editing === a.id, controlsSig(a), upgradeSig(a)];
  if (upgradeAsking(a)) return JSON.stringify(["upgrade-asking", a.status, a.version, ...own]);
  return JSON.stringify([a, a.lastSeenAt ? ago(a.lastSeenAt) : "", ...own]);
}

function agentRow(a) {
  return el("tr", { "data-agent": a.name, "data-status": a.status },
    el("td", { class: "name" }, el("span", { class: "agent-name", text: a.name }), replacedNote(a)),
    el("td", { class: "status" }, badge(a.status), restartNote(a)),
    el("td", { class: "version" }, el("span", { class: "mono running-version", text: a.version ?? "—" }), upgradeNote(a)),
    configCell(a),
    el("td", { class: "tags" }, ...(a.tags ?? []).map((t) => el("span", { class: "tag", text: t }))),
    el("td", { class: "properties" }, ...Object.entries(a.properties ?? {}).map(([k, v]) =>
      el("span", { class: "prop mono", "data-prop": k }, el("span", { class: "k", text: k }), "=", el("span", { class: "v", text: v })))),
    el("td", { title: when(a.lastSeenAt) }, a.lastSeenAt ? ago(a.lastSeenAt) : "never"),
    el("td", { class: "edit admin-only" }, el("button", {
      type: "button", class: "quiet agent-edit-open", "aria-expanded": String(editing === a.id),
      onclick: () => { editing = editing === a.id ? null : a.id; rerender(); focusEdit(); },
    }, "Edit"), " ", restartControl(a), " ", upgradeControl(a)),
    el("td", { class: "actions admin-only" }, confirmAction({
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
  const config = configFields(a);
  // novalidate: an out-of-range concurrency is said in the message line, like any other mistake.
  const form = el("form", { class: "agent-edit-form", novalidate: true },
    el("div", { class: "ae-field" }, el("label", { for: "ae-tags", text: "Tags (comma-separated)" }), tags),
    el("div", { class: "ae-field" }, el("label", { for: "ae-props", text: "Properties (key=value, one a line)" }), props),
    ...config.fields,
    message,
    el("div", { class: "buttons" },
      el("button", { type: "submit", class: "ae-save" }, "Save"),
      el("button", { type: "button", class: "quiet", onclick: () => { editing = null; rerender(); } }, "Cancel")),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    save(a, tags.value, props.value, config.read(), message, form.querySelector(".ae-save"));
  });
  return el("tr", { class: "agent-edit", "data-agent-edit": a.name }, el("td", { colspan: 9 }, form));
}

function focusEdit() {
  $("ae-tags")?.focus();
}

// Tags and properties are sent whole; concurrency and log level only when they differ
// from the desired config (the agent gets them as a command, and applies them itself).
async function save(a, tagText, propText, config, message, button) {
  const tags = parseTags(tagText);
  if (tags.error) return say(message, `Tags: ${tags.error}.`);
  const props = parseLines(propText);
  if (props.error) return say(message, `Properties: ${props.error}.`);
  if (config.error) return say(message, config.error);
  if (saving) return;
  saving = true;
  button.disabled = true;
  say(message, "");
  try {
    const { config: saved, ...view } = await patch(`/api/v1/agents/${enc(a.id)}`, { tags: tags.tags, properties: props.properties, ...config.change });
    agents = agents.map((x) => (x.id === a.id ? { ...x, ...view } : x));
    noteSaved(a, saved);
    editing = null;
    const changed = describeChange(config.change);
    say($("agents-message"), changed
      ? `Saved the tags and properties of ${a.name}, and asked it for ${changed}: pending until the agent says it applies ${Object.keys(config.change).length > 1 ? "them" : "it"}.`
      : `Tags and properties of ${a.name} saved.`, "ok");
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
