// Connection state recovery (issue 16, item 1) with the unmodified socket.io-client, against
// the server of tests/test_recovery_clients.py.
//
//   node recovery_scenarios.mjs <base_url> <polling|websocket|upgrade> <scenario>
//
// Scenarios:
//   recover  broadcasts to a room go on while the transport is cut (socket.io.engine.close());
//            the client reconnects by itself with recovered === true, the same id, its room
//            and data kept, and every tick exactly once, in order.
//   expire   the client comes back after the server's max_disconnection_duration: a fresh
//            session (new id, no rooms, fresh data), and none of what it missed.
//   evict    the client comes back after more broadcasts than the server's store keeps: a
//            fresh session, and none of what it missed.
//   fixture  against tests/conformance_app.py with TRIO_SIO_RECOVERY=1: a member of a room
//            cut while another client room-broadcasts gets every room-message once, in
//            order, with its id kept, and the fixture answers as before.
//
// Prints one JSON line (see lib/harness.mjs).
import { check, checkEqual, sleep } from "./lib/harness.mjs";
import { connected, manager, runScenarios, upgraded } from "./lib/sio_client.mjs";

/** The ticks the "recover" scenario's broadcaster sends (the server's TOTAL_TICKS). */
const TOTAL_TICKS = 60;
const ROOM = "news";

function once(emitter, event) {
  return new Promise((resolve) => emitter.once(event, (...args) => resolve(args)));
}

/** Collect the ticks (their numbers); every one must end with its offset. */
function collectTicks(socket) {
  const ticks = [];
  socket.on("tick", (n, offset, ...rest) => {
    check(typeof offset === "string" && rest.length === 0, `tick ${n} without its offset`);
    ticks.push(n);
  });
  return ticks;
}

async function until(condition, what) {
  while (!condition()) await sleep(10);
  return what;
}

/** Connect, join ROOM and receive one tick, so the client holds an offset. */
async function connectedWithOffset(ctx, extra = {}) {
  const socket = manager(ctx, extra).socket("/", { auth: { token: "t1" } });
  const ticks = collectTicks(socket);
  await connected(socket);
  await upgraded(ctx, socket);
  check(socket.recovered === false, "a first connection is no recovery");
  checkEqual(await socket.emitWithAck("join", ROOM), ROOM, "join");
  await socket.emitWithAck("tick", ROOM, 1);
  await until(() => ticks.length === 1);
  return { socket, ticks };
}

/** Cut the transport and wait until the server keeps the session (asked on another socket). */
async function cutAndKept(ctx, socket) {
  const control = manager(ctx).socket("/");
  await connected(control);
  const disconnected = once(socket, "disconnect");
  socket.io.engine.close();
  await disconnected;
  while ((await control.emitWithAck("kept")) < 1) await sleep(20);
  return control;
}

/** Come back with socket.connect() and check it is a fresh session with nothing replayed. */
async function freshSession(ctx, socket, ticks, oldId) {
  const missedBefore = ticks.length;
  socket.connect();
  await connected(socket);
  await upgraded(ctx, socket);
  check(socket.recovered === false, "recovered although it should not be");
  check(socket.id !== oldId, `the same id ${oldId} for a fresh session`);
  const server = await socket.emitWithAck("state");
  checkEqual(server.rooms, [socket.id], "a fresh session is in no room");
  checkEqual(server.data, { token: "t1", connects: 1, middleware: 1 }, "fresh data");
  check(!server.recovered, "the server says it recovered");
  checkEqual(ticks.length, missedBefore, "ticks of the old session arrived");
  return { old_id: oldId, new_id: socket.id };
}

