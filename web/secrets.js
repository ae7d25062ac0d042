// Secrets panel: names and when they were last set, add or replace one, delete one (two
// clicks). A value goes to the server once, from a password field that is emptied as
// soon as the form is sent; the server never gives a value back, and the page never
// writes one anywhere.
import { AuthError, del, enc, get, post } from "./api.js";
import { $, ago, confirmAction, el, reconcile, say, when } from "./dom.js";

let secrets = [];
let asking = null; // name whose delete awaits confirmation
let deleting = null;
let hooks = { refused: () => {}, changed: () => {} };

export const secretNames = () => secrets.map((s) => s.name);

export function initSecrets(h) {
  hooks = h;
  $("secret-form").addEventListener("submit", (e) => {
    e.preventDefault();
    save();
  });
}

export function resetSecrets() {
  secrets = [];
  asking = deleting = null;
  $("secret-form").reset();
  say($("secrets-message"), "");
  $("secrets").tBodies[0].replaceChildren();
}

export async function loadSecrets() {
  try {
    const body = await get("/api/v1/secrets");
    render(body.secrets);
  } catch (err) {
    if (err instanceof AuthError) throw err;
    say($("secrets-message"), `Cannot list the secrets: ${err.message}`);
  }
}

function render(list) {
  secrets = [...list].sort((a, b) => a.name.localeCompare(b.name));
  if (asking && !secrets.some((s) => s.name === asking)) asking = null;
  $("secret-count").textContent = secrets.length ? String(secrets.length) : "";
  $("secrets-empty").hidden = secrets.length > 0;
  $("secrets").hidden = secrets.length === 0;
  reconcile($("secrets").tBodies[0], secrets, (s) => s.name,
    (s) => JSON.stringify([s, ago(s.updatedAt), asking === s.name, deleting === s.name]), secretRow);
  hooks.changed();
}

const rerender = () => render(secrets);

function secretRow(s) {
  return el("tr", { "data-secret": s.name },
    el("td", { class: "name mono", text: s.name }),
    el("td", { class: "updated", title: when(s.updatedAt) }, ago(s.updatedAt)),
    el("td", { class: "muted mono", text: `\${{ secrets.${s.name} }}` }),
    el("td", { class: "actions admin-only" }, confirmAction({
      label: "Delete",
      question: `Delete the secret ${s.name}? Steps that name it can no longer start.`,
      confirmLabel: "Delete secret",
      asking: asking === s.name,
      busy: deleting === s.name,
      onAsk: () => { asking = s.name; rerender(); },
      onCancel: () => { asking = null; rerender(); },
      onConfirm: () => remove(s),
    })),
  );
}

async function save() {
  const name = $("secret-name").value.trim();
  const field = $("secret-value");
  const value = field.value;
  field.value = ""; // whatever happens next, the value leaves the page now
  if (!name || !value) return say($("secrets-message"), "Give the secret a name and a value.");
  const replacing = secrets.some((s) => s.name === name);
  const button = $("secret-save");
  button.disabled = true;
  say($("secrets-message"), "");
  try {
    await post("/api/v1/secrets", { name, value });
    $("secret-name").value = "";
    say($("secrets-message"), `Secret ${name} ${replacing ? "replaced" : "saved"}. Steps use it as \${{ secrets.${name} }}.`, "ok");
    await loadSecrets();
  } catch (err) {
    if (err instanceof AuthError) return hooks.refused(err);
    say($("secrets-message"), `Cannot save the secret ${name}: ${err.message}`);
  } finally {
    button.disabled = false;
  }
}

async function remove(s) {
  deleting = s.name;
  rerender();
  try {
    await del(`/api/v1/secrets/${enc(s.name)}`);
    secrets = secrets.filter((x) => x.name !== s.name);
    say($("secrets-message"), `Secret ${s.name} deleted.`, "ok");
  } catch (err) {
    if (err instanceof AuthError) return hooks.refused(err);
    say($("secrets-message"), `Cannot delete the secret ${s.name}: ${err.message}`);
  } finally {
    if (asking === s.name) asking = null;
    deleting = null;
    rerender();
  }
  await loadSecrets().catch((err) => hooks.refused(err));
}
