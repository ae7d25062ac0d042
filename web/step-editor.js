// The steps of the "New deployment" form: shell steps (a command) and plug-in steps
// (plug-in, version, step, and the step's inputs as a form generated from its manifest:
// a text, number or checkbox field by type, required ones marked, defaults filled in, a
// secret input offering the secrets by name). Steps can be moved up and down and removed.
// Required inputs are only marked, not enforced here: the server's 422 says what is
// missing, in its own words.
import { AuthError } from "./api.js";
import { el } from "./dom.js";
import { getManifest, pluginList } from "./plugins.js";
import { secretNames } from "./secrets.js";

let hooks = { refused: () => {} };
let fieldIds = 0;
const pluginSteps = new WeakMap(); // li → { manifest, seq, key: the "id@version" read }

export function initStepEditor(h) {
  hooks = h;
}

const secretExpression = (name) => `\${{ secrets.${name} }}`;

// "step N" with the first N no other step of the list is called.
function freshName(list) {
  const used = new Set([...list.querySelectorAll(".nd-step-name")].map((i) => i.value.trim()));
  let n = list.children.length + 1;
  while (used.has(`step ${n}`)) n++;
  return `step ${n}`;
}

function commonFields(list, kind) {
  return [
    el("span", { class: `step-kind k-${kind}`, text: kind === "plugin" ? "plug-in" : "shell" }),
    el("input", { class: "nd-step-name", "aria-label": "Step name", placeholder: "name", maxlength: 200, value: freshName(list) }),
  ];
}

function tailFields(list, item) {
  const move = (up) => {
    const other = up ? item.previousElementSibling : item.nextElementSibling;
    if (!other) return;
    if (up) list.insertBefore(item, other);
    else list.insertBefore(other, item);
  };
  return [
    el("input", { class: "nd-step-timeout", type: "number", min: 1, "aria-label": "Timeout in seconds", placeholder: "timeout s" }),
    el("label", { class: "check", title: "Re-run this step if its fate is unknown (the machine rebooted while it ran)" },
      el("input", { class: "nd-step-retry", type: "checkbox" }), " safe to re-run"),
    el("span", { class: "step-moves" },
      el("button", { type: "button", class: "quiet nd-step-up", "aria-label": "Move this step up", title: "Move up", onclick: () => move(true) }, "↑"),
      el("button", { type: "button", class: "quiet nd-step-down", "aria-label": "Move this step down", title: "Move down", onclick: () => move(false) }, "↓"),
      el("button", { type: "button", class: "quiet nd-step-remove", "aria-label": "Remove this step", onclick: () => item.remove() }, "Remove")),
  ];
}

export function addShellStep(list) {
  const item = el("li", { class: "step-editor", "data-type": "shell" });
  item.append(
    el("div", { class: "step-line" },
      ...commonFields(list, "shell"),
      el("input", { class: "nd-step-command mono", "aria-label": "Shell command", placeholder: "shell command, e.g. ./deploy.sh", required: true }),
      ...tailFields(list, item)),
  );
  list.append(item);
  return item;
}

export function addPluginStep(list) {
  const item = el("li", { class: "step-editor plugin-step", "data-type": "plugin" });
  const plugin = el("select", { class: "nd-plugin", "aria-label": "Plug-in" });
  const version = el("select", { class: "nd-plugin-version", "aria-label": "Plug-in version" });
  const step = el("select", { class: "nd-plugin-step", "aria-label": "Plug-in step" });
  plugin.addEventListener("change", () => {
    fillVersions(item);
    loadManifest(item);
  });
  version.addEventListener("change", () => loadManifest(item));
  step.addEventListener("change", () => renderInputs(item));
  item.append(
    el("div", { class: "step-line" }, ...commonFields(list, "plugin"), plugin, version, step, ...tailFields(list, item)),
    el("p", { class: "nd-plugin-about muted" }),
    el("div", { class: "nd-inputs" }),
  );
  pluginSteps.set(item, { manifest: null, seq: 0, key: "" });
  list.append(item);
  fillPlugins(item);
  fillVersions(item);
  return item;
}

