// docs/protocol.md §Commands (validation before the acknowledgement; lost-journal safety).
import { describe, expect, it } from "vitest";
import { classifyCommands } from "./command-intake.ts";

const deploy = (seq: number, id = `c${seq}`) => ({
  seq, type: "deploy", id, deploymentId: `d${seq}`, agentLostAfterSeconds: 900,
  steps: [{ stepId: `st${seq}`, position: 0, name: "n", type: "shell", command: "true", timeoutSeconds: null, retry: "never" }],
});

describe("command intake", () => {
  it("keeps valid commands after lastSeq, in order", () => {
    const r = classifyCommands([deploy(3), deploy(4)], 2, 2);
    expect(r.problem).toBeNull();
    expect(r.items.map((i) => i.kind === "valid" && i.command.seq)).toEqual([3, 4]);
  });

  it("ignores commands at or below lastSeq (already stored)", () => {
    expect(classifyCommands([deploy(2), deploy(3)], 2, 2).items).toHaveLength(1);
  });

  it("stores an invalid command with a readable seq as rejected, with its step ids", () => {
    const bad = { ...deploy(5), steps: [{ stepId: "x1", type: "powershell" }] };
    const r = classifyCommands([bad, deploy(6)], 4, 4);
    expect(r.problem).toBeNull();
    expect(r.items[0]).toMatchObject({ kind: "rejected", seq: 5, id: "c5", deploymentId: "d5", stepIds: ["x1"] });
    expect(r.items[0].kind === "rejected" && r.items[0].reason).toMatch(/steps/);
    expect(r.items[1].kind).toBe("valid");
  });

  it("rejects a command without agentLostAfterSeconds (one definition: schema/agent-api.ts)", () => {
    const { agentLostAfterSeconds: _, ...old } = deploy(1);
    expect(classifyCommands([old], 0, 0).items[0]).toMatchObject({ kind: "rejected", reason: expect.stringMatching(/agentLostAfterSeconds/) });
  });

  it("stops at a command whose seq cannot be read", () => {
    const r = classifyCommands([deploy(5), { what: "?" }, deploy(7)], 4, 4);
    expect(r.items).toHaveLength(1);
    expect(r.problem).toMatch(/seq/);
  });

  it("reads of a command it rejects only what can name a step or command (1–200 chars), never more than 400 chars of reason", () => {
    const long = "x".repeat(201);
    const bad = { seq: 5, id: long, deploymentId: "", type: "powershell", steps: [{ stepId: "ok-1" }, { stepId: "" }, { stepId: long }, { stepId: 7 }, null, { stepId: "y".repeat(200) }] };
    const [item] = classifyCommands([bad], 4, 4).items;
    expect(item).toMatchObject({ kind: "rejected", seq: 5, id: "unreadable-seq-5", deploymentId: null, stepIds: ["ok-1", "y".repeat(200)] });
    const noSteps = classifyCommands([{ seq: 6, id: "c6", deploymentId: "d6", steps: "none" }], 5, 5).items[0];
    expect(noSteps).toMatchObject({ kind: "rejected", id: "c6", deploymentId: "d6", stepIds: [] });
    const wordy = { ...deploy(7), steps: Array.from({ length: 60 }, (_, i) => ({ stepId: `s${i}`, position: "first" })) };
    const rejected = classifyCommands([wordy], 6, 6).items[0];
    expect(rejected.kind === "rejected" && rejected.reason.length).toBeLessThanOrEqual(400);
  });

  it("stops at a seq that is not a positive integer, saying why", () => {
    for (const [raw, why] of [
      [null, "not an object"],
      ["seq 3", "not an object"],
      [{ id: "c" }, "no seq"],
      [{ seq: 0 }, "seq not a positive integer"],
      [{ seq: -2 }, "seq not a positive integer"],
      [{ seq: 2.5 }, "seq not a positive integer"],
      [{ seq: "3" }, "seq is a string"],
    ] as const) {
      const r = classifyCommands([raw], 1, 1);
      expect(r.items, JSON.stringify(raw)).toEqual([]);
      expect(r.problem, JSON.stringify(raw)).toContain(why);
    }
  });

  it("ends as lost every command at or below the server's acked that the journal lacks — valid or not — and runs the rest", () => {
    // The journal was restored from a copy holding seq ≤ 1; the server had seen up to 3 acknowledged.
    const bad = { ...deploy(3), steps: [{ stepId: "x3" }] };
    const r = classifyCommands([deploy(2), bad, deploy(4)], 1, 3);
    expect(r.problem).toBeNull();
    expect(r.items).toEqual([
      { kind: "lost", seq: 2, id: "c2", deploymentId: "d2", stepIds: ["st2"] },
      { kind: "lost", seq: 3, id: "c3", deploymentId: "d3", stepIds: ["x3"] },
      { kind: "valid", command: deploy(4) },
    ]);
    // A journal that lost everything (lastSeq 0) gets the same answer for each acknowledged seq.
    expect(classifyCommands([deploy(1), deploy(2)], 0, 1).items.map((i) => i.kind)).toEqual(["lost", "valid"]);
    // An intact journal: the server never saw more acknowledged than it holds.
    expect(classifyCommands([deploy(6)], 5, 5).items.map((i) => i.kind)).toEqual(["valid"]);
  });
});

describe("command intake never quotes a command", () => {
  const SECRET = "deploy --password=hunter2-SECRET-COMMAND-TEXT";
  it("describes a command without a readable seq without its text", () => {
    const bad = { ...deploy(5), seq: "five", steps: [{ ...deploy(5).steps[0], command: SECRET }] };
    const r = classifyCommands([deploy(4), bad], 3, 3);
    expect(r.problem).toMatch(/without a readable seq after seq 4 \(seq is a string\)/);
    expect(r.problem).not.toContain("hunter2");
    expect(classifyCommands([SECRET], 0, 0).problem).not.toContain("hunter2");
  });
});