const scenarios = {
  async fixture(ctx) {
    const member = manager(ctx, {
      reconnection: true,
      reconnectionDelay: 100,
      reconnectionDelayMax: 100,
      randomizationFactor: 0,
    }).socket("/", { auth: { token: "t1" } });
    const sender = manager(ctx).socket("/");
    const messages = [];
    member.on("room-message", (room, payload, offset) => {
      check(typeof offset === "string", "a room-message without its offset");
      messages.push(payload);
    });
    const auths = [];
    member.on("auth", (auth) => auths.push(auth));
    await Promise.all([connected(member), connected(sender)]);
    await upgraded(ctx, member);
    const room = `recovery-${Math.random().toString(36).slice(2)}`;
    checkEqual(await member.emitWithAck("join", room), room, "join");
    await sender.emitWithAck("room-broadcast", room, 0);
    await until(() => messages.length === 1);
    const idBefore = member.id;

    ctx.step("cut while the sender broadcasts");
    const disconnected = once(member, "disconnect");
    const reconnected = once(member, "connect");
    member.io.engine.close();
    await disconnected;
    for (const n of [1, 2, 3]) await sender.emitWithAck("room-broadcast", room, n);
    await reconnected;
    check(member.recovered === true, "member.recovered should be true");
    checkEqual(member.id, idBefore, "the socket id");
    await upgraded(ctx, member);

    ctx.step("the missed room-messages, then new ones");
    await sender.emitWithAck("room-broadcast", room, 4);
    await until(() => messages.length >= 5);
    const [echoed] = await Promise.all([once(member, "message-back"), member.emit("message", "x")]);
    checkEqual(echoed.slice(0, -1), ["x"], "message-back after the recovery");
    checkEqual(messages, [0, 1, 2, 3, 4], "room-messages");
    checkEqual(auths, [{ token: "t1" }, { token: "t1" }], "auth, without the recovery fields");
    member.io.reconnection(false); // the clean-up's close must not recover it once more
    return { messages };
  },

  async recover(ctx) {
    const socket = manager(ctx, {
      reconnection: true,
      reconnectionDelay: 100,
      reconnectionDelayMax: 100,
      randomizationFactor: 0,
    }).socket("/", { auth: { token: "t1" } });
    const ticks = collectTicks(socket);
    await connected(socket);
    await upgraded(ctx, socket);
    check(socket.recovered === false, "a first connection is no recovery");
    checkEqual(await socket.emitWithAck("join", ROOM), ROOM, "join");
    const idBefore = socket.id; // socket.io-client forgets it when disconnected

    ctx.step("broadcasts start");
    await socket.emitWithAck("stream", ROOM, TOTAL_TICKS);
    await until(() => ticks.length >= 5);

    ctx.step("cut the transport");
    const disconnected = once(socket, "disconnect");
    const reconnected = once(socket, "connect");
    socket.io.engine.close();
    const [reason] = await disconnected;
    const cutAt = ticks.length;

    ctx.step("reconnect");
    await reconnected;
    check(socket.recovered === true, "socket.recovered should be true");
    checkEqual(socket.id, idBefore, "the socket id");
    await upgraded(ctx, socket);

    ctx.step("every tick once, in order");
    await until(() => ticks.length >= TOTAL_TICKS);
    const server = await socket.emitWithAck("state");
    await sleep(50); // a duplicate would have come before the state's answer
    checkEqual(ticks, [...Array(TOTAL_TICKS).keys()], "the ticks");
    checkEqual(server.rooms, [ROOM, idBefore].sort(), "rooms on the server");
    checkEqual(server.data, { token: "t1", connects: 2, middleware: 1 }, "data on the server");
    check(server.recovered, "the server's socket.recovered");
    socket.io.reconnection(false); // the clean-up's close must not recover it once more
    return { reason, cut_at: cutAt, ticks: ticks.length };
  },

  async expire(ctx) {
    const { socket, ticks } = await connectedWithOffset(ctx);
    const idBefore = socket.id;
    const control = await cutAndKept(ctx, socket);
    ctx.step("wait past max_disconnection_duration");
    const duration = await control.emitWithAck("duration");
    // The server kept the session before we learned it did: its clock has run at least as
    // long as ours since.
    await sleep(2 * duration * 1000);
    await control.emitWithAck("tick", ROOM, 3);
    return freshSession(ctx, socket, ticks, idBefore);
  },

  async evict(ctx) {
    const { socket, ticks } = await connectedWithOffset(ctx);
    const idBefore = socket.id;
    const control = await cutAndKept(ctx, socket);
    ctx.step("more broadcasts than the store keeps");
    const bound = await control.emitWithAck("max_packets");
    await control.emitWithAck("tick", ROOM, bound + 1);
    return freshSession(ctx, socket, ticks, idBefore);
  },
};

await runScenarios(scenarios);