// The plug-in and secret choices follow the lists of the panels; what was chosen stays.
export function refreshChoices(list) {
  for (const item of list.querySelectorAll("li.plugin-step")) {
    fillPlugins(item);
    fillVersions(item);
    // What was chosen is gone, or "latest" now means another version: read it again.
    if (wanted(item) !== pluginSteps.get(item).key) loadManifest(item);
    for (const select of item.querySelectorAll(".nd-secret-choice")) fillSecrets(select);
  }
}

function replaceOptions(select, options) {
  const sig = JSON.stringify(options);
  if (select.dataset.sig === sig) return;
  select.dataset.sig = sig;
  const value = select.value;
  select.replaceChildren(...options.map(([v, label]) => el("option", { value: v }, label)));
  if (options.some(([v]) => v === value)) select.value = value;
}

function fillPlugins(item) {
  const plugins = pluginList();
  const select = item.querySelector(".nd-plugin");
  replaceOptions(select, [["", plugins.length ? "choose a plug-in…" : "no plug-ins uploaded"], ...plugins.map((p) => [p.id, `${p.id} — ${p.name}`])]);
}

function fillVersions(item) {
  const id = item.querySelector(".nd-plugin").value;
  const p = pluginList().find((x) => x.id === id);
  replaceOptions(item.querySelector(".nd-plugin-version"), p ? [["", `latest (${p.latest})`], ...p.versions.map((v) => [v, v])] : [["", "latest"]]);
}

function fillSecrets(select) {
  const names = secretNames();
  replaceOptions(select, [["", names.length ? "use a secret…" : "no secrets yet"], ...names.map((n) => [n, n])]);
}

function about(item, text) {
  item.querySelector(".nd-plugin-about").textContent = text;
}

// "id@version" of the manifest the step's choices name ("" when no plug-in is chosen).
function wanted(item) {
  const id = item.querySelector(".nd-plugin").value;
  const p = pluginList().find((x) => x.id === id);
  return p ? `${id}@${item.querySelector(".nd-plugin-version").value || p.latest}` : "";
}

async function loadManifest(item) {
  const st = pluginSteps.get(item);
  const seq = ++st.seq;
  st.key = wanted(item);
  st.manifest = null;
  if (!st.key) {
    fillSteps(item);
    return;
  }
  const [id, version] = st.key.split("@");
  about(item, `Loading ${id}@${version}…`);
  try {
    const manifest = await getManifest(id, version);
    if (st.seq !== seq) return;
    st.manifest = manifest;
    fillSteps(item);
  } catch (err) {
    if (err instanceof AuthError) return hooks.refused(err);
    if (st.seq !== seq) return;
    fillSteps(item);
    about(item, `Cannot read ${id}@${version}: ${err.message}`);
  }
}

function fillSteps(item) {
  const manifest = pluginSteps.get(item).manifest;
  replaceOptions(item.querySelector(".nd-plugin-step"), manifest ? manifest.steps.map((s) => [s.name, s.name]) : [["", "step"]]);
  renderInputs(item);
}

function renderInputs(item) {
  const manifest = pluginSteps.get(item).manifest;
  const box = item.querySelector(".nd-inputs");
  // Values already typed carry over to an input of the same name and type of the same
  // plug-in (another version, another of its steps).
  const typed = new Map(box.dataset.plugin === manifest?.id
    ? [...box.querySelectorAll(".nd-input")].map((d) => [`${d.dataset.input}:${d.dataset.type}`, fieldValue(d)])
    : []);
  const step = manifest?.steps.find((s) => s.name === item.querySelector(".nd-plugin-step").value);
  if (!step) {
    box.replaceChildren();
    delete box.dataset.plugin;
    if (!manifest) about(item, "");
    return;
  }
  box.dataset.plugin = manifest.id;
  about(item, `${manifest.id}@${manifest.version} · ${step.name}${step.description ? ` — ${step.description}` : ""}`);
  box.replaceChildren(...(step.inputs ?? []).map((def) => inputField(def, typed.get(`${def.name}:${def.type ?? "string"}`))));
  if ((step.inputs ?? []).length === 0) box.append(el("p", { class: "muted", text: "This step takes no inputs." }));
}

