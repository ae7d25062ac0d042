// API tokens panel (admin only): list, create (the secret shown once), revoke (two
// clicks). Whether it shows at all is decided by the server: GET /api/v1/api-tokens
// answers 200 to an admin token and 403 to a viewer token.
import { ApiError, AuthError, del, enc, get, post } from "./api.js";
import { $, ago, confirmAction, copyText, el, reconcile, say, when } from "./dom.js";

let tokens = [];
let role = null; // "admin" | "viewer" | null (not known yet)
let asking = null;
let revoking = null;
let hooks = { refused: () => {}, role: () => {} };

export function initTokens(h) {
  hooks = h;
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    create();
  });
  $("new-token-copy").addEventListener("click", (e) => copyText(e.currentTarget, $("new-token-value")));
  $("new-token-done").addEventListener("click", clearNewToken);
}

export function resetTokens() {
  tokens = [];
  role = asking = revoking = null;
  $("tokens-panel").hidden = true;
  clearNewToken();
  say($("tokens-message"), "");
  $("tokens").tBodies[0].replaceChildren();
}

export const roleKnown = () => role !== null;

// Loads the list; tells whether this token is an admin's (200) or a viewer's (403).
// Anything else leaves the role unknown, and the next poll asks again.
export async function loadTokens() {
  try {
    const body = await get("/api/v1/api-tokens");
    setRole("admin");
    render(body.tokens);
  } catch (err) {
    if (err instanceof AuthError) throw err;
    if (err instanceof ApiError && err.status === 403) return setRole("viewer");
    console.error(err);
  }
}

function setRole(r) {
  role = r;
  $("tokens-panel").hidden = r !== "admin";
  hooks.role(r);
}

function render(list) {
  tokens = list;
  $("token-count").textContent = tokens.length ? String(tokens.length) : "";
  $("tokens-empty").hidden = tokens.length > 0;
  $("tokens").hidden = tokens.length === 0;
  reconcile($("tokens").tBodies[0], tokens, (t) => t.id, (t) => JSON.stringify([t, ago(t.createdAt), asking === t.id, revoking === t.id]), tokenRow);
}

const rerender = () => render(tokens);

function tokenRow(t) {
  return el("tr", { "data-token-id": t.id, "data-token-name": t.name },
    el("td", { class: "name", text: t.name }),
    el("td", { class: "role-cell" }, el("span", { class: `badge r-${t.role}`, text: t.role })),
    el("td", { title: when(t.createdAt) }, ago(t.createdAt)),
    el("td", { class: "actions" }, confirmAction({
      label: "Revoke",
      question: `Revoke “${t.name}”? Anything using it is refused at once.`,
      confirmLabel: "Revoke token",
      asking: asking === t.id,
      busy: revoking === t.id,
      onAsk: () => { asking = t.id; rerender(); },
      onCancel: () => { asking = null; rerender(); },
      onConfirm: () => revoke(t),
    })),
  );
}

async function create() {
  const name = $("token-name").value.trim();
  const tokenRole = $("token-role").value;
  if (!name) return;
  const button = $("token-form").querySelector("button[type=submit]");
  button.disabled = true;
  say($("tokens-message"), "");
  try {
    const { token } = await post("/api/v1/api-tokens", { name, role: tokenRole });
    $("new-token-name").textContent = `${name} (${tokenRole})`;
    $("new-token-value").textContent = token;
    $("new-token").hidden = false;
    $("token-name").value = "";
    await loadTokens();
  } catch (err) {
    if (err instanceof AuthError) return hooks.refused(err);
    say($("tokens-message"), `Cannot create the token: ${err.message}`);
  } finally {
    button.disabled = false;
  }
}

async function revoke(t) {
  revoking = t.id;
  rerender();
  try {
    await del(`/api/v1/api-tokens/${enc(t.id)}`);
    tokens = tokens.filter((x) => x.id !== t.id);
    say($("tokens-message"), `Token “${t.name}” is revoked.`, "ok");
  } catch (err) {
    if (err instanceof AuthError) return hooks.refused(err);
    say($("tokens-message"), `Cannot revoke “${t.name}”: ${err.message}`);
  } finally {
    if (asking === t.id) asking = null;
    revoking = null;
    rerender();
  }
  await loadTokens().catch((err) => hooks.refused(err));
}

function clearNewToken() {
  $("new-token").hidden = true;
  $("new-token-value").textContent = "";
  $("new-token-name").textContent = "";
}
