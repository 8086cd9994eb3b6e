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
import { check, checkEqual } from "./lib/harness.mjs";
import { ackOf, connected, manager, runScenarios, upgraded } from "./lib/sio_client.mjs";


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

await runScenarios(scenarios);
