// What each chaos deployment is made of, and what must come of it — decided when the
// deployment is generated, never inferred from what happened:
//   - "ok" steps count their run, sleep a little and print `out-<step id>`;
//   - "big" steps print 300–700 KiB of content derived from their step id (several
//     256 KiB upload chunks, so faults cause overlapping and refused uploads), read
//     back by ranges and compared byte for byte;
//   - "timeout" steps print `out-<step id>` and sleep far past a 1–2 s timeoutSeconds:
//     they fail with a reason starting "timeout", the agent's later steps are skipped;
//   - "gate" steps (agent-lost scenario, agent-lost.ts) wait for a file the run creates
//     once the deployment's agent-lost deadline has expired, so their result always
//     arrives after it;
//   - "plugin" steps run CHAOS_PLUGIN's step like an "ok" step, with a secret input they
//     print (the log must show it masked) and an output naming their step id.
// Every step appends its step id to a count file first: the executions the checks count.
import { join } from "node:path";

export type StepKind = "ok" | "big" | "timeout" | "gate" | "plugin";
export type Retry = "never" | "safe";

export type StepPlan = {
  name: string; // s<position>-<kind>: the view's step name leads back to its plan
  position: number; // 1-based
  kind: StepKind;
  retry: Retry;
  timeoutSeconds: number | null;
  sleepSeconds: number; // ok / big: after their output
  bigBytes: number; // big: exact size of the output
};

// What the deployment must end as: "succeeded"; "timeout" (a planned step timeout fails
// it); "agent-lost" (the agent is stopped past the deployment's agentLostAfterSeconds:
// every step fails agent-lost, then records its real result late, the deployment stays
// failed).
export type Expectation = "succeeded" | "timeout" | "agent-lost";

export type DeploymentPlan = {
  key: string; // deployment name = Idempotency-Key
  agents: string[];
  agentLostAfterSeconds: number;
  steps: StepPlan[];
  expect: Expectation;
  gateFile: string | null; // agent-lost: the file its gate step waits for
  replay: boolean; // POSTed again with the same Idempotency-Key after it succeeded
};

export const TIMEOUT_SLEEP_SECONDS = 120; // longer than any time an agent's worker is away: only the timeout ends it
export const GATE_MAX_SECONDS = 180; // a gate step gives up waiting after this (the run has failed by then)
export const LATE_REASON = "agent-lost; result arrived later";
export const AGENT_LOST_REASON = "agent-lost";

export function stepName(position: number, kind: StepKind): string {
  return `s${position}-${kind}`;
}

export function planOfStep(plan: DeploymentPlan, name: string): StepPlan | undefined {
  return plan.steps.find((s) => s.name === name);
}

// ---- the deterministic output of "big" steps ----

// Line i of a step's big output: "<step id> <i, 6 digits> <1–32 characters of ALPHABET>\n",
// lines of varying length so that upload chunks and read ranges end anywhere. The
// output is the first `bytes` bytes of the line stream. BIG_AWK prints the same.
const ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

export function bigLine(stepId: string, i: number): string {
  return `${stepId} ${String(i).padStart(6, "0")} ${ALPHABET.substr(i % 31, 1 + ((i * 7) % 32))}\n`;
}

export function expectedBigOutput(stepId: string, bytes: number): Buffer {
  const parts: string[] = [];
  let n = 0;
  for (let i = 0; n < bytes; i++) {
    const line = bigLine(stepId, i);
    parts.push(line);
    n += line.length;
  }
  return Buffer.from(parts.join(""), "latin1").subarray(0, bytes);
}

// awk's substr is 1-based; printf with %06d pads like padStart for i < 10^6.
const BIG_AWK = `awk -v id="$OUTPOST_STEP_ID" -v b=BYTES 'BEGIN { a = "${ALPHABET}"; n = 0; for (i = 0; n < b; i++) { l = sprintf("%s %06d %s\\n", id, i, substr(a, 1 + i % 31, 1 + (i * 7) % 32)); printf "%s", l; n += length(l) } }' | head -c BYTES`;

// ---- the plug-in the run uploads (and the secret its steps use) ----

