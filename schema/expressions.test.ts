import { describe, expect, it } from "vitest";
import { findReferences, isSingleExpression, secretNamesIn, substitute } from "./expressions.ts";

const values: Record<string, string> = {
  "deployment.properties.env": "prod",
  "agent.name": "web-1",
  "agent.properties.region": "eu",
  "secrets.DB": "pw",
  "steps.build step.outputs.version": "1.2.3",
};
const resolve = (text: string) =>
  substitute(text, (r) => {
    const key = r.kind === "deployment-property" ? `deployment.properties.${r.key}` : r.kind === "agent-name" ? "agent.name" : r.kind === "agent-property" ? `agent.properties.${r.key}` : r.kind === "secret" ? `secrets.${r.name}` : `steps.${r.step}.outputs.${r.key}`;
    return values[key] ?? null;
  });

describe("expressions", () => {
  it("replaces the five forms, with or without spaces inside the braces", () => {
    expect(resolve("${{ deployment.properties.env }}/${{agent.name}}/${{  agent.properties.region}}/${{secrets.DB }}/${{ steps.build step.outputs.version }}")).toEqual({
      text: "prod/web-1/eu/pw/1.2.3",
      unresolved: [],
    });
  });
  it("leaves $HOME, ${HOME} and anything else in braces untouched", () => {
    const text = 'echo $HOME ${HOME} ${{ env.PATH }} ${{ secrets }} ${ { agent.name } } "${{ agent.nam }}"';
    expect(resolve(text)).toEqual({ text, unresolved: [] });
    expect(findReferences(text)).toEqual([]);
  });
  it("names every reference it cannot resolve, once, and keeps its text", () => {
    const r = resolve("${{ secrets.NOPE }} ${{ deployment.properties.x }} ${{secrets.NOPE}}");
    expect(r.unresolved).toEqual(["secrets.NOPE", "deployment.properties.x"]);
    expect(r.text).toBe("${{ secrets.NOPE }} ${{ deployment.properties.x }} ${{secrets.NOPE}}");
  });
  it("names each kind of reference it cannot resolve as written", () => {
    const none = substitute("${{ agent.name }} ${{ agent.properties.zone }} ${{ steps.deploy.outputs.url }} ${{ deployment.properties.k }} ${{ secrets.S }}", () => null);
    expect(none.unresolved).toEqual(["agent.name", "agent.properties.zone", "steps.deploy.outputs.url", "deployment.properties.k", "secrets.S"]);
  });
  it("lists the secrets a text names, and tells a lone expression", () => {
    expect(secretNamesIn("a ${{ secrets.A }} b ${{secrets.B}} ${{ secrets.A }} ${{ agent.name }} ${{ steps.x.outputs.y }}")).toEqual(["A", "B"]);
    expect(isSingleExpression(" ${{ secrets.A }} ")).toBe(true);
    expect(isSingleExpression("x${{ secrets.A }}")).toBe(false);
  });
});
