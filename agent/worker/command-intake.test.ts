// docs/protocol.md §Commands (validation before the acknowledgement).
import { describe, expect, it } from "vitest";
import { classifyCommands } from "./command-intake.ts";

const deploy = (seq: number, id = `c${seq}`) => ({
  seq, type: "deploy", id, deploymentId: `d${seq}`,
  steps: [{ stepId: `st${seq}`, position: 0, name: "n", type: "shell", command: "true", timeoutSeconds: null, retry: "never" }],
});

describe("command intake", () => {
  it("keeps valid commands after lastSeq, in order", () => {
    const r = classifyCommands([deploy(3), deploy(4)], 2);
    expect(r.problem).toBeNull();
    expect(r.items.map((i) => i.kind === "valid" && i.command.seq)).toEqual([3, 4]);
  });

  it("ignores commands at or below lastSeq (already stored)", () => {
    expect(classifyCommands([deploy(2), deploy(3)], 2).items).toHaveLength(1);
  });

  it("stores an invalid command with a readable seq as rejected, with its step ids", () => {
    const bad = { ...deploy(5), steps: [{ stepId: "x1", type: "powershell" }] };
    const r = classifyCommands([bad, deploy(6)], 4);
    expect(r.problem).toBeNull();
    expect(r.items[0]).toMatchObject({ kind: "rejected", seq: 5, id: "c5", deploymentId: "d5", stepIds: ["x1"] });
    expect(r.items[0].kind === "rejected" && r.items[0].reason).toMatch(/steps/);
    expect(r.items[1].kind).toBe("valid");
  });

  it("stops at a command whose seq cannot be read", () => {
    const r = classifyCommands([deploy(5), { what: "?" }, deploy(7)], 4);
    expect(r.items).toHaveLength(1);
    expect(r.problem).toMatch(/seq/);
  });
});
