// "New deployment": a form for POST /api/v1/deployments. The targets are named either as
// agents or as tags (every live agent carrying all of them); the deployment may carry
// properties and a rollout (a batch size, a count or a percentage, and whether a failed
// wave stops the rest); the steps are shell or plug-in steps (step-editor.js), run in
// order by every target. The request carries an Idempotency-Key, kept for as long as the
// body stays the same, so submitting again after a lost answer cannot deploy twice. The
// server's refusals (422: an unknown plug-in, a missing input…) are shown as it words them.
import { AuthError, post } from "./api.js";
import { agentList } from "./agents.js";
import { $, el, say } from "./dom.js";
import { addRow, parseTags, readRows } from "./kv.js";
import { addPluginStep, addShellStep, readSteps, refreshChoices } from "./step-editor.js";

let hooks = { refused: () => {}, created: () => {}, opened: () => {} };
let attempt = null; // { key, body }: the last body sent and its key

export function initNewDeployment(h) {
  hooks = h;
  $("new-deployment-open").addEventListener("click", () => (isOpen() ? closeForm() : openForm()));
  $("nd-cancel").addEventListener("click", closeForm);
  $("nd-add-step").addEventListener("click", () => addShellStep($("nd-steps")).querySelector(".nd-step-command").focus());
  $("nd-add-plugin-step").addEventListener("click", () => addPluginStep($("nd-steps")).querySelector(".nd-plugin").focus());
  $("nd-add-prop").addEventListener("click", () => addRow($("nd-props")).querySelector("input").focus());
  for (const radio of document.querySelectorAll('input[name="nd-target-mode"]')) radio.addEventListener("change", showTargetMode);
  $("nd-tags").addEventListener("input", renderTagMatches);
  $("new-deployment").addEventListener("submit", (e) => {
    e.preventDefault();
    submit();
  });
}

const isOpen = () => !$("new-deployment").hidden;
const byTags = () => $("nd-by-tags").checked;

function openForm() {
  $("new-deployment").hidden = false;
  $("new-deployment-open").setAttribute("aria-expanded", "true");
  if ($("nd-steps").children.length === 0) addShellStep($("nd-steps"));
  showTargetMode();
  renderAgentChoices();
  hooks.opened(); // the plug-ins and secrets to choose from are read again
  $("nd-name").focus();
}

export function closeForm() {
  $("new-deployment").hidden = true;
  $("new-deployment-open").setAttribute("aria-expanded", "false");
  $("new-deployment").reset();
  $("nd-steps").replaceChildren();
  $("nd-props").replaceChildren();
  $("nd-agent-list").replaceChildren();
  $("nd-tag-matches").textContent = "";
  delete $("nd-agent-list").dataset.sig;
  say($("nd-message"), "");
  attempt = null;
}

function showTargetMode() {
  $("nd-agents").hidden = byTags();
  $("nd-tags-row").hidden = !byTags();
  renderTagMatches();
}

// The agents to choose from follow the agent list; what was ticked stays ticked.
export function renderAgentChoices() {
  if (!isOpen()) return;
  renderTagMatches();
  refreshChoices($("nd-steps"));
  const box = $("nd-agent-list");
  const agents = agentList();
  const sig = JSON.stringify(agents.map((a) => [a.name, a.status, a.tags ?? []]));
  if (box.dataset.sig === sig) return; // unchanged: leave focus and ticks alone
  box.dataset.sig = sig;
  const ticked = new Set([...box.querySelectorAll("input:checked")].map((i) => i.value));
  box.replaceChildren(...agents.map((a) =>
    el("label", { class: "check" },
      el("input", { type: "checkbox", name: "agent", value: a.name, checked: ticked.has(a.name) }),
      ` ${a.name} `,
      el("span", { class: `dot s-${a.status}`, title: a.status, text: a.status === "online" ? "●" : "○" })),
  ));
  if (agents.length === 0) box.append(el("span", { class: "muted", text: "No agents registered yet." }));
}

// The plug-ins or secrets changed (uploaded, deleted): the steps' choices follow.
export function refreshStepChoices() {
  if (isOpen()) refreshChoices($("nd-steps"));
}

// Which agents the tags name now, as the page last saw them (the server decides at creation).
function renderTagMatches() {
  const out = $("nd-tag-matches");
  if (!isOpen() || !byTags()) return (out.textContent = "");
  const { tags, error } = parseTags($("nd-tags").value);
  if (error) return (out.textContent = error);
  if (!tags.length) return (out.textContent = "Every agent carrying all these tags, e.g. web, eu-west");
  const matching = agentList().filter((a) => tags.every((t) => (a.tags ?? []).includes(t)));
  out.textContent = matching.length
    ? `Now: ${matching.map((a) => `${a.name}${a.status === "online" ? "" : " (offline)"}`).join(", ")}`
    : "No agent carries all these tags now.";
}

function readRollout() {
  const batch = $("nd-batch").value.trim();
  const stop = $("nd-stop-on-failure").checked;
  if (!batch) return stop ? { error: "Stopping on failure needs a batch size (the waves it stops between)." } : {};
  if (/^\d+$/.test(batch)) return { rollout: { batchSize: Number(batch), stopOnFailure: stop } };
  if (/^\d+%$/.test(batch)) return { rollout: { batchSize: batch, stopOnFailure: stop } };
  return { error: "The batch size is a number of agents (2) or a percentage (25%)." };
}

function readForm() {
  const body = {};
  const name = $("nd-name").value.trim();
  if (name) body.name = name;
  if (byTags()) {
    const { tags, error } = parseTags($("nd-tags").value);
    if (error) return { error: `Tags: ${error}.` };
    if (tags.length === 0) return { error: "Give at least one tag." };
    body.targets = { tags };
  } else {
    body.agents = [...$("nd-agent-list").querySelectorAll("input:checked")].map((i) => i.value);
    if (body.agents.length === 0) return { error: "Choose at least one agent." };
  }
  const props = readRows($("nd-props"));
  if (props.error) return { error: `Properties: ${props.error}.` };
  if (Object.keys(props.properties).length) body.properties = props.properties;
  const rollout = readRollout();
  if (rollout.error) return rollout;
  if (rollout.rollout) body.rollout = rollout.rollout;
  const steps = readSteps($("nd-steps"));
  if (steps.error) return steps;
  body.steps = steps.steps;
  return { body };
}

function newKey() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
}

async function submit() {
  const { body, error } = readForm();
  if (error) return say($("nd-message"), error);
  const json = JSON.stringify(body);
  if (attempt?.body !== json) attempt = { key: newKey(), body: json };
  const button = $("nd-submit");
  button.disabled = true;
  say($("nd-message"), "");
  try {
    const { id } = await post("/api/v1/deployments", body, { "idempotency-key": attempt.key });
    closeForm();
    say($("deployments-message"), `Deployment ${body.name ?? id.slice(0, 8)} created.`, "ok");
    hooks.created(id);
  } catch (err) {
    if (err instanceof AuthError) return hooks.refused(err);
    say($("nd-message"), `Cannot deploy: ${err.message}`);
  } finally {
    button.disabled = false;
  }
}
