// Drive a Socket.IO server (the fixture app of CONTRACT.md) with the unmodified official
// socket.io-client and check its behaviour.
//
//   node sio_scenarios.mjs <base_url> <polling|websocket|upgrade> <scenario>
//
// Prints exactly one JSON line; exit 0 on success, 1 on failure, 2 on the overall timeout
// (SCENARIO_TIMEOUT_MS, default 10 s). "upgrade" starts on polling and requires the upgrade to
// websocket to happen (engine "upgrade" event, then engine.transport.name === "websocket").
// With TRIO_SIO_PARSER=msgpack (the fixture app's switch) every client uses
// socket.io-msgpack-parser, and the client named in the result says so.
import { Manager } from "socket.io-client";

import {
  check,
  checkBinaryEqual,
  checkEqual,
  describe,
  Inconclusive,
  packageVersion,
  runScenarioMain,
  ScenarioFailure,
  sleep,
  watchLosses,
} from "./lib/harness.mjs";

// ---------------------------------------------------------------------------------------------
// client plumbing

// Imported only when asked for, so the other scenarios need no more than socket.io-client.
const PARSER_OPTIONS =
  process.env.TRIO_SIO_PARSER === "msgpack"
    ? { parser: (await import("socket.io-msgpack-parser")).default }
    : {};

/** Every Manager created by a scenario, so the final check and cleanup can reach them. */
const managers = [];
/** Set by scenarios that check the transport themselves before their connection ends. */
let verifiedEarly = false;
/** Per Engine.IO socket: did it upgrade, did the upgrade fail; its handshake. */
const engineState = new WeakMap();

function watchEngine(manager) {
  const engine = manager.engine;
  if (!engine || engineState.has(engine)) return;
  const state = { upgraded: false, error: null, closed: false, waiters: [], handshake: null };
  engineState.set(engine, state);
  engine.on("handshake", (data) => {
    state.handshake = data;
  });
  const settle = () => state.waiters.splice(0).forEach((wake) => wake());
  engine.on("upgrade", () => {
    state.upgraded = true;
    settle();
  });
  engine.on("upgradeError", (err) => {
    state.error = `upgrade failed: ${err?.message ?? err}`;
    settle();
  });
  engine.on("close", (reason) => {
    state.closed = true;
    if (!state.upgraded) state.error ??= `engine closed before upgrading (${reason})`;
    settle();
  });
}

function newManager(ctx, extra = {}) {
  const manager = new Manager(ctx.baseUrl, {
    path: "/socket.io/",
    transports: ctx.transports,
    upgrade: ctx.mode === "upgrade",
    reconnection: false,
    timeout: 5000,
    autoConnect: true,
    ...PARSER_OPTIONS,
    ...extra,
  });
  managers.push(manager);
  // The engine is created synchronously by open(); reconnects create a new one.
  watchEngine(manager);
  manager.on("open", () => watchEngine(manager));
  return manager;
}

/** A socket on its own Manager (forceNew semantics). */
function newSocket(ctx, nsp = "/", socketOpts = {}, managerOpts = {}) {
  return newManager(ctx, managerOpts).socket(nsp, socketOpts);
}

/** The events socket.io-client emits itself, never sent by the server. */
const RESERVED = new Set(["connect", "connect_error", "disconnect", "disconnecting"]);

/**
 * An event's arguments as the server's application sent them. With connection state recovery
 * on (the fixture's TRIO_SIO_RECOVERY=1, Node's connectionStateRecovery) the server gives each
 * socket a pid in CONNECT, and every event it sends without an ack request ends with an offset
 * string, which the client keeps for its next CONNECT: not part of what the scenarios check.
 */
function applicationArgs(emitter, event, args) {
  const withOffset =
    emitter._pid !== undefined &&
    !RESERVED.has(event) &&
    typeof args[args.length - 1] === "string";
  return withOffset ? args.slice(0, -1) : args;
}

/** Resolve with the arguments of the next `event` on `emitter`. */
function nextEvent(emitter, event) {
  return new Promise((resolve) =>
    emitter.once(event, (...args) => resolve(applicationArgs(emitter, event, args))),
  );
}

/** Collect every `event` on `emitter` (arguments arrays, in arrival order). */
function collect(emitter, event) {
  const seen = [];
  emitter.on(event, (...args) => seen.push(applicationArgs(emitter, event, args)));
  return seen;
}

