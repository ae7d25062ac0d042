// The open deployment's detail, below its row in the list: how its targets were named
// (agents, and the tags used), its properties, its rollout (current wave of all), a
// Cancel button (admin), then its steps grouped by wave then agent, each with its
// status, plug-in (id@version:step) and outputs. Like the list, it is built from a plain
// model that holds every text it shows: the model is the signature that decides whether
// the rows are rebuilt on a poll.
import { ACTIVE_STEP_STATUSES, FINAL_DEPLOYMENT_STATUSES, FINAL_STEP_STATUSES } from "./vocabulary.js";
import { AuthError, enc, post } from "./api.js";
import { badge, clock, duration, el, roughly, when } from "./dom.js";

const TERMINAL = new Set(FINAL_DEPLOYMENT_STATUSES);
const FINAL_STEP = new Set(FINAL_STEP_STATUSES);
// A result received this long after the step finished (it was produced during an
// outage and delivered later) says so beside its times.
const LATE_REPORT_MS = 10_000;
const COLUMNS = 6;

// Cancel of the open deployment: { id, asking, sending, sent, error }.
let cancel = null;
let hooks = { refused: () => {}, rerender: () => {}, changed: () => {} };

export function initDetail(h) {
  hooks = h;
}

const cancelFor = (id) => (cancel?.id === id ? cancel : (cancel = { id, asking: false, sending: false, sent: false, error: null }));

export function detailModel(view, statuses, selectedId) {
  const c = cancelFor(view.id);
  const ended = TERMINAL.has(view.status);
  const rollout = view.rollout;
  const steps = view.steps
    .map((s, i) => ({ s, i }))
    .sort((x, y) => (x.s.wave ?? 1) - (y.s.wave ?? 1) || (x.s.agent < y.s.agent ? -1 : x.s.agent > y.s.agent ? 1 : x.i - y.i))
    .map(({ s }) => stepModel(s, statuses, selectedId));
  const waves = rollout ? Array.from({ length: rollout.waves }, (_, n) => waveModel(n + 1, rollout, steps, ended)) : [];
  return {
    agents: view.targets?.agents ?? [...new Set(view.steps.map((s) => s.agent))],
    tags: view.targets?.tags ?? null,
    properties: Object.entries(view.properties ?? {}),
    rollout: rollout ? {
      text: `${typeof rollout.batchSize === "number" ? `${rollout.batchSize} agent${rollout.batchSize === 1 ? "" : "s"}` : rollout.batchSize} at a time${rollout.stopOnFailure ? " · stops on failure" : ""}`,
      current: rollout.currentWave,
      waves: rollout.waves,
    } : null,
    waves,
    steps,
    cancel: {
      // Disabled once the deployment has ended or a cancel was asked for; "Canceling…"
      // from the click until the deployment is canceled.
      state: ended ? "ended" : view.canceledAt || c.sent ? "canceling" : c.sending ? "sending" : c.asking ? "asking" : "ready",
      error: c.error,
    },
  };
}

function waveModel(n, rollout, steps, ended) {
  const mine = steps.filter((s) => s.wave === n);
  const statuses = mine.map((s) => s.status);
  let state;
  if (statuses.length && statuses.every((s) => s === "skipped" || s === "canceled")) state = statuses.every((s) => s === "skipped") ? "skipped" : "canceled";
  else if (statuses.length && statuses.every((s) => FINAL_STEP.has(s))) state = statuses.some((s) => s === "failed" || s === "interrupted") ? "failed" : "done";
  else if (!ended && n === rollout.currentWave) state = "running";
  else state = "waiting";
  return { n, state, current: !ended && n === rollout.currentWave, agents: [...new Set(mine.map((s) => s.agent))] };
}

function stepModel(s, statuses, selectedId) {
  const late = s.reportedAt && s.finishedAt ? new Date(s.reportedAt) - new Date(s.finishedAt) : 0;
  return {
    id: s.id,
    name: s.name,
    agent: s.agent,
    wave: s.wave ?? 1,
    plugin: s.plugin ? `${s.plugin.id}@${s.plugin.version}:${s.plugin.step}` : null,
    outputs: Object.entries(s.outputs ?? {}),
    // A step still waiting on an agent that is offline says so: its work goes on, or
    // will once the agent is back, and its result arrives when the agent reconnects.
    offline: ACTIVE_STEP_STATUSES.includes(s.status) && statuses.get(s.agent) !== "online",
    status: s.status,
    exitCode: s.exitCode,
    reason: s.reason,
    started: s.startedAt ? clock(new Date(s.startedAt)) : "—",
    startedTitle: when(s.startedAt),
    duration: s.startedAt ? duration(s.startedAt, s.finishedAt) : "",
    reported: late >= LATE_REPORT_MS ? `reported ${roughly(late)} later` : null,
    reportedTitle: s.reportedAt ? `finished ${when(s.finishedAt)}; result received ${when(s.reportedAt)}` : null,
    selected: selectedId === s.id,
  };
}

// --- rendering ------------------------------------------------------------------------------

// `d`: the deployment's list model ({id, name, detail}); onSelect(stepId) opens a step's log.
export function detailRows(d, onSelect) {
  const m = d.detail;
  const rows = [infoRow(d, m)];
  let wave = null;
  for (const s of m.steps) {
    if (m.rollout && s.wave !== wave) {
      wave = s.wave;
      const w = m.waves[wave - 1];
      if (w) rows.push(waveRow(w, m.rollout.waves));
    }
    rows.push(stepRow(s, onSelect));
    if (s.outputs.length) rows.push(outputsRow(s));
  }
  return rows;
}

