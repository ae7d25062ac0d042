// Plug-ins panel: the packages the server holds (one row per plug-in, its versions), one
// of them opened to show a version's steps with their inputs and outputs; uploading a
// package (.tar.gz, sent as its bytes) and deleting a version (two clicks). Manifests
// are read once per version and kept (a version's content never changes; a deleted one
// is forgotten).
import { AuthError, del, enc, get, upload } from "./api.js";
import { $, confirmAction, el, reconcile, say } from "./dom.js";

let plugins = [];
const manifests = new Map(); // "id@version" → { promise, value, error }
let opened = null; // { id, version }
let asking = null; // "id@version" whose delete awaits confirmation
let deleting = null;
let hooks = { refused: () => {}, changed: () => {} };

const versionsOf = (p) => (p.versions ?? []).map((v) => (typeof v === "string" ? v : v.version));
export const pluginList = () => plugins.map((p) => ({ ...p, versions: versionsOf(p) }));

export function initPlugins(h) {
  hooks = h;
  $("plugin-upload").addEventListener("submit", (e) => {
    e.preventDefault();
    uploadPackage();
  });
}

export function resetPlugins() {
  plugins = [];
  manifests.clear();
  opened = asking = deleting = null;
  $("plugin-upload").reset();
  say($("plugins-message"), "");
  $("plugins").tBodies[0].replaceChildren();
}

export async function loadPlugins() {
  try {
    const body = await get("/api/v1/plugins");
    render(body.plugins);
  } catch (err) {
    if (err instanceof AuthError) throw err;
    say($("plugins-message"), `Cannot list the plug-ins: ${err.message}`);
  }
}

// A version's manifest ({id, version, name, description, steps, sha256}), read once.
export function getManifest(id, version) {
  const key = `${id}@${version}`;
  let entry = manifests.get(key);
  if (!entry) {
    entry = { value: null, error: null, promise: null };
    entry.promise = get(`/api/v1/plugins/${enc(id)}/${enc(version)}`).then(
      (m) => { entry.value = m; return m; },
      (err) => { manifests.delete(key); throw err; },
    );
    manifests.set(key, entry);
  }
  return entry.promise;
}

function render(list) {
  plugins = [...list].sort((a, b) => a.id.localeCompare(b.id));
  if (opened) {
    const p = plugins.find((x) => x.id === opened.id);
    if (!p) opened = null;
    else if (!versionsOf(p).includes(opened.version)) opened.version = p.latest;
  }
  $("plugin-count").textContent = plugins.length ? String(plugins.length) : "";
  $("plugins-empty").hidden = plugins.length > 0;
  $("plugins").hidden = plugins.length === 0;
  const items = plugins.flatMap((p) => (opened?.id === p.id ? [{ p }, { p, detail: true }] : [{ p }]));
  reconcile($("plugins").tBodies[0], items, (i) => (i.detail ? `detail:${i.p.id}` : i.p.id), sig, (i) => (i.detail ? detailRow(i.p) : pluginRow(i.p)));
  hooks.changed();
}

const rerender = () => render(plugins);

function sig(i) {
  if (!i.detail) return JSON.stringify([i.p, opened?.id === i.p.id]);
  const key = `${i.p.id}@${opened.version}`;
  const m = manifests.get(key);
  return JSON.stringify([i.p, opened.version, m ? (m.value ? "ready" : "loading") : "none", asking === key, deleting === key]);
}

function pluginRow(p) {
  const isOpen = opened?.id === p.id;
  return el("tr", { "data-plugin": p.id },
    el("td", { class: "name" },
      el("button", { type: "button", class: "link dep-open", "aria-expanded": String(isOpen), onclick: () => toggle(p) }, p.id),
      el("span", { class: "plugin-name muted", text: p.name })),
    el("td", { class: "description", text: p.description ?? "" }),
    el("td", { class: "mono latest", text: p.latest }),
    el("td", { class: "mono versions", text: versionsOf(p).join(", ") }),
  );
}

function toggle(p) {
  opened = opened?.id === p.id ? null : { id: p.id, version: p.latest };
  asking = null;
  rerender();
  if (opened) showManifest(opened);
}

function showManifest(o) {
  getManifest(o.id, o.version).then(rerender, (err) => {
    if (err instanceof AuthError) return hooks.refused(err);
    say($("plugins-message"), `Cannot read ${o.id}@${o.version}: ${err.message}`);
    rerender();
  });
}