function inputField(def, typed) {
  const type = def.type ?? "string";
  const id = `nd-input-${++fieldIds}`;
  const value = typed !== undefined ? typed : def.default;
  let control;
  if (type === "boolean") control = el("input", { id, class: "nd-input-value", type: "checkbox", checked: value === true });
  else control = el("input", {
    id, class: `nd-input-value${type === "string" ? " mono" : ""}`, type: type === "number" ? "number" : "text", step: type === "number" ? "any" : null,
    value: value === undefined ? null : String(value), "aria-required": def.required ? "true" : null,
    placeholder: def.secret ? secretExpression("NAME") : null, autocomplete: "off", spellcheck: "false",
  });
  let pick = null;
  if (def.secret) {
    pick = el("select", { class: "nd-secret-choice", "aria-label": `Secret for ${def.name}` });
    fillSecrets(pick);
    pick.addEventListener("change", () => {
      if (pick.value) control.value = secretExpression(pick.value);
    });
  }
  return el("div", { class: `nd-input${def.required ? " required" : ""}`, "data-input": def.name, "data-type": type },
    el("label", { for: id },
      el("span", { class: "mono input-name", text: def.name }),
      el("span", { class: "input-type", text: type }),
      def.required ? el("span", { class: "input-required", text: "required" }) : null,
      def.secret ? el("span", { class: "input-secret", text: "secret" }) : null),
    control, pick,
    def.description ? el("span", { class: "hint-inline muted", text: def.description }) : null,
  );
}

function fieldValue(div) {
  const input = div.querySelector(".nd-input-value");
  if (div.dataset.type === "boolean") return input.checked;
  if (div.dataset.type === "number") return input.value.trim() === "" ? undefined : Number(input.value);
  return input.value;
}

// --- reading ---------------------------------------------------------------------------

export function readSteps(list) {
  const steps = [];
  const items = [...list.children];
  for (let n = 0; n < items.length; n++) {
    const li = items[n];
    const name = li.querySelector(".nd-step-name").value.trim();
    const which = `Step ${n + 1}${name ? ` (${name})` : ""}`;
    if (!name) return { error: `${which} needs a name.` };
    let step;
    if (li.dataset.type === "plugin") {
      const r = readPluginStep(li, which);
      if (r.error) return r;
      step = { name, type: "plugin", ...r.step };
    } else {
      const command = li.querySelector(".nd-step-command").value;
      if (!command.trim()) return { error: `${which} needs a command.` };
      step = { name, type: "shell", command };
    }
    const timeout = li.querySelector(".nd-step-timeout").value.trim();
    if (timeout) step.timeoutSeconds = Number(timeout);
    if (li.querySelector(".nd-step-retry").checked) step.retry = "safe";
    steps.push(step);
  }
  if (steps.length === 0) return { error: "Add at least one step." };
  return { steps };
}

function readPluginStep(li, which) {
  const plugin = li.querySelector(".nd-plugin").value;
  if (!plugin) return { error: `${which}: choose a plug-in.` };
  const manifest = pluginSteps.get(li).manifest;
  if (!manifest) return { error: `${which}: the plug-in's steps are not loaded yet.` };
  const stepName = li.querySelector(".nd-plugin-step").value;
  const step = { plugin };
  const version = li.querySelector(".nd-plugin-version").value;
  if (version) step.version = version;
  step.step = stepName;
  const inputs = {};
  for (const div of li.querySelectorAll(".nd-input")) {
    const v = fieldValue(div);
    if (v === undefined || v === "") continue; // left empty: the plug-in's default, or the server says it is required
    if (typeof v === "number" && !Number.isFinite(v)) return { error: `${which}: ${div.dataset.input} must be a number.` };
    inputs[div.dataset.input] = v;
  }
  step.inputs = inputs;
  return { step };
}
