// Agent versions panel (docs/agent-lifecycle.md §Agent versions API): the signed agent
// packages the server holds, newest first, and which one is current (what install.sh
// installs: the newest, unless an admin pinned another). An admin uploads a package
// (its bytes; the server's 201/200/409/422 said in its own words) and pins a version as
// current, or removes the pin. Upgrading agents to one is agent-upgrade.js (one agent)
// and upgrade-rollouts.js (many, in waves).
import { AuthError, get, request, upload } from "./api.js";
import { $, ago, el, reconcile, say, when } from "./dom.js";

let versions = [];
let current = null; // the current version, or null while none is uploaded
let pinned = false;
let known = false; // whether the list has been read once
let pinning = null; // the version being pinned (or "" while the pin is removed)
let hooks = { refused: () => {}, changed: () => {} };

export const currentAgentVersion = () => current;
export const agentVersionList = () => versions;
export const agentVersionsKnown = () => known;

export function initAgentVersions(h) {
  hooks = h;
  $("agent-version-upload").addEventListener("submit", (e) => {
    e.preventDefault();
    uploadPackage();
  });
}

export function resetAgentVersions() {
  versions = [];
  current = null;
  pinned = known = false;
  pinning = null;
  $("agent-version-upload").reset();
  say($("agent-versions-message"), "");
  $("agent-versions").tBodies[0].replaceChildren();
  $("agent-version-current").textContent = "";
}

export async function loadAgentVersions() {
  try {
    render(await get("/api/v1/agent-versions"));
  } catch (err) {
    if (err instanceof AuthError) throw err;
    say($("agent-versions-message"), `Cannot list the agent versions: ${err.message}`);
  }
}

function render(body) {
  versions = body.versions ?? [];
  current = body.current ?? null;
  pinned = Boolean(body.pinned);
  known = true;
  $("agent-version-count").textContent = versions.length ? String(versions.length) : "";
  $("agent-versions-empty").hidden = versions.length > 0;
  $("agent-versions").hidden = versions.length === 0;
  $("agent-version-current").textContent = current === null ? ""
    : `install.sh installs ${current} (${pinned ? "pinned by an admin" : "the newest uploaded"}).`;
  reconcile($("agent-versions").tBodies[0], versions, (v) => v.version,
    (v) => JSON.stringify([v, ago(v.uploadedAt), current === v.version, pinned, pinning]), versionRow);
  hooks.changed();
}

const rerender = () => render({ versions, current, pinned });

function versionRow(v) {
  const isCurrent = current === v.version;
  const busy = pinning !== null;
  let action = null;
  if (!isCurrent) {
    action = el("button", { type: "button", class: "quiet av-pin", disabled: busy, onclick: () => pin(v.version) },
      pinning === v.version ? "…" : "Make current");
  } else if (pinned) {
    action = el("button", { type: "button", class: "quiet av-unpin", title: "Current becomes the newest uploaded version again", disabled: busy, onclick: () => pin(null) },
      pinning === "" ? "…" : "Unpin");
  }
  return el("tr", { "data-agent-version": v.version, "data-current": String(isCurrent) },
    el("td", { class: "name mono" }, v.version,
      isCurrent ? el("span", { class: "badge current-badge", title: pinned ? "pinned by an admin" : "the newest uploaded version", text: pinned ? "current (pinned)" : "current" }) : null),
    el("td", { class: "platforms" }, ...(v.platforms ?? []).map((p) => el("span", { class: "tag mono", text: p }))),
    el("td", { class: "uploaded", title: when(v.uploadedAt) }, ago(v.uploadedAt)),
    el("td", { class: "mono sha", title: `sha256 ${v.sha256}` }, `${v.sha256.slice(0, 12)}…`),
    el("td", { class: "actions admin-only" }, action),
  );
}

async function pin(version) {
  pinning = version ?? "";
  rerender();
  try {
    const body = await request("PUT", "/api/v1/agent-versions/current", { body: { version } });
    say($("agent-versions-message"), version === null
      ? `The pin is removed: the current version is ${body.current ?? "none"} (the newest uploaded).`
      : `${body.current} is now the current agent version (pinned): install.sh installs it.`, "ok");
  } catch (err) {
    if (err instanceof AuthError) return hooks.refused(err);
    say($("agent-versions-message"), version === null ? `Cannot remove the pin: ${err.message}` : `Cannot make ${version} current: ${err.message}`);
  } finally {
    pinning = null;
    rerender();
  }
  await loadAgentVersions().catch((err) => hooks.refused(err));
}

async function uploadPackage() {
  const file = $("agent-version-file").files[0];
  if (!file) return say($("agent-versions-message"), "Choose an agent package file (.tar.gz) first.");
  const button = $("agent-version-upload-submit");
  button.disabled = true;
  say($("agent-versions-message"), "");
  try {
    const { status, body } = await upload("/api/v1/agent-versions", new Uint8Array(await file.arrayBuffer()), "application/gzip");
    const platforms = (body.platforms ?? []).join(", ");
    say($("agent-versions-message"), status === 201
      ? `Uploaded agent version ${body.version} (platforms: ${platforms}; sha256 ${body.sha256}).`
      : `Agent version ${body.version} is already here with exactly these bytes.`, "ok");
    $("agent-version-upload").reset();
    await loadAgentVersions();
  } catch (err) {
    if (err instanceof AuthError) return hooks.refused(err);
    say($("agent-versions-message"), `Cannot upload ${file.name}${err.status ? ` (HTTP ${err.status})` : ""}: ${err.message}`);
  } finally {
    button.disabled = false;
  }
}
