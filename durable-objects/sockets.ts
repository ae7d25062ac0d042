// WebSocket plumbing of the AgentChannel: attachment shape, which sockets count, safe send/close.
import type { ServerMessage } from "../schema/agent-api.ts";

// Survives hibernation with the socket; ids and times only.
export type Attachment = { connectedAt: number; seenAt: number; hello: boolean; version: string | null };

export const WS_OPEN = 1;
const WS_CLOSED = 3;
export { CLOSE } from "../schema/agent-api.ts"; // the agent reads them too: defined once

// `except`: the socket whose close or error is being handled never counts, whatever its readyState says.
export function openSockets(sockets: readonly WebSocket[], except?: WebSocket): WebSocket[] {
  return sockets.filter((ws) => ws !== except && ws.readyState === WS_OPEN);
}

// When a socket last carried something from the agent: a message (seenAt) or a ping the
// runtime answered without waking this object, whichever is later.
export function heardAt(ws: WebSocket, state: Pick<DurableObjectState, "getWebSocketAutoResponseTimestamp">): number {
  const att = ws.deserializeAttachment() as Attachment;
  return Math.max(att.seenAt, state.getWebSocketAutoResponseTimestamp(ws)?.getTime() ?? 0);
}

// Only a socket the agent said hello on makes it connected (presence, agent-lost).
export function greetedSockets(sockets: readonly WebSocket[], except?: WebSocket): WebSocket[] {
  return openSockets(sockets, except).filter((ws) => (ws.deserializeAttachment() as Attachment | null)?.hello === true);
}

export function send(ws: WebSocket, message: ServerMessage): void {
  try {
    ws.send(JSON.stringify(message));
  } catch (e) {
    // A notification lost costs latency only: the agent pulls on (re)connect.
    console.error("could not send to a WebSocket:", e);
  }
}

// The code to answer a peer's close with. The hibernation API leaves the closing
// handshake to us (partyserver reciprocates the same way), but not every code a peer
// may send may be sent back: 1005/1006/1015 only describe a close and never travel,
// and the rest of 1004–2999 is reserved — close() throws on them. Those are answered
// with 1000; application codes (3000–4999) and 1000 are echoed.
export function closeReplyCode(peerCode: number): number {
  return peerCode === 1000 || (peerCode >= 3000 && peerCode <= 4999) ? peerCode : 1000;
}

// Close codes 1005/1006/1015 are reserved; reasons are capped at 123 bytes; closing a dead socket throws.
export function closeQuietly(ws: WebSocket, code: number, reason: string): void {
  let r = reason;
  while (new TextEncoder().encode(r).length > 123) r = r.slice(0, -1);
  if (ws.readyState === WS_CLOSED) return;
  try {
    ws.close(code, r);
  } catch (e) {
    console.error(`closing a WebSocket (${code} ${r}) failed:`, e);
  }
}
