// Registration panel: a registration token (single use, shown once) and the exact
// commands an operator copies onto the new agent's machine: the one-line installer
// (`curl … /agent/install.sh | sh -s -- --token … --name …`) and the manual
// `outpost-agent register …`. The name and tags typed here go into both commands as
// they are typed; everything is written as text, never as markup.
import { AuthError, post } from "./api.js";
import { $, copyText, say } from "./dom.js";
import { agentVersionsKnown, currentAgentVersion, loadAgentVersions } from "./agent-versions.js";

let token = null;
let hooks = { refused: () => {} };

export function initInstallCommand(h) {
  hooks = h;
  $("reg-token-new").addEventListener("click", newRegistrationToken);
  $("reg-token-copy").addEventListener("click", (e) => copyText(e.currentTarget, $("reg-token-value")));
  $("reg-install-copy").addEventListener("click", (e) => copyText(e.currentTarget, $("reg-install")));
  $("reg-manual-copy").addEventListener("click", (e) => copyText(e.currentTarget, $("reg-manual")));
  $("reg-token-done").addEventListener("click", clearRegistrationToken);
  for (const id of ["reg-name", "reg-tags"]) $(id).addEventListener("input", showCommands);
}

export function resetInstallCommand() {
  clearRegistrationToken();
}

// Shell-quotes a word unless it is made only of characters no shell treats specially.
export function shellWord(s) {
  if (/^[A-Za-z0-9._@%+=:,/-]+$/.test(s)) return s;
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

// "web, eu ,db" → "web,eu,db" (empty pieces dropped); the server checks the tags themselves.
const tagArg = (text) => text.split(",").map((t) => t.trim()).filter(Boolean).join(",");

// `register` needs a home; the one agent/README.md suggests.
export const MANUAL_HOME = "/var/lib/outpost-agent";

// The commands for this page's server, with the token, name and tags given.
export function installCommands(origin, tok, name, tags) {
  const who = `--token ${shellWord(tok)} --name ${name ? shellWord(name) : "NAME"}${tags ? ` --tags ${shellWord(tags)}` : ""}`;
  return {
    install: `curl -fsSL ${shellWord(`${origin}/agent/install.sh`)} | sh -s -- ${who}`,
    manual: `outpost-agent register --server ${shellWord(origin)} ${who} --home ${MANUAL_HOME}`,
  };
}

function showCommands() {
  if (token === null) return;
  const name = $("reg-name").value.trim();
  const { install, manual } = installCommands(location.origin, token, name, tagArg($("reg-tags").value));
  $("reg-install").textContent = install;
  $("reg-manual").textContent = manual;
  $("reg-name-missing").hidden = name !== "";
  // install.sh installs the server's current agent version: without one it has nothing to install.
  $("reg-no-version").hidden = !agentVersionsKnown() || currentAgentVersion() !== null;
}

// The versions panel learned something new (an upload, a pin): the warning follows.
export const refreshInstallCommand = showCommands;

async function newRegistrationToken() {
  const button = $("reg-token-new");
  button.disabled = true;
  say($("agents-message"), "");
  try {
    const body = await post("/api/v1/registration-tokens", {});
    token = body.token;
    $("reg-token-value").textContent = token;
    $("reg-token").hidden = false;
    showCommands();
    $("reg-name").focus();
    // Whether install.sh has a version to install, as of now (the panel says it after).
    loadAgentVersions().catch((err) => hooks.refused(err));
  } catch (err) {
    if (err instanceof AuthError) return hooks.refused(err);
    say($("agents-message"), `Cannot create a registration token: ${err.message}`);
  } finally {
    button.disabled = false;
  }
}

function clearRegistrationToken() {
  token = null;
  $("reg-token").hidden = true;
  for (const id of ["reg-token-value", "reg-install", "reg-manual"]) $(id).textContent = "";
  $("reg-name").value = "";
  $("reg-tags").value = "";
}
