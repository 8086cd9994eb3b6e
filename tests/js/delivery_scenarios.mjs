// Delivery under load, with the unmodified socket.io-client: the patterns users write that
// make several outbound paths meet on one connection (tests/test_delivery.py serves the app).
//
//   node delivery_scenarios.mjs <base_url> <polling|websocket|upgrade> <scenario> [json options]
//
// Scenarios:
//   bcast-ack   `clients` sockets in room "r", each calling `bcast_ack(index, i)` `rounds`
//               times with emitWithAck; the handler broadcasts `tick(index, i)` to the room
//               (sender included) and acknowledges with `i`. Every socket must stay
//               connected, every ack must be right, and every socket must receive every tick,
//               each sender's in order.
//   bcast-loop  `clients` sockets in room "r"; the first calls `bcast_loop(count)`, whose
//               handler broadcasts `n(i)` `count` times in a loop; every socket must receive
//               all of them, in order.
//
// Prints one JSON line (see lib/harness.mjs).
import { check, checkEqual, watchLosses } from "./lib/harness.mjs";
import { manager, runScenarios, state } from "./lib/sio_client.mjs";

const options = JSON.parse(process.argv[5] ?? "{}");

function newSocket(ctx) {
  return manager(ctx, { timeout: 20000 }).socket("/");
}

function connected(socket) {
  return new Promise((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("connect_error", (err) => reject(new Error(`connect_error: ${err?.message}`)));
  });
}

/** Resolves once the socket's engine is on the transport the mode asks for. */
function onFinalTransport(ctx, socket) {
  const engine = socket.io.engine;
  if (ctx.mode !== "upgrade" || engine.transport.name === "websocket") return Promise.resolve();
  return new Promise((resolve, reject) => {
    engine.once("upgrade", resolve);
    engine.once("upgradeError", (err) => reject(new Error(`upgrade failed: ${err?.message}`)));
  });
}

/** Every socket's loss, watched from its creation (one lost while the others still
 * connect counts too); a lost socket's emits would wait for ever, reconnection being off. */
function watchSockets(sockets) {
  const lostError = (_index, _reason, lost) => new Error(`lost: ${lost.join(", ")}`);
  return watchLosses(sockets, "disconnect", lostError);
}

async function joinRoom(sockets) {
  const answers = await Promise.all(sockets.map((socket) => socket.emitWithAck("join", "r")));
  answers.forEach((answer) => checkEqual(answer, "r", "join ack"));
}

const scenarios = {
  async "bcast-ack"(ctx) {
    const clients = options.clients ?? 5;
    const rounds = options.rounds ?? 200;
    ctx.step(`connect ${clients} clients`);
    const sockets = Array.from({ length: clients }, () => newSocket(ctx));
    const { lost, unlessLost } = watchSockets(sockets);
    await unlessLost(Promise.all(sockets.map(connected)));
    // Per receiver, per sender: the next tick expected.
    const next = sockets.map(() => new Array(clients).fill(0));
    const allTicks = clients * rounds;
    let receivedTotal = 0;
    let everyTick;
    const done = new Promise((resolve) => {
      everyTick = resolve;
    });
    sockets.forEach((socket, receiver) => {
      socket.on("tick", (sender, i) => {
        check(
          next[receiver][sender] === i,
          `client ${receiver}: tick ${i} of sender ${sender}, expected ${next[receiver][sender]}`,
        );
        next[receiver][sender] += 1;
        receivedTotal += 1;
        if (receivedTotal === allTicks * clients) everyTick();
      });
    });
    ctx.step("everyone joins");
    await unlessLost(joinRoom(sockets));
    ctx.step(`${clients} x ${rounds} broadcast-and-ack calls`);
    if (ctx.mode === "upgrade") {
      // Half of the calls go out while the upgrade may still be under way; the rest after.
      await unlessLost(Promise.all(sockets.map((socket) => onFinalTransport(ctx, socket))));
    }
    await Promise.all(
      sockets.map(async (socket, sender) => {
        for (let i = 0; i < rounds; i += 1) {
          const answer = await unlessLost(socket.emitWithAck("bcast_ack", sender, i));
          checkEqual(answer, i, `client ${sender}: ack of call ${i}`);
        }
      }),
    );
    ctx.step("every tick arrives");
    await unlessLost(done);
    check(lost.length === 0, `lost: ${lost.join(", ")}`);
    state.transport = sockets[0].io.engine.transport.name;
    return { clients, rounds, ticks_received: receivedTotal };
  },

  async "bcast-loop"(ctx) {
    const clients = options.clients ?? 3;
    const count = options.count ?? 10000;
    ctx.step(`connect ${clients} clients`);
    const sockets = Array.from({ length: clients }, () => newSocket(ctx));
    const { lost, unlessLost } = watchSockets(sockets);
    await unlessLost(Promise.all(sockets.map(connected)));
    await unlessLost(Promise.all(sockets.map((socket) => onFinalTransport(ctx, socket))));
    ctx.step("everyone joins");
    await unlessLost(joinRoom(sockets));
    const received = sockets.map(() => 0);
    const finished = sockets.map(
      (socket, receiver) =>
        new Promise((resolve) => {
          socket.on("n", (i) => {
            check(i === received[receiver], `client ${receiver}: n(${i}), expected ${received[receiver]}`);
            received[receiver] += 1;
            if (received[receiver] === count) resolve();
          });
        }),
    );
    ctx.step(`a loop of ${count} broadcasts`);
    const answer = await unlessLost(sockets[0].emitWithAck("bcast_loop", count));
    checkEqual(answer, count, "bcast_loop ack");
    ctx.step("every broadcast arrives");
    await unlessLost(Promise.all(finished));
    check(lost.length === 0, `lost: ${lost.join(", ")}`);
    state.transport = sockets[0].io.engine.transport.name;
    return { clients, count, received };
  },
};

await runScenarios(scenarios);
