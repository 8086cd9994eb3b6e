// Many socket.io-client clients against `python -m trio_sio --workers N` (tests/test_workers.py,
// serving tests/support/workers_app.py:sio).
//
//   node workers_scenarios.mjs <base_url> <polling|websocket|upgrade> <scenario> <clients>
//
// Scenarios:
//   load     every client connects (polling first in the upgrade mode), asks which process
//            serves it before and after the upgrade (the same one: sticky), then one client
//            makes every client of every worker hear a broadcast. The first connect_error,
//            disconnect or transport error fails it.
//   restart  as load, then one client makes its worker exit at once: that worker's clients
//            reconnect (to any worker), new clients are eventually served by the restarted
//            worker, and a broadcast reaches every client again.
import { io as connect } from "socket.io-client";

import { check, runSocketioScenarios, sleep } from "./lib/harness.mjs";

// Acks have no deadline of their own: on a busy machine only the scenario's overall timeout
// (SCENARIO_TIMEOUT_MS) is a fair one, and it names the step that was waiting.

const managers = [];
const state = { transport: undefined };

function waitFor(emitter, event) {
  return new Promise((resolve) => emitter.once(event, resolve));
}

/** `count` connected clients, each with its serving pid; `errors` collects every failure. */
async function connectClients(ctx, count, { reconnection, errors }) {
  const clients = [];
  await Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const socket = connect(ctx.baseUrl, {
        transports: ctx.transports,
        forceNew: true,
        reconnection,
        reconnectionDelay: 100,
        reconnectionDelayMax: 500,
      });
      managers.push(socket.io);
      const client = { socket, index: i, heard: [] };
      clients.push(client);
      socket.on("heard", (text) => client.heard.push(text));
      const failed = (what) => {
        errors.push(`client ${i} ${what}`);
        // Without reconnection nothing is expected to fail: stop at the first failure.
        check(reconnection, `client ${i} ${what}`);
      };
      socket.on("connect_error", (err) => failed(`connect_error: ${err.message}`));
      socket.io.on("error", (err) => failed(`transport error: ${err.message}`));
      if (!reconnection) socket.on("disconnect", (reason) => failed(`disconnect: ${reason}`));
      await waitFor(socket, "connect");
      // Over polling when the mode upgrades: the upgrade has only just begun.
      client.pid = await socket.emitWithAck("pid");
      if (ctx.mode === "upgrade" && socket.io.engine.transport.name !== "websocket") {
        await waitFor(socket.io.engine, "upgrade");
      }
      const again = await socket.emitWithAck("pid");
      check(again === client.pid, `client ${i} moved from pid ${client.pid} to ${again}`);
    }),
  );
  return clients;
}

function countByPid(clients) {
  const pids = {};
  for (const client of clients) pids[client.pid] = (pids[client.pid] ?? 0) + 1;
  return pids;
}

/** One client shouts `text`; every client must hear it. */
async function broadcastReachesAll(ctx, clients, text) {
  ctx.step(`broadcast ${text}`);
  await clients[0].socket.emitWithAck("shout", text);
  while (clients.some((client) => !client.heard.includes(text))) await sleep(20);
}

function finalTransport(clients) {
  const names = new Set(clients.map((client) => client.socket.io.engine.transport.name));
  check(names.size === 1, `clients ended on transports ${[...names]}`);
  state.transport = [...names][0];
}

const count = Number(process.argv[5] ?? 200);

await runSocketioScenarios({
  client: "socket.io-client",
  managers,
  state,
  scenarios: {
    async load(ctx) {
      const errors = [];
      ctx.step(`connect ${count} clients`);
      const clients = await connectClients(ctx, count, { reconnection: false, errors });
      const pids = countByPid(clients);
      await broadcastReachesAll(ctx, clients, "to everyone");
      finalTransport(clients);
      check(errors.length === 0, `session errors: ${errors.slice(0, 5)}`);
      return { pids, errors: errors.length };
    },

    async restart(ctx) {
      const errors = [];
      ctx.step(`connect ${count} clients`);
      const clients = await connectClients(ctx, count, { reconnection: true, errors });
      const before = countByPid(clients);
      check(Object.keys(before).length > 1, `one worker served everyone: ${JSON.stringify(before)}`);
      await broadcastReachesAll(ctx, clients, "before");
      const victim = clients[0].pid;
      const orphans = clients.filter((client) => client.pid === victim);
      ctx.step(`worker ${victim} exits`);
      const gone = orphans.map((client) => waitFor(client.socket, "disconnect"));
      clients[0].socket.emit("exit");
      await Promise.all(gone);
      ctx.step(`its ${orphans.length} clients reconnect`);
      await Promise.all(
        orphans.map(async (client) => {
          if (!client.socket.connected) await waitFor(client.socket, "connect");
          client.pid = await client.socket.emitWithAck("pid");
        }),
      );
      check(
        orphans.every((client) => client.pid !== victim),
        `a client is still on the dead worker ${victim}`,
      );
      ctx.step("the restarted worker serves new clients");
      const survivors = new Set(Object.keys(before).map(Number).filter((pid) => pid !== victim));
      const newcomers = [];
      for (;;) {
        const [client] = await connectClients(ctx, 1, { reconnection: false, errors: [] });
        newcomers.push(client);
        if (!survivors.has(client.pid) && client.pid !== victim) break;
      }
      const everyone = [...clients, ...newcomers];
      await broadcastReachesAll(ctx, everyone, "after");
      finalTransport(everyone);
      return {
        before,
        after: countByPid(everyone),
        reconnected: orphans.length,
        restarted_pid: newcomers.at(-1).pid,
      };
    },
  },
});