function connected(socket) {
  if (socket.connected) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onConnect = () => {
      socket.off("connect_error", onError);
      resolve();
    };
    const onError = (err) => {
      socket.off("connect", onConnect);
      const cause = err?.description?.message ?? err?.description ?? err?.data;
      const detail = cause === undefined ? "" : ` (${describe(cause)})`;
      reject(new ScenarioFailure(`connect_error on ${socket.nsp}: ${err?.message}${detail}`));
    };
    socket.once("connect", onConnect);
    socket.once("connect_error", onError);
  });
}

function connectError(socket) {
  return new Promise((resolve, reject) => {
    socket.once("connect", () => {
      reject(new ScenarioFailure(`${socket.nsp} connected but should have been refused`));
    });
    socket.once("connect_error", resolve);
  });
}

/** Emit with an acknowledgement callback; resolves with all the ack arguments. */
function emitAck(socket, event, ...args) {
  return new Promise((resolve) => socket.emit(event, ...args, (...ackArgs) => resolve(ackArgs)));
}

/**
 * Check the manager's current engine runs on the transport the mode asks for; in upgrade mode
 * first wait for its "upgrade" event (failing on upgradeError or a close before upgrading).
 */
async function verifyTransport(ctx, manager) {
  const engine = manager.engine;
  check(engine, "manager has no engine");
  if (ctx.mode === "upgrade") {
    const state = engineState.get(engine);
    if (!state.upgraded && !state.error) {
      await new Promise((resolve) => state.waiters.push(resolve));
    }
    check(!state.error || state.upgraded, state.error);
    check(state.upgraded, "no upgrade event");
  }
  const expected = ctx.mode === "polling" ? "polling" : "websocket";
  check(
    engine.transport?.name === expected,
    `transport is ${engine.transport?.name}, expected ${expected}`,
  );
  return engine.transport.name;
}

async function finalState(ctx) {
  let checked = 0;
  for (const manager of managers) {
    if (manager.engine?.readyState !== "open") continue;
    await verifyTransport(ctx, manager);
    checked += 1;
  }
  check(checked > 0 || verifiedEarly, "no open connection left to check the transport on");
  const expected = ctx.mode === "polling" ? "polling" : "websocket";
  return {
    transport: expected,
    upgraded: ctx.mode === "upgrade",
    connections_checked: checked + (verifiedEarly ? 1 : 0),
  };
}

async function cleanup() {
  for (const manager of managers) {
    for (const socket of Object.values(manager.nsps)) socket.disconnect();
    manager.engine?.close();
  }
  await sleep(20);
}

/** Emit "message" and resolve with the arguments of the next "message-back". */
function echoed(socket, args) {
  const back = nextEvent(socket, "message-back");
  socket.emit("message", ...args);
  return back;
}

/** One message-with-ack round trip: proves the socket works and flushes earlier packets. */
async function roundTrip(socket, tag) {
  const answer = await emitAck(socket, "message-with-ack", tag);
  checkEqual(answer, [tag], `round trip on ${socket.nsp}`);
}

/**
 * Watch the sessions of `managers` from now on. A session lost on a starved machine (the
 * contract's ping timeout is 200 ms) says nothing about the behaviour under test, so the
 * returned `unlessLost(promise)` rejects with Inconclusive once one is: the run is repeated.
 */
function watchSessions(managers) {
  const inconclusive = (i, why) => new Inconclusive(`client ${i} lost its session: ${why}`);
  return watchLosses(managers, "close", inconclusive).unlessLost;
}

// ---------------------------------------------------------------------------------------------
// payloads

const NESTED = {
  text: "héllo wörld ✓ 日本",
  number: 3.25,
  negative: -7,
  flags: [true, false, null],
  nested: { list: [1, "two", { three: 3 }], empty: {}, emptyList: [] },
};

function allBytes() {
  return Buffer.from(Array.from({ length: 256 }, (_, i) => i));
}

function bigString(length) {
  const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
  let text = "";
  const block = Array.from({ length: 4096 }, (_, i) => alphabet[(i * 7 + (i >> 6)) % 64]).join("");
  while (text.length < length) text += block;
  return `${text.slice(0, length - 8)}<<end!>>`.slice(0, length);
}