function infoRow(d, m) {
  const parts = [
    el("div", { class: "dep-targets" }, el("span", { class: "label", text: "Targets" }),
      el("span", { class: "dep-agents", text: m.agents.join(", ") || "—" }),
      m.tags ? el("span", { class: "dep-tags" }, " (tags ", ...m.tags.map((t) => el("span", { class: "tag", text: t })), ")") : null),
  ];
  if (m.properties.length) parts.push(el("div", { class: "dep-properties" }, el("span", { class: "label", text: "Properties" }),
    ...m.properties.map(([k, v]) => el("span", { class: "prop mono", "data-prop": k }, el("span", { class: "k", text: k }), "=", el("span", { class: "v", text: v })))));
  if (m.rollout) parts.push(el("div", { class: "dep-rollout", "data-current-wave": m.rollout.current, "data-waves": m.rollout.waves },
    el("span", { class: "label", text: "Rollout" }),
    el("span", { class: "wave-progress", text: `wave ${m.rollout.current} of ${m.rollout.waves}` }),
    el("span", { class: "muted", text: ` · ${m.rollout.text}` })));
  parts.push(cancelControl(d, m.cancel));
  return el("tr", { class: "detail-row" }, el("td", { colspan: COLUMNS }, el("div", { class: "dep-detail" }, ...parts)));
}

function cancelControl(d, c) {
  const box = el("div", { class: "dep-cancel-box admin-only" });
  if (c.state === "asking") {
    box.append(el("span", { class: "confirm" },
      el("span", { class: "question", text: `Cancel ${d.name}? Pending steps will not run; running steps are stopped.` }),
      el("button", { type: "button", class: "danger dep-cancel-confirm", onclick: () => sendCancel(d.id) }, "Cancel deployment"),
      el("button", { type: "button", class: "quiet", onclick: () => { cancelFor(d.id).asking = false; hooks.rerender(); } }, "Keep it running")));
  } else {
    const label = c.state === "canceling" || c.state === "sending" ? "Canceling…" : "Cancel deployment";
    box.append(el("button", {
      type: "button", class: "quiet danger-quiet dep-cancel", disabled: c.state !== "ready", "data-state": c.state,
      title: c.state === "ended" ? "The deployment has ended" : null,
      onclick: () => { cancelFor(d.id).asking = true; hooks.rerender(); },
    }, label));
  }
  if (c.error) box.append(el("span", { class: "dep-cancel-error", text: c.error }));
  return box;
}

async function sendCancel(id) {
  const c = cancelFor(id);
  c.asking = false;
  c.sending = true;
  c.error = null;
  hooks.rerender();
  try {
    await post(`/api/v1/deployments/${enc(id)}/cancel`, {});
    c.sent = true;
  } catch (err) {
    if (err instanceof AuthError) return hooks.refused(err);
    c.error = `Cannot cancel: ${err.message}`;
  } finally {
    c.sending = false;
    hooks.rerender();
  }
  hooks.changed(); // read it again now, not at the next poll
}

function waveRow(w, total) {
  return el("tr", { class: `wave-row${w.current ? " current" : ""}`, "data-wave": w.n, "data-state": w.state },
    el("td", { colspan: COLUMNS },
      el("span", { class: "wave-title", text: `Wave ${w.n} of ${total}` }),
      el("span", { class: `wave-state w-${w.state}`, text: w.state }),
      el("span", { class: "muted wave-agents", text: w.agents.join(", ") })));
}

function stepRow(s, onSelect) {
  return el("tr", { class: `step-row${s.selected ? " selected" : ""}`, "data-step": s.id, "data-status": s.status, "data-wave": s.wave },
    el("td", { class: "step-name" },
      el("button", {
        type: "button", class: "link", "aria-pressed": String(s.selected), title: "Show this step's log",
        onclick: () => onSelect(s.id),
      }, s.name),
      s.plugin ? el("span", { class: "plugin-ref mono", text: s.plugin }) : null,
      s.reason ? el("span", { class: "reason", text: s.reason }) : null),
    el("td", { class: "muted agent" }, s.agent, s.offline
      ? el("span", { class: "agent-offline", text: "offline", title: "The agent is offline; the step's result arrives when it reconnects" })
      : null),
    el("td", { class: "status" }, badge(s.status)),
    el("td", { class: `mono exit${s.exitCode ? " nonzero" : ""}`, text: s.exitCode ?? "" }),
    el("td", { class: "started", title: s.startedTitle }, s.started),
    el("td", { class: "mono duration", title: s.reportedTitle }, s.duration,
      s.reported ? el("span", { class: "reported", text: s.reported }) : null),
  );
}

function outputsRow(s) {
  return el("tr", { class: "outputs-row", "data-outputs-for": s.id },
    el("td", { colspan: COLUMNS },
      el("table", { class: "outputs" },
        el("caption", { text: "outputs" }),
        el("tbody", {}, ...s.outputs.map(([k, v]) => el("tr", { "data-output": k },
          el("td", { class: "k mono", text: k }), el("td", { class: "eq", text: "=" }), el("td", { class: "v mono", text: v })))))));
}