export const CHAOS_SECRET = { name: "CHAOS_TOKEN", value: "chaos-token-value-never-in-a-log" };
export const CHAOS_PLUGIN = {
  manifest: {
    id: "chaos-step",
    version: "1.0.0",
    name: "Chaos step",
    description: "counts its run, sleeps, prints its step id and its (masked) token",
    steps: [
      {
        name: "run",
        inputs: [
          { name: "countFile", type: "string", required: true },
          { name: "sleep", type: "number", default: 0 },
          { name: "token", type: "string", secret: true, required: true },
        ],
        outputs: [{ name: "step" }],
        run: ["sh", "run.sh"],
      },
    ],
  },
  files: {
    "run.sh": [
      'echo "$OUTPOST_STEP_ID" >> "$OUTPOST_INPUT_COUNTFILE"',
      'sleep "$OUTPOST_INPUT_SLEEP"',
      'echo "out-$OUTPOST_STEP_ID"',
      'echo "token $OUTPOST_INPUT_TOKEN"',
      'echo "step=$OUTPOST_STEP_ID" > "$OUTPOST_OUTPUTS"',
    ].join("\n") + "\n",
  },
};

// The expected log of a step that ran (to the end, or to its timeout).
export function expectedOutput(step: StepPlan, stepId: string): Buffer {
  if (step.kind === "big") return expectedBigOutput(stepId, step.bigBytes);
  if (step.kind === "plugin") return Buffer.from(`out-${stepId}\ntoken ***\n`);
  return Buffer.from(`out-${stepId}\n`);
}

export function stepCommand(step: StepPlan, countFile: string, gateFile: string | null): string {
  const count = `echo "$OUTPOST_STEP_ID" >> '${countFile}'`;
  switch (step.kind) {
    case "ok":
      return `${count}; sleep ${step.sleepSeconds.toFixed(3)}; echo "out-$OUTPOST_STEP_ID"`;
    case "big":
      return `${count}; ${BIG_AWK.replaceAll("BYTES", String(step.bigBytes))}; sleep ${step.sleepSeconds.toFixed(3)}`;
    case "timeout":
      return `${count}; echo "out-$OUTPOST_STEP_ID"; sleep ${TIMEOUT_SLEEP_SECONDS}`;
    case "gate":
      if (!gateFile) throw new Error("a gate step needs a gate file");
      return `${count}; i=0; while [ ! -e '${gateFile}' ] && [ $i -lt ${GATE_MAX_SECONDS * 5} ]; do sleep 0.2; i=$((i + 1)); done; echo "out-$OUTPOST_STEP_ID"`;
    case "plugin":
      throw new Error("a plug-in step has no command (see stepBody)");
  }
}

function stepBody(s: StepPlan, countFile: string, gateFile: string | null) {
  const common = { name: s.name, retry: s.retry, ...(s.timeoutSeconds === null ? {} : { timeoutSeconds: s.timeoutSeconds }) };
  if (s.kind !== "plugin") return { ...common, type: "shell" as const, command: stepCommand(s, countFile, gateFile) };
  return {
    ...common,
    type: "plugin" as const,
    plugin: CHAOS_PLUGIN.manifest.id,
    step: "run",
    inputs: { countFile, sleep: Number(s.sleepSeconds.toFixed(3)), token: `\${{ secrets.${CHAOS_SECRET.name} }}` },
  };
}

export function countFileFor(execDir: string, agents: readonly string[]): string {
  // one count file per agent; deployments on two agents share one (appends of one short line are atomic)
  return join(execDir, agents.length === 1 ? `executions-${agents[0]}.txt` : "executions-shared.txt");
}

export function deploymentBody(plan: DeploymentPlan, execDir: string) {
  const countFile = countFileFor(execDir, plan.agents);
  return {
    name: plan.key,
    agents: plan.agents,
    agentLostAfterSeconds: plan.agentLostAfterSeconds,
    steps: plan.steps.map((s) => stepBody(s, countFile, plan.gateFile)),
  };
}

// ---- what must come of a step ----

export type StepExpectation = {
  status: "succeeded" | "failed" | "skipped";
  runs: 0 | 1;
  exitCode: number | null;
  reason: "none" | "timeout" | "late"; // late: starts with LATE_REASON
  log: "output" | "empty"; // output: expectedOutput(step, id)
};

// The planned outcome of one agent's steps, in position order. Only planned events
// count here; an accepted interruption before the spawn is judged in checks.ts.
export function expectedChain(plan: DeploymentPlan): StepExpectation[] {
  const out: StepExpectation[] = [];
  let broken = false;
  for (const s of plan.steps) {
    if (broken) out.push({ status: "skipped", runs: 0, exitCode: null, reason: "none", log: "empty" });
    else if (s.kind === "timeout") {
      out.push({ status: "failed", runs: 1, exitCode: null, reason: "timeout", log: "output" });
      broken = true;
    } else out.push({ status: "succeeded", runs: 1, exitCode: 0, reason: plan.expect === "agent-lost" ? "late" : "none", log: "output" });
  }
  return out;
}
