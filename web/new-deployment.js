// "New deployment": a form for POST /api/v1/deployments. Every chosen agent runs all
// the steps in order. The request carries an Idempotency-Key, kept for as long as the
// body stays the same, so submitting again after a lost answer cannot deploy twice.
import { AuthError, post } from "./api.js";
import { agentList } from "./agents.js";
import { $, el, say } from "./dom.js";

let hooks = { refused: () => {}, created: () => {} };
let attempt = null; // { key, body }: the last body sent and its key

export function initNewDeployment(h) {
  hooks = h;
  $("new-deployment-open").addEventListener("click", () => (isOpen() ? closeForm() : openForm()));
  $("nd-cancel").addEventListener("click", closeForm);
  $("nd-add-step").addEventListener("click", () => addStep().querySelector("input").focus());
  $("new-deployment").addEventListener("submit", (e) => {
    e.preventDefault();
    submit();
  });
}

const isOpen = () => !$("new-deployment").hidden;

function openForm() {
  $("new-deployment").hidden = false;
  $("new-deployment-open").setAttribute("aria-expanded", "true");
  if ($("nd-steps").children.length === 0) addStep();
  renderAgentChoices();
  $("nd-name").focus();
}

export function closeForm() {
  $("new-deployment").hidden = true;
  $("new-deployment-open").setAttribute("aria-expanded", "false");
  $("new-deployment").reset();
  $("nd-steps").replaceChildren();
  $("nd-agent-list").replaceChildren();
  delete $("nd-agent-list").dataset.sig;
  say($("nd-message"), "");
  attempt = null;
}

// The agents to choose from follow the agent list; what was ticked stays ticked.
export function renderAgentChoices() {
  if (!isOpen()) return;
  const box = $("nd-agent-list");
  const agents = agentList();
  const sig = JSON.stringify(agents.map((a) => [a.name, a.status]));
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

function addStep() {
  const list = $("nd-steps");
  const n = list.children.length + 1;
  const item = el("li", { class: "step-editor" },
    el("input", { class: "nd-step-name", "aria-label": "Step name", placeholder: "name", maxlength: 200, value: `step ${n}` }),
    el("input", { class: "nd-step-command mono", "aria-label": "Shell command", placeholder: "shell command, e.g. ./deploy.sh", required: true }),
    el("input", { class: "nd-step-timeout", type: "number", min: 1, "aria-label": "Timeout in seconds", placeholder: "timeout s" }),
    el("label", { class: "check", title: "Re-run this step if its fate is unknown (the machine rebooted while it ran)" },
      el("input", { class: "nd-step-retry", type: "checkbox" }), " safe to re-run"),
    el("button", { type: "button", class: "quiet", "aria-label": "Remove this step", onclick: () => { item.remove(); } }, "Remove"),
  );
  list.append(item);
  return item;
}

function readForm() {
  const agents = [...$("nd-agent-list").querySelectorAll("input:checked")].map((i) => i.value);
  const steps = [...$("nd-steps").children].map((li) => {
    const timeout = li.querySelector(".nd-step-timeout").value.trim();
    const step = { name: li.querySelector(".nd-step-name").value.trim(), type: "shell", command: li.querySelector(".nd-step-command").value };
    if (timeout) step.timeoutSeconds = Number(timeout);
    if (li.querySelector(".nd-step-retry").checked) step.retry = "safe";
    return step;
  });
  const body = { agents, steps };
  const name = $("nd-name").value.trim();
  if (name) body.name = name;
  if (agents.length === 0) return { error: "Choose at least one agent." };
  if (steps.length === 0) return { error: "Add at least one step." };
  if (steps.some((s) => !s.name || !s.command.trim())) return { error: "Every step needs a name and a command." };
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