function detailRow(p) {
  const version = opened.version;
  const key = `${p.id}@${version}`;
  const manifest = manifests.get(key)?.value;
  const select = el("select", { class: "pd-version", "aria-label": "Version" },
    ...versionsOf(p).map((v) => el("option", { value: v, selected: v === version }, v === p.latest ? `${v} (latest)` : v)));
  select.addEventListener("change", () => {
    opened = { id: p.id, version: select.value };
    asking = null;
    rerender();
    showManifest(opened);
  });
  const head = el("div", { class: "pd-head" },
    el("label", {}, "Version ", select),
    manifest?.sha256 ? el("span", { class: "mono muted sha", title: "sha256 of the package", text: `sha256 ${manifest.sha256.slice(0, 16)}…` }) : null,
    el("span", { class: "admin-only pd-delete" }, confirmAction({
      label: `Delete ${version}`,
      question: `Delete ${p.id}@${version}? Deployments can no longer use it.`,
      confirmLabel: "Delete version",
      asking: asking === key,
      busy: deleting === key,
      onAsk: () => { asking = key; rerender(); },
      onCancel: () => { asking = null; rerender(); },
      onConfirm: () => removeVersion(p.id, version),
    })),
  );
  const body = manifest ? manifest.steps.map(stepBlock) : [el("p", { class: "muted", text: "Loading its steps…" })];
  return el("tr", { class: "plugin-detail", "data-plugin-detail": p.id, "data-version": version },
    el("td", { colspan: 4 }, head, ...body));
}

function stepBlock(s) {
  const inputs = s.inputs ?? [];
  const outputs = s.outputs ?? [];
  return el("div", { class: "plugin-step", "data-plugin-step": s.name },
    el("h3", {}, el("span", { class: "mono", text: s.name }), s.description ? el("span", { class: "muted", text: ` — ${s.description}` }) : null),
    el("p", { class: "muted run" }, "runs ", el("code", { text: (s.run ?? []).join(" ") })),
    inputs.length === 0 ? el("p", { class: "muted", text: "No inputs." }) : el("table", { class: "grid inputs" },
      el("thead", {}, el("tr", {}, ...["Input", "Type", "Required", "Default", "Secret", "Description"].map((h) => el("th", { text: h })))),
      el("tbody", {}, ...inputs.map((i) => el("tr", { "data-input": i.name },
        el("td", { class: "mono name", text: i.name }),
        el("td", { class: "type", text: i.type ?? "string" }),
        el("td", { class: "required", text: i.required ? "required" : "optional" }),
        el("td", { class: "mono default", text: i.default === undefined ? "" : String(i.default) }),
        el("td", { class: "is-secret", text: i.secret ? "secret" : "" }),
        el("td", { class: "description", text: i.description ?? "" }))))),
    el("p", { class: "outputs-line" }, "Outputs: ",
      outputs.length === 0 ? el("span", { class: "muted", text: "none" }) : el("span", {},
        ...outputs.flatMap((o, n) => [n ? ", " : "", el("code", { "data-output": o.name, title: o.description ?? "", text: o.name })]))),
  );
}

async function uploadPackage() {
  const file = $("plugin-file").files[0];
  if (!file) return say($("plugins-message"), "Choose a package file (.tar.gz) first.");
  const button = $("plugin-upload-submit");
  button.disabled = true;
  say($("plugins-message"), "");
  try {
    const { status, body } = await upload("/api/v1/plugins", new Uint8Array(await file.arrayBuffer()), "application/gzip");
    const what = `${body.id}@${body.version}`;
    const steps = (body.steps ?? []).join(", ");
    say($("plugins-message"), status === 201
      ? `Uploaded ${what} (steps: ${steps}).`
      : `${what} is already here with exactly these bytes (steps: ${steps}).`, "ok");
    $("plugin-upload").reset();
    opened = { id: body.id, version: body.version };
    await loadPlugins();
    showManifest(opened);
  } catch (err) {
    if (err instanceof AuthError) return hooks.refused(err);
    say($("plugins-message"), `Cannot upload ${file.name}${err.status ? ` (HTTP ${err.status})` : ""}: ${err.message}`);
  } finally {
    button.disabled = false;
  }
}

async function removeVersion(id, version) {
  const key = `${id}@${version}`;
  deleting = key;
  rerender();
  try {
    await del(`/api/v1/plugins/${enc(id)}/${enc(version)}`);
    manifests.delete(key);
    say($("plugins-message"), `Deleted ${key}.`, "ok");
  } catch (err) {
    if (err instanceof AuthError) return hooks.refused(err);
    say($("plugins-message"), `Cannot delete ${key}: ${err.message}`);
  } finally {
    if (asking === key) asking = null;
    deleting = null;
    rerender();
  }
  await loadPlugins().catch((err) => hooks.refused(err));
  if (opened) showManifest(opened);
}