function randomRoom(prefix) {
  return `${prefix}-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
}

// ---------------------------------------------------------------------------------------------
// scenarios

const scenarios = {
  /** CONNECT payload echoed as "auth", with and without a payload, on / and /custom. */
  async auth(ctx) {
    ctx.step("connect four sockets");
    const payload = { token: "s3cr3t", user: { id: 7, roles: ["a", "b"] }, empty: null };
    const cases = [
      ["/", undefined],
      ["/", payload],
      ["/custom", undefined],
      ["/custom", payload],
    ];
    const runs = cases.map(async ([nsp, auth]) => {
      const socket = newSocket(ctx, nsp, auth === undefined ? {} : { auth });
      const received = nextEvent(socket, "auth");
      await connected(socket);
      const [echoed] = await received;
      checkEqual(echoed, auth ?? {}, `auth echoed on ${nsp} (${auth ? "payload" : "none"})`);
      return echoed;
    });
    ctx.step("wait for the auth events");
    const echoed = await Promise.all(runs);
    return { echoed };
  },

  /** "message" with several args (nested objects, none at all) comes back as "message-back". */
  async echo(ctx) {
    const results = {};
    for (const nsp of ["/", "/custom"]) {
      ctx.step(`connect ${nsp}`);
      const socket = newSocket(ctx, nsp);
      const backs = collect(socket, "message-back");
      await connected(socket);
      const sent = [
        ["hello", 42, true, null, NESTED, [1, [2, [3, [4]]]]],
        [],
        [{ only: "one" }],
        ["", 0, false, -1.5e-9, "x".repeat(1000)],
      ];
      for (const [i, args] of sent.entries()) {
        ctx.step(`message #${i} on ${nsp}`);
        checkEqual(await echoed(socket, args), args, `${nsp} message-back #${i}`);
      }
      ctx.step(`no stray message-back on ${nsp}`);
      await roundTrip(socket, "barrier");
      check(backs.length === sent.length, `${nsp}: got ${backs.length} message-back, want 4`);
      results[nsp] = backs.length;
    }
    return { message_back_counts: results };
  },

  /** message-with-ack answers ack(...args) with 0, 1 and several args. */
  async ack(ctx) {
    const results = {};
    for (const nsp of ["/", "/custom"]) {
      ctx.step(`connect ${nsp}`);
      const socket = newSocket(ctx, nsp);
      await connected(socket);
      const cases = [[], ["one"], [1, "two", { three: [3, 3, 3] }, null, true], [NESTED]];
      for (const args of cases) {
        ctx.step(`ack with ${args.length} args on ${nsp}`);
        const answer = await emitAck(socket, "message-with-ack", ...args);
        checkEqual(answer, args, `${nsp} ack for ${args.length} args`);
      }
      ctx.step(`emitWithAck on ${nsp}`);
      const single = await socket.timeout(3000).emitWithAck("message-with-ack", { promise: true });
      checkEqual(single, { promise: true }, `${nsp} emitWithAck`);
      results[nsp] = cases.length + 1;
    }
    return { acks: results };
  },

  /** Buffers at top level and nested, in events and in acks. */
  async binary(ctx) {
    ctx.step("connect");
    const socket = newSocket(ctx);
    const backs = collect(socket, "message-back");
    await connected(socket);
    const bytes = allBytes();
    const cases = [
      [bytes],
      [Buffer.from("first"), "text between", Buffer.from([0, 1, 2, 255])],
      [{ file: bytes, meta: { name: "f.bin", parts: [Buffer.from("p1"), "p2", Buffer.alloc(3)] } }],
      [[Buffer.from("in a list"), { deep: { deeper: { deepest: Buffer.from("!") } } }]],
      [Buffer.alloc(0), { empty: Buffer.alloc(0) }],
    ];
    for (const [i, args] of cases.entries()) {
      ctx.step(`binary message #${i}`);
      checkBinaryEqual(await echoed(socket, args), args, `message-back #${i}`);
    }
    for (const [i, args] of cases.entries()) {
      ctx.step(`binary ack #${i}`);
      const answer = await emitAck(socket, "message-with-ack", ...args);
      checkBinaryEqual(answer, args, `binary ack #${i}`);
    }
    ctx.step("binary + text interleaved");
    const mixed = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        emitAck(socket, "message-with-ack", i, Buffer.from([i, i, i]), { n: i }),
      ),
    );
    mixed.forEach((answer, i) =>
      checkBinaryEqual(answer, [i, Buffer.from([i, i, i]), { n: i }], `mixed ack #${i}`),
    );
    return { binary_events: backs.length, binary_acks: cases.length + mixed.length };
  },

  /** / and /custom multiplexed on one Manager (one Engine.IO session). */
  async namespaces(ctx) {
    const manager = newManager(ctx);
    ctx.step("connect / and /custom on one manager");
    const root = manager.socket("/");
    const custom = manager.socket("/custom", { auth: { which: "custom" } });
    const rootAuth = nextEvent(root, "auth");
    const customAuth = nextEvent(custom, "auth");
    const rootBacks = collect(root, "message-back");
    const customBacks = collect(custom, "message-back");
    await Promise.all([connected(root), connected(custom)]);
    check(root.io === custom.io, "sockets should share the manager");
    checkEqual((await rootAuth)[0], {}, "auth on /");
    checkEqual((await customAuth)[0], { which: "custom" }, "auth on /custom");
    check(root.id !== custom.id, `namespace sockets need distinct ids, both ${root.id}`);

    ctx.step("messages stay in their namespace");
    const [rootBack, customBack] = await Promise.all([
      echoed(root, ["from-root"]),
      echoed(custom, ["from-custom"]),
    ]);
    checkEqual([rootBack, customBack], [["from-root"], ["from-custom"]], "message-back");
    await Promise.all([roundTrip(root, "r"), roundTrip(custom, "c"), sleep(20)]);
    checkEqual(rootBacks, [["from-root"]], "message-back on /");
    checkEqual(customBacks, [["from-custom"]], "message-back on /custom");

    ctx.step("acks interleaved across namespaces");
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        emitAck(i % 2 ? custom : root, "message-with-ack", i % 2 ? "custom" : "root", i),
      ),
    );
    answers.forEach((answer, i) =>
      checkEqual(answer, [i % 2 ? "custom" : "root", i], `interleaved ack #${i}`),
    );

    ctx.step("leave /custom, / keeps working");
    custom.disconnect();
    await roundTrip(root, "after-custom-left");
    check(root.connected, "/ should still be connected");
    check(manager.engine.readyState === "open", "engine should still be open");
    return { engine_sid: manager.engine.id, namespaces: ["/", "/custom"] };
  },

  /** /forbidden is refused with message "forbidden" and data {reason: "nope"}. */
  async forbidden(ctx) {
    ctx.step("connect /forbidden alone");
    const alone = newSocket(ctx, "/forbidden");
    const err = await connectError(alone);
    check(err instanceof Error, `connect_error should carry an Error, got ${describe(err)}`);
    checkEqual(err.message, "forbidden", "connect_error message");
    checkEqual(err.data, { reason: "nope" }, "connect_error data");
    check(!alone.connected, "refused socket must not be connected");

    ctx.step("connect / and /forbidden on one manager");
    const manager = newManager(ctx);
    const root = manager.socket("/");
    await connected(root);
    const shared = manager.socket("/forbidden");
    const err2 = await connectError(shared);
    checkEqual([err2.message, err2.data], ["forbidden", { reason: "nope" }], "second refusal");
    await roundTrip(root, "still-here");
    check(root.connected, "/ should stay connected after the refusal");
    return { message: err.message, data: err.data };
  },

  /** An unknown namespace is refused with "Invalid namespace"; / on the same session lives. */
  async unknown(ctx) {
    const manager = newManager(ctx);
    ctx.step("connect /");
    const root = manager.socket("/");
    await connected(root);
    ctx.step("connect /does-not-exist");
    const stranger = manager.socket("/does-not-exist");
    const err = await connectError(stranger);
    checkEqual(err.message, "Invalid namespace", "connect_error message");
    check(!stranger.connected, "refused socket must not be connected");
    ctx.step("/ still works");
    await roundTrip(root, "after-unknown");
    check(root.connected, "/ should still be connected");
    check(manager.engine.readyState === "open", "engine should still be open");
    return { message: err.message };
  },

  /** join / room-broadcast / leave with three clients. */
  async rooms(ctx) {
    ctx.step("connect three clients");
    const [a, b, c] = [newSocket(ctx), newSocket(ctx), newSocket(ctx)];
    const received = { a: collect(a, "room-message"), b: collect(b, "room-message") };
    received.c = collect(c, "room-message");
    await Promise.all([a, b, c].map(connected));
    const room = randomRoom("room");

    ctx.step("a and b join");
    checkEqual(await emitAck(a, "join", room), [room], "join ack (a)");
    checkEqual(await emitAck(b, "join", room), [room], "join ack (b)");

    ctx.step("a broadcasts");
    const bGotIt = nextEvent(b, "room-message");
    const payload = { from: "a", list: [1, 2, 3], nested: { ok: true } };
    checkEqual(await emitAck(a, "room-broadcast", room, payload), [], "room-broadcast ack");
    checkEqual(await bGotIt, [room, payload], "room-message at b");
    // Anything wrongly sent to a or c was queued before these round trips' answers.
    await Promise.all([roundTrip(a, "a"), roundTrip(c, "c"), sleep(50)]);
    checkEqual(received.a, [], "the sender must not get its own broadcast");
    checkEqual(received.c, [], "a non-member must not get the broadcast");
    checkEqual(received.b.length, 1, "b gets exactly one room-message");

    ctx.step("b broadcasts with binary");
    const aGotIt = nextEvent(a, "room-message");
    const binaryPayload = { blob: Buffer.from([9, 8, 7]) };
    checkEqual(await emitAck(b, "room-broadcast", room, binaryPayload), [], "ack (b)");
    checkBinaryEqual(await aGotIt, [room, binaryPayload], "binary room-message at a");

    ctx.step("b leaves, a broadcasts again");
    checkEqual(await emitAck(b, "leave", room), [room], "leave ack");
    checkEqual(await emitAck(a, "room-broadcast", room, "after-leave"), [], "ack after leave");
    await Promise.all([roundTrip(b, "b"), roundTrip(c, "c2"), sleep(50)]);
    checkEqual(received.b.length, 1, "b left the room and must not get more");
    checkEqual(received.c, [], "c never joined");
    checkEqual(received.a.length, 1, "a got only b's broadcast");
    return { room, deliveries: { a: received.a.length, b: received.b.length, c: 0 } };
  },

  /** Server emits ack-me with an ack request; our answer comes back as the request's ack. */
  async "request-ack"(ctx) {
    ctx.step("connect");
    const socket = newSocket(ctx);
    const asked = [];
    socket.on("ack-me", (...args) => {
      const reply = args.pop();
      check(typeof reply === "function", "ack-me should request an acknowledgement");
      asked.push(args);
      reply({ answer: args[0], extra: [1, "two"], blob: Buffer.from("bin") });
    });
    await connected(socket);
    ctx.step("request-ack round trips");
    for (const payload of [{ question: 42 }, "plain", [1, { two: 2 }]]) {
      const answer = await emitAck(socket, "request-ack", payload);
      checkBinaryEqual(
        answer,
        [{ answer: payload, extra: [1, "two"], blob: Buffer.from("bin") }],
        "answer relayed by the server",
      );
    }
    checkEqual(asked, [[{ question: 42 }], ["plain"], [[1, { two: 2 }]]], "ack-me payloads");
    return { requests: asked.length };
  },

  /** Never answering ack-me: after 2 s the server acks {error: "timeout"}. */
  async "request-ack-timeout"(ctx) {
    ctx.step("connect");
    const socket = newSocket(ctx);
    let asked = 0;
    socket.on("ack-me", () => {
      asked += 1; // deliberately never call the acknowledgement
    });
    await connected(socket);
    ctx.step("wait for the server's timeout");
    const started = Date.now();
    const answer = await emitAck(socket, "request-ack", "no answer");
    const waited = Date.now() - started;
    checkEqual(answer, [{ error: "timeout" }], "timeout answer");
    check(asked === 1, `ack-me should arrive once, got ${asked}`);
    check(waited >= 1800 && waited < 5000, `server waited ${waited} ms, expected about 2000`);
    return { waited_ms: waited };
  },

  /** disconnect-me: the client sees "disconnect" with reason "io server disconnect". */
  async "disconnect-me"(ctx) {
    ctx.step("connect");
    const manager = newManager(ctx);
    const socket = manager.socket("/");
    await connected(socket);
    ctx.step("transport settled before the disconnect");
    await verifyTransport(ctx, manager);
    verifiedEarly = true;
    ctx.step("disconnect-me");
    const disconnected = nextEvent(socket, "disconnect");
    socket.emit("disconnect-me");
    const [reason] = await disconnected;
    checkEqual(reason, "io server disconnect", "disconnect reason");
    check(!socket.connected, "socket should be disconnected");
    return { reason };
  },

  /** 100 quick message and message-with-ack emits arrive (and are answered) in order. */
  async ordering(ctx) {
    ctx.step("connect");
    const socket = newSocket(ctx);
    const backs = collect(socket, "message-back");
    const ackOrder = [];
    // Start emitting right away: in upgrade mode these cross the transport switch.
    const count = 100;
    const acked = new Promise((resolve) => {
      for (let i = 0; i < count; i++) {
        socket.emit("message", i);
        socket.emit("message-with-ack", i, (n) => {
          ackOrder.push(n);
          if (ackOrder.length === count) resolve();
        });
      }
    });
    await connected(socket);
    ctx.step("wait for 100 acks");
    await acked;
    ctx.step("check the order");
    await roundTrip(socket, "barrier");
    const expected = Array.from({ length: count }, (_, i) => i);
    checkEqual(ackOrder, expected, "ack order");
    checkEqual(
      backs.map((args) => args[0]),
      expected,
      "message-back order",
    );
    return { acks: ackOrder.length, message_backs: backs.length };
  },

  /** A 500 kB string message is echoed intact (event and ack). */
  async large(ctx) {
    ctx.step("connect");
    const socket = newSocket(ctx);
    await connected(socket);
    const text = bigString(500_000);
    ctx.step("500 kB message");
    const back = nextEvent(socket, "message-back");
    socket.emit("message", text);
    const [echoed] = await back;
    check(typeof echoed === "string", `expected a string, got ${typeof echoed}`);
    check(echoed.length === text.length, `length ${echoed.length}, expected ${text.length}`);
    check(echoed === text, "500 kB message-back differs from what was sent");
    ctx.step("500 kB ack");
    const [acked] = await emitAck(socket, "message-with-ack", text);
    check(acked === text, "500 kB ack differs from what was sent");
    return { length: text.length };
  },

  /** After a server-side disconnect, socket.connect() reconnects and gets auth again. */
  async reconnect(ctx) {
    ctx.step("connect");
    const auth = { attempt: "same payload" };
    const manager = newManager(ctx);
    const socket = manager.socket("/", { auth });
    const firstAuth = nextEvent(socket, "auth");
    await connected(socket);
    checkEqual((await firstAuth)[0], auth, "first auth");
    const firstId = socket.id;
    await verifyTransport(ctx, manager);

    ctx.step("server disconnects us");
    const disconnected = nextEvent(socket, "disconnect");
    socket.emit("disconnect-me");
    checkEqual((await disconnected)[0], "io server disconnect", "disconnect reason");

    ctx.step("socket.connect() again");
    const secondAuth = nextEvent(socket, "auth");
    socket.connect();
    await connected(socket);
    checkEqual((await secondAuth)[0], auth, "auth after reconnecting");
    check(socket.id !== firstId, `a new session should get a new id (still ${firstId})`);
    await roundTrip(socket, "after-reconnect");
    return { first_id: firstId, second_id: socket.id };
  },

  /** Handshake values as CONTRACT.md says, and an idle connection survives several pings. */
  async heartbeat(ctx) {
    ctx.step("connect");
    const manager = newManager(ctx);
    const socket = manager.socket("/");
    const engine = manager.engine;
    // When each ping reached the client, taken before the client answers it: the engine's
    // "ping" event comes after the pong is sent, which took a busy client 3 ms once (one CI
    // run measured the pings 297 ms apart that way).
    const pingTimes = [];
    const twoPings = new Promise((resolve) => {
      engine.on("packet", (packet) => {
        if (packet.type === "ping" && pingTimes.push(Date.now()) === 2) resolve();
      });
    });
    const disconnects = collect(socket, "disconnect");
    const unlessLost = watchSessions([manager]);
    await unlessLost(connected(socket));
    const { handshake } = engineState.get(engine);
    check(handshake, "no Engine.IO handshake seen");
    const upgrades = ctx.mode === "websocket" ? [] : ["websocket"];
    checkEqual(
      [handshake.pingInterval, handshake.pingTimeout, handshake.maxPayload, handshake.upgrades],
      [300, 200, 1_000_000, upgrades],
      "handshake [pingInterval, pingTimeout, maxPayload, upgrades]",
    );
    check(typeof handshake.sid === "string" && handshake.sid.length > 0, "handshake sid");
    // Two pings come about 0.6 s after the handshake. Not "2 pings in 1 s": on a busy machine
    // a GET that carries one can wait longer (a full CI run with a CPU hog saw none in 1 s
    // once, on a two-worker cluster), so the scenario waits for them, within its budget, and
    // checks what the server decides: the time between them.
    ctx.step("stay idle for two pings");
    await unlessLost(twoPings);
    const between = pingTimes[1] - pingTimes[0];
    // The server pings pingInterval after the pong, which the client sends after it read the
    // first ping: however late either was, at least 300 ms (less 1 ms per clock read).
    check(between >= 298, `the second ping came ${between} ms after the first, pingInterval 300`);
    checkEqual(disconnects, [], "no disconnect while idle");
    check(engine === manager.engine && engine.readyState === "open", "engine should stay open");
    await unlessLost(roundTrip(socket, "after-idle"));
    return { pings: pingTimes.length, handshake };
  },

  /** An Engine.IO session that never connects a namespace is closed after ~1 s. */
  async "connect-timeout"(ctx) {
    ctx.step("open the Engine.IO session only");
    const manager = newManager(ctx);
    await nextEvent(manager, "open");
    const opened = Date.now();
    const closed = nextEvent(manager, "close");
    await verifyTransport(ctx, manager);
    verifiedEarly = true;
    ctx.step("wait for the server to close it");
    const [reason] = await closed;
    const waited = Date.now() - opened;
    checkEqual(reason, "transport close", "close reason");
    check(waited >= 900 && waited < 3000, `closed after ${waited} ms, expected about 1000`);
    return { reason, waited_ms: waited };
  },

  /**
   * Clients in one room (30, or 10 over long-polling only); one broadcast reaches all the
   * others, not the sender.
   */
  async fanout(ctx) {
    // Node's client opens a TCP connection for each long-polling request: 30 such clients
    // make about 300 connections in a run, which took 0.6 s of CPU in the client and 0.5 s
    // in the server (hypercorn) on this 2-core machine. With one core busy elsewhere that
    // is more than the other can give: sessions died of the 200 ms ping timeout, and the
    // test failed 1 time in 6 even with 4 runs each. With 10 clients, 8 tests of 8 passed
    // at the first run there, and 6 of 6 with both cores busy; the WebSocket modes keep 30.
    const count = ctx.mode === "polling" ? 10 : 30;
    ctx.step(`connect ${count} clients`);
    const sockets = Array.from({ length: count }, () => newSocket(ctx));
    const received = sockets.map((socket) => collect(socket, "room-message"));
    // Every session is watched from the start: one can end before its socket connects (the
    // CONNECT then fails with "xhr poll error (400)"), or while the others still connect,
    // when a "disconnect" listener added after the connect step never hears of it and the
    // joins wait until the budget runs out (the hang of one CI run).
    const unlessLost = watchSessions(sockets.map((socket) => socket.io));
    await unlessLost(Promise.all(sockets.map(connected)));
    const room = randomRoom("fanout");
    ctx.step("everyone joins");
    const joins = await unlessLost(
      Promise.all(sockets.map((socket) => emitAck(socket, "join", room))),
    );
    joins.forEach((answer) => checkEqual(answer, [room], "join ack"));

    ctx.step(`one broadcast, ${count - 1} deliveries`);
    const others = sockets.slice(1);
    const deliveries = Promise.all(others.map((socket) => nextEvent(socket, "room-message")));
    const ack = await unlessLost(emitAck(sockets[0], "room-broadcast", room, { n: 1 }));
    checkEqual(ack, [], "broadcast ack");
    const got = await unlessLost(deliveries);
    got.forEach((args, i) => checkEqual(args, [room, { n: 1 }], `delivery to client ${i + 1}`));
    await unlessLost(Promise.all([roundTrip(sockets[0], "sender"), sleep(50)]));
    checkEqual(received[0], [], "the sender must not receive its broadcast");
    const counts = received.map((list) => list.length);
    check(
      counts.slice(1).every((n) => n === 1),
      `each member should get exactly one message: ${counts}`,
    );
    return { receivers: got.length };
  },
};

const parserName = PARSER_OPTIONS.parser
  ? ` (socket.io-msgpack-parser@${packageVersion("socket.io-msgpack-parser")})`
  : "";
await runScenarioMain({
  client: `socket.io-client@${packageVersion("socket.io-client")}${parserName}`,
  scenarios,
  cleanup,
  finalState,
});
