import { describe, expect, it } from "vitest";
import { parseCli } from "./args.ts";
import { UsageError } from "./errors.ts";

describe("command line", () => {
  it("parses register", () => {
    expect(parseCli(["register", "--server", "https://s", "--token", "t", "--name", "a1", "--home", "/h", "--insecure", "--ca", "/ca.pem"])).toEqual({
      command: "register", server: "https://s", token: "t", name: "a1", home: "/h", insecure: true, ca: "/ca.pem",
    });
    expect(parseCli(["register", "--server", "https://s", "--token", "t", "--name", "a1", "--home", "/h"])).toMatchObject({ insecure: false, ca: null });
  });

  it("takes option values that start with a dash (random tokens do)", () => {
    expect(parseCli(["register", "--server", "https://s", "--token", "-Xy_z", "--name", "a1", "--home", "/h"])).toMatchObject({ token: "-Xy_z" });
    expect(parseCli(["register", "--server=https://s", "--token=--x", "--name", "a1", "--home", "/h"])).toMatchObject({ token: "--x", server: "https://s" });
  });

  it("parses run with and without --concurrency", () => {
    expect(parseCli(["run", "--home", "/h"])).toEqual({ command: "run", home: "/h", concurrency: null });
    expect(parseCli(["run", "--home", "/h", "--concurrency", "8"])).toEqual({ command: "run", home: "/h", concurrency: 8 });
  });

  it("rejects bad input with a UsageError", () => {
    const bad = [[], ["frobnicate"], ["run"], ["run", "--home", "/h", "--concurrency", "0"], ["run", "--home", "/h", "--concurrency", "x"],
      ["run", "--home", "/h", "--bogus"], ["register", "--server", "https://s", "--token", "t", "--home", "/h"], ["run", "--home", "/h", "extra"]];
    for (const argv of bad) expect(() => parseCli(argv), argv.join(" ")).toThrow(UsageError);
  });
});
