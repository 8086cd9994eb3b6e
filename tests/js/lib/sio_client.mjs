// The socket.io-client plumbing of the scenario scripts that drive a test's own server
// (defects, delivery, listeners and recovery scenarios): the Managers a scenario makes (closed
// after it), the transport it ended on (checked against the mode), and the waits they share.
import { Manager } from "socket.io-client";

import { packageVersion, runSocketioScenarios } from "./harness.mjs";

const managers = [];
/** The transport the scenario ended on, checked against the mode. */
export const state = { transport: null };

/** A Manager for the scenario's server, transports and mode, without reconnection. */
export function manager(ctx, extra = {}) {
  const m = new Manager(ctx.baseUrl, {
    path: "/socket.io/",
    transports: ctx.transports,
    upgrade: ctx.mode === "upgrade",
    reconnection: false,
    timeout: 5000,
    ...extra,
  });
  managers.push(m);
  return m;
}

export function connected(socket) {
  return new Promise((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("connect_error", reject);
  });
}

/** Waits, in the upgrade mode, until the socket's engine is on websocket; records the
 * transport it is on as the scenario's. */
export async function upgraded(ctx, socket) {
  const engine = socket.io.engine;
  if (ctx.mode === "upgrade" && engine.transport.name !== "websocket") {
    await new Promise((resolve, reject) => {
      engine.once("upgrade", resolve);
      engine.once("upgradeError", reject);
    });
  }
  state.transport = engine.transport.name;
}

/** The ack's argument, or "timeout" if none came within `ms`. */
export async function ackOf(socket, event, ms = 1000) {
  try {
    return await socket.timeout(ms).emitWithAck(event);
  } catch {
    return "timeout";
  }
}

/** Run the script's scenarios (lib/harness.mjs) as the installed socket.io-client. */
export async function runScenarios(scenarios) {
  await runSocketioScenarios({
    client: `socket.io-client@${packageVersion("socket.io-client")}`,
    scenarios,
    managers,
    state,
  });
}
