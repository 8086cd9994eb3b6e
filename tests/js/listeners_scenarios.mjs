// Issue 16's per-socket listeners with the unmodified socket.io-client, against the server of
// tests/test_listeners_clients.py.
//
//   node listeners_scenarios.mjs <base_url> <polling|websocket|upgrade> <scenario>
//
// Scenarios:
//   socket-listeners  on /listeners, the socket's own `use` middleware refuses "secret" (no
//                     acknowledgement, no error, the connection goes on); its own `on_any` and
//                     `on_any_outgoing` listeners see the other events, which its own
//                     handlers answer.
//
// Prints one JSON line (see lib/harness.mjs).
import { Manager } from "socket.io-client";

import { check, checkEqual, packageVersion, runSocketioScenarios } from "./lib/harness.mjs";

const managers = [];
/** The transport the scenario ended on, checked against the mode. */
const state = { transport: null };

function manager(ctx) {
  const m = new Manager(ctx.baseUrl, {
    path: "/socket.io/",
    transports: ctx.transports,
    upgrade: ctx.mode === "upgrade",
    reconnection: false,
    timeout: 5000,
  });
  managers.push(m);
  return m;
}

function connected(socket) {
  return new Promise((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("connect_error", reject);
  });
}

async function upgraded(ctx, socket) {
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
async function ackOf(socket, event, ms) {
  try {
    return await socket.timeout(ms).emitWithAck(event);
  } catch {
    return "timeout";
  }
}

const scenarios = {
  async "socket-listeners"(ctx) {
    const socket = manager(ctx).socket("/listeners");
    const received = [];
    socket.onAny((event, ...args) => received.push([event, ...args]));
    await connected(socket);
    await upgraded(ctx, socket);
    ctx.step("the socket's middleware refuses");
    const secret = await ackOf(socket, "secret", 300);
    checkEqual(secret, "timeout", "no acknowledgement for a refused event");
    check(socket.connected, "still connected");
    ctx.step("the socket's handlers and listeners");
    const echoed = new Promise((resolve) => socket.once("echoed", resolve));
    const echo = await socket.emitWithAck("echo", "x");
    checkEqual(await echoed, "x", "echoed");
    const seen = await socket.emitWithAck("seen");
    checkEqual(seen, ["echo", "sent echoed", "seen"], "what the socket's listeners saw");
    checkEqual(received, [["echoed", "x"]], "nothing but the echo reached the client");
    return { secret, echo, seen };
  },
};

await runSocketioScenarios({
  client: `socket.io-client@${packageVersion("socket.io-client")}`,
  scenarios,
  managers,
  state,
});
