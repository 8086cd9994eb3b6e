// A Node socket.io 4.8 server with @socket.io/redis-adapter 8.x, joined to a Redis cluster with
// trio_sio nodes, plus socket.io-client clients on every node; runs one scenario and checks it.
//
//   node redis_cluster.mjs <scenario> <redis_url> <NAME=trio_url>...
//
// REDIS_ADAPTER=sharded makes the Node server use createShardedAdapter (Redis 7 sharded pub/sub)
// with SUBSCRIPTION_MODE (default "dynamic"), REDIS_ADAPTER=streams @socket.io/redis-streams-adapter
// 0.3 (one Redis stream); the default is the classic createAdapter. A redis_url of the form
// redis+cluster://host:port,host:port (trio_sio's) makes the Node server's clients node-redis
// cluster clients (createCluster), as with @socket.io/redis-adapter on a Redis Cluster.
//
// The trio_sio nodes run tests/support/redis_cluster_node.py (its event handlers are mirrored
// by the Node server below, named "N"). Prints exactly one JSON line: {"ok": true, "observed":
// {...}} and exit 0, or {"ok": false, "error": "..."} and exit 1 (2 on the overall timeout,
// SCENARIO_TIMEOUT_MS, default 20 s).
import { createServer } from "node:http";

import { createAdapter, createShardedAdapter } from "@socket.io/redis-adapter";
import { createAdapter as createStreamsAdapter } from "@socket.io/redis-streams-adapter";
import { Emitter } from "@socket.io/redis-emitter";
import { createClient, createCluster } from "redis";
import { Server } from "socket.io";
import { io as connect } from "socket.io-client";

import {
  check,
  checkBinaryEqual,
  checkEqual,
  describe,
  packageVersion,
  ScenarioFailure,
  sleep,
} from "./lib/harness.mjs";

const [scenario, redisUrl, ...nodeArgs] = process.argv.slice(2);
const trioNodes = nodeArgs.map((arg) => {
  const [name, url] = arg.split("=", 2);
  return { name, url };
});
const timeoutMs = Number(process.env.SCENARIO_TIMEOUT_MS ?? 20000);
const sharded = process.env.REDIS_ADAPTER === "sharded";
const streams = process.env.REDIS_ADAPTER === "streams";
// Both speak socket.io-adapter's ClusterAdapter messages (named answers, no ALL_ROOMS).
const clusterMessages = sharded || streams;
const subscriptionMode = process.env.SUBSCRIPTION_MODE ?? "dynamic";
let currentStep = "start";
const step = (label) => {
  currentStep = label;
};

// ---------------------------------------------------------------------------------------------
// the Node server of the cluster ("N"), with the same handlers as the trio_sio nodes

const CLUSTER_SCHEME = "redis+cluster://";

/** How many clients of the cluster subscribe to the shard channel `channel`. */
async function shardSubscribers(client, channel) {
  const args = ["PUBSUB", "SHARDNUMSUB", channel];
  // A cluster client routes by a key (here the channel's slot); a single server's takes none.
  const reply = redisUrl.startsWith(CLUSTER_SCHEME)
    ? await client.sendCommand(channel, true, args)
    : await client.sendCommand(args);
  return Number(reply[1]);
}

/** A node-redis client on redisUrl: one server's, or a Redis Cluster's. */
function redisClient() {
  if (!redisUrl.startsWith(CLUSTER_SCHEME)) return createClient({ url: redisUrl });
  const hosts = redisUrl.slice(CLUSTER_SCHEME.length).replace(/\/$/, "").split(",");
  return createCluster({ rootNodes: hosts.map((host) => ({ url: `redis://${host}` })) });
}

const clients = [];
const redisClients = [];
let io = null;
let httpServer = null;
const nodeServerEvents = [];

async function startNodeServer() {
  const pub = redisClient();
  const sub = pub.duplicate();
  pub.on("error", () => {});
  sub.on("error", () => {});
  redisClients.push(pub, sub);
  await Promise.all([pub.connect(), sub.connect()]);
  httpServer = createServer();
  const adapter = streams
    ? createStreamsAdapter(pub)
    : sharded
      ? createShardedAdapter(pub, sub, { subscriptionMode })
      : createAdapter(pub, sub, { requestsTimeout: 3000 });
  io = new Server(httpServer, { adapter });
  io.on("connection", (socket) => {
    socket.data = { node: "N", name: socket.handshake.auth?.name ?? null };
    socket.on("join", async (room, ack) => {
      // Node's sharded adapter, in the dynamic mode, subscribes to a new room's channel in the
      // background ("create-room"), after join returns: acknowledged at once, a broadcast
      // from another node right after could miss this member. So this fixture acknowledges
      // once the channel has one more subscriber, as trio_sio's nodes do (rooms_pending).
      const dynamic = sharded && subscriptionMode === "dynamic";
      const local = socket.nsp.adapter;
      const channel = dynamic && !local.rooms.has(room) ? local.dynamicChannel(room) : null;
      const before = channel && (await shardSubscribers(pub, channel));
      socket.join(room);
      try {
        if (channel) {
          const more = async () => (await shardSubscribers(pub, channel)) > before;
          await until(more, `a subscriber to ${channel}`);
        }
        ack(room);
      } catch (error) {
        ack({ error: error.message });
      }
    });
    socket.on("room-broadcast", (room, payload, exceptRooms, ack) => {
      if (typeof exceptRooms === "function") [ack, exceptRooms] = [exceptRooms, []];
      let operator = io.to(room);
      if (exceptRooms?.length) operator = operator.except(exceptRooms);
      operator.emit("room-message", "N", room, payload);
      ack(true);
    });
  });
  io.on("hello", (...args) => nodeServerEvents.push(args));
  io.on("ping", (value, ack) => ack(`pong-N-${value}`));
  await new Promise((resolve) => httpServer.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${httpServer.address().port}`;
  // The adapter subscribes in the background: wait until every node counts.
  const expected = trioNodes.length + 1;
  let count = 0;
  for (let i = 0; i < 200 && count !== expected; i++) {
    count = await io.of("/").adapter.serverCount();
    if (count !== expected) await sleep(25);
  }
  check(count === expected, `the cluster has ${count} nodes, expected ${expected}`);
  return { name: "N", url, pub };
}

// ---------------------------------------------------------------------------------------------
// client plumbing

async function client(node, name) {
  const socket = connect(node.url, {
    transports: ["websocket"],
    forceNew: true,
    reconnection: false,
    auth: { name },
  });
  clients.push(socket);
  socket.received = [];
  socket.onAny((event, ...args) => socket.received.push([event, ...args]));
  await new Promise((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("connect_error", (err) => reject(new ScenarioFailure(`${name}: ${err.message}`)));
  });
  return socket;
}

const call = (socket, event, ...args) => socket.timeout(8000).emitWithAck(event, ...args);

/** `socket` joins `room` on its node, which replies with the room once it has joined. */
async function join(socket, room) {
  checkEqual(await call(socket, "join", room), room, `the reply to joining ${room}`);
}

/** Wait until `predicate()` holds (polling), or fail with `what`. */
async function until(predicate, what, ms = 5000) {
  const deadline = Date.now() + ms;
  while (!(await predicate())) {
    if (Date.now() > deadline) fail(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function fail(message) {
  throw new ScenarioFailure(message);
}

const events = (socket, name) => socket.received.filter(([event]) => event === name);

/** Publish raw requests on the request channel; the answers, once `expected` arrived. */
async function wireProbe(requests, expected) {
  const probe = createClient({ url: redisUrl });
  probe.on("error", () => {});
  redisClients.push(probe);
  await probe.connect();
  const answers = [];
  await probe.subscribe("socket.io-response#/#", (message) => answers.push(JSON.parse(message)));
  const publisher = redisClients[0];
  for (const request of requests) {
    await publisher.publish("socket.io-request#/#", JSON.stringify(request));
  }
  await until(() => answers.length >= expected, `${expected} answers to the probe`);
  await sleep(150); // an answer too many would show
  await probe.unsubscribe();
  return answers;
}

/** The classic protocol's requests that the sharded one lacks: ALL_ROOMS, SOCKETS and the
 *  single-socket REMOTE_JOIN. */
async function classicOnlyRequests(ca, cb, cn) {
  step("Node allRooms (request type ALL_ROOMS)");
  const rooms = await io.of("/").adapter.allRooms();
  for (const room of ["f1", ca.id, cb.id, cn.id]) check(rooms.has(room), `allRooms lacks ${room}`);

  step("SOCKETS and the single-socket REMOTE_JOIN, on the wire (older adapters send them)");
  const probe = await wireProbe([
    { uid: "probe", requestId: "probe-sockets", type: 0, rooms: ["f1"] },
    { uid: "probe", requestId: "probe-join", type: 2, sid: ca.id, room: "legacy" },
  ], 4);
  const socketAnswers = probe.filter((r) => r.requestId === "probe-sockets");
  check(socketAnswers.length === 3, `SOCKETS answers: ${describe(probe)}`);
  checkEqual(
    socketAnswers.flatMap((r) => r.sockets).sort(),
    [ca.id, cb.id, cn.id].sort(),
    "SOCKETS answers",
  );
  const joinAnswers = probe.filter((r) => r.requestId === "probe-join");
  check(joinAnswers.length === 1, `REMOTE_JOIN answers: ${describe(joinAnswers)}`);
  const legacy = await call(ca, "fetch", "legacy");
  checkEqual(legacy.sockets.map((s) => s.id), [ca.id], "the socket joined by sid");
}

// ---------------------------------------------------------------------------------------------
// scenarios

const scenarios = {
  /** A room broadcast emitted on each node reaches the room's clients on every node. */
  async rooms(nodes) {
    const members = {};
    const senders = {};
    for (const node of nodes) {
      members[node.name] = await client(node, `member-${node.name}`);
      senders[node.name] = await client(node, `sender-${node.name}`);
      await join(members[node.name], "r1");
    }
    const quiet = nodes[1].name;
    await join(members[quiet], "quiet");
    step("broadcast from every node");
    const binary = Buffer.from([1, 2, 3, 250]);
    for (const node of nodes) {
      check(await call(senders[node.name], "room-broadcast", "r1", { from: node.name, binary }), "ack");
    }
    const origins = nodes.map((node) => node.name).sort();
    await until(
      () => Object.values(members).every((m) => events(m, "room-message").length >= nodes.length),
      "every member to get one message per node",
    );
    const received = {};
    for (const [name, member] of Object.entries(members)) {
      const messages = events(member, "room-message");
      received[name] = messages.map(([, origin]) => origin).sort();
      checkEqual(received[name], origins, `origins seen by the member on ${name}`);
      for (const [, origin, room, payload] of messages) {
        check(room === "r1", `room ${room}`);
        checkBinaryEqual([payload], [{ from: origin, binary }], `payload from ${origin} on ${name}`);
      }
    }
    step("broadcast with an excepted room, from a trio_sio node and from the Node node");
    const others = nodes.filter((node) => node.name !== quiet);
    for (const [i, origin] of [nodes[0], nodes[nodes.length - 1]].entries()) {
      await call(senders[origin.name], "room-broadcast", "r1", { from: "except" }, ["quiet"]);
      await until(
        () =>
          others.every((n) => events(members[n.name], "room-message").length > nodes.length + i),
        `the non-excepted members to get the broadcast from ${origin.name}`,
      );
    }
    await sleep(300);
    check(
      events(members[quiet], "room-message").length === nodes.length,
      `the member in the excepted room on ${quiet} got the broadcast`,
    );
    for (const node of nodes) {
      check(events(senders[node.name], "room-message").length === 0, "a sender got a broadcast");
    }
    return { received, excepted: quiet };
  },

  /** fetchSockets on the Node server lists trio_sio sockets, and the other way round;
   *  remote join/leave/emit/disconnect cross both ways. */
  async fetch(nodes) {
    const [a, b, n] = nodes;
    const ca = await client(a, "fetch-a");
    const cb = await client(b, "fetch-b");
    const cn = await client(n, "fetch-n");
    for (const c of [ca, cb, cn]) await join(c, "f1");

    step("Node fetchSockets");
    const all = await io.fetchSockets();
    const byId = new Map(all.map((s) => [s.id, s]));
    for (const [c, node] of [[ca, a], [cb, b]]) {
      const remote = byId.get(c.id);
      check(remote, `Node's fetchSockets lacks the socket on ${node.name}: ${describe([...byId.keys()])}`);
      checkEqual(remote.data, { node: node.name, name: `fetch-${node.name.toLowerCase()}` }, "data");
      check(remote.rooms.has(c.id) && remote.rooms.has("f1"), `rooms ${describe([...remote.rooms])}`);
      const hs = remote.handshake;
      checkEqual(hs.auth, { name: `fetch-${node.name.toLowerCase()}` }, "handshake.auth");
      check(hs.query.EIO === "4" && hs.query.transport === "websocket", `query ${describe(hs.query)}`);
      check(typeof hs.issued === "number" && Math.abs(hs.issued - Date.now()) < 60000, "issued");
      check(typeof hs.time === "string" && !Number.isNaN(Date.parse(hs.time)), `time ${hs.time}`);
      check(hs.address === "127.0.0.1", `address ${hs.address}`);
      check(hs.url.startsWith("/socket.io/"), `url ${hs.url}`);
      check(typeof hs.headers === "object" && hs.headers.host, "headers");
    }
    const inRoom = (await io.in("f1").fetchSockets()).map((s) => s.id).sort();
    checkEqual(inRoom, [ca.id, cb.id, cn.id].sort(), "Node's io.in('f1').fetchSockets()");

    if (!clusterMessages) await classicOnlyRequests(ca, cb, cn);

    step("trio_sio fetch_sockets");
    const fetched = await call(ca, "fetch", "f1");
    checkEqual(
      fetched.sockets.map((s) => s.id).sort(),
      [ca.id, cb.id, cn.id].sort(),
      "trio_sio in_('f1').fetch_sockets()",
    );
    check(fetched.nodes === 2 && fetched.answered === 2 && fetched.complete, describe(fetched));
    // Node's classic adapter does not name itself in its answers; the sharded one does.
    const named = clusterMessages ? 2 : 1;
    check(fetched.answered_by.length === named, `answered_by ${describe(fetched.answered_by)}`);
    const fromNode = fetched.sockets.find((s) => s.id === cn.id);
    check(fromNode.remote, "the Node socket is not a RemoteSocket");
    checkEqual(fromNode.data, { node: "N", name: "fetch-n" }, "data of the Node socket");
    checkEqual(fromNode.handshake.auth, { name: "fetch-n" }, "handshake of the Node socket");
    check(fromNode.rooms.includes("f1") && fromNode.rooms.includes(cn.id), "rooms");
    check(!fetched.sockets.find((s) => s.id === ca.id).remote, "the local socket is remote");

    step("Node emits to a trio_sio socket by its id (its own room)");
    io.to(ca.id).emit("direct", "to-a");
    await until(() => events(ca, "direct").length === 1, "the trio_sio socket to get 'direct'");
    checkEqual(events(ca, "direct")[0], ["direct", "to-a"], "the direct emit");

    step("Node socketsJoin/socketsLeave on a trio_sio socket");
    io.in(ca.id).socketsJoin("joined-by-n");
    await until(async () => {
      const r = await call(ca, "fetch", "joined-by-n");
      return r.sockets.some((s) => s.id === ca.id);
    }, "the trio_sio socket to join the room");
    io.to("joined-by-n").emit("hey", 1);
    await until(() => events(ca, "hey").length === 1, "the trio_sio socket to get 'hey'");
    io.in(ca.id).socketsLeave("joined-by-n");
    await until(async () => {
      const r = await call(ca, "fetch", "joined-by-n");
      return r.sockets.length === 0;
    }, "the trio_sio socket to leave the room");

    step("trio_sio sockets_join / RemoteSocket on a Node socket");
    check(await call(ca, "remote-join", cn.id, "joined-by-a"), "remote-join");
    await until(
      () => io.of("/").adapter.rooms.get("joined-by-a")?.has(cn.id),
      "the Node socket to join the room",
    );
    check(await call(ca, "remote-socket", cn.id, "emit", "via-remote"), "remote-socket emit");
    await until(() => events(cn, "remote-emit").length === 1, "the Node socket to get remote-emit");
    checkEqual(events(cn, "remote-emit")[0], ["remote-emit", "via-remote"], "remote-emit");
    check(await call(ca, "remote-socket", cn.id, "leave", "joined-by-a"), "remote-socket leave");
    await until(() => !io.of("/").adapter.rooms.has("joined-by-a"), "the Node socket to leave");

    step("disconnectSockets across nodes");
    const cb2 = await client(b, "victim-b");
    const cn2 = await client(n, "victim-n");
    const reasons = {};
    for (const [c, key] of [[cb2, "b"], [cn2, "n"]]) c.on("disconnect", (r) => (reasons[key] = r));
    io.in(cb2.id).disconnectSockets();
    check(await call(ca, "remote-socket", cn2.id, "disconnect"), "remote-socket disconnect");
    await until(() => reasons.b && reasons.n, "both victims to be disconnected");
    checkEqual(reasons, { b: "io server disconnect", n: "io server disconnect" }, "reasons");
    check(ca.connected && cb.connected && cn.connected, "a bystander was disconnected");
    return { node_saw: all.length, trio_saw: fetched.sockets.length };
  },

  /** serverSideEmit (with and without acks) from Node to trio_sio and back. */
  async "server-side-emit"(nodes) {
    const [a, b] = nodes;
    const ca = await client(a, "sse-a");
    const cb = await client(b, "sse-b");
    step("Node serverSideEmit");
    io.serverSideEmit("hello", "from-N", 1);
    for (const c of [ca, cb]) {
      await until(async () => {
        const log = await call(c, "sse-log");
        return log.some((args) => args[0] === "from-N");
      }, "the trio_sio nodes to get 'hello' from N");
    }
    step("Node serverSideEmitWithAck");
    const responses = await io.serverSideEmitWithAck("ping", 7);
    checkEqual(responses.sort(), ["pong-A-7", "pong-B-7"], "Node's serverSideEmitWithAck");
    step("trio_sio server_side_emit");
    check(await call(ca, "sse", "hello", "from-A", 2), "sse");
    await until(() => nodeServerEvents.some((args) => args[0] === "from-A"), "N to get it");
    checkEqual(nodeServerEvents.find((args) => args[0] === "from-A"), ["from-A", 2], "args");
    await until(async () => {
      const log = await call(cb, "sse-log");
      return log.some((args) => args[0] === "from-A");
    }, "B to get 'hello' from A");
    const ownLog = await call(ca, "sse-log");
    check(!ownLog.some((args) => args[0] === "from-A"), "A got its own server-side event");
    step("trio_sio server_side_emit_with_ack");
    const result = await call(ca, "sse-ack", "ping", 8);
    checkEqual(result.responses.sort(), ["pong-B-8", "pong-N-8"], "trio_sio's answers");
    check(result.nodes === 2 && result.answered === 2 && result.complete, describe(result));
    checkEqual(result.answered_by.length, clusterMessages ? 2 : 1, "the nodes that name themselves");
    return { node_got: responses, trio_got: result.responses };
  },

  /** Broadcasts with acknowledgements count the clients of every node. */
  async "broadcast-ack"(nodes) {
    const members = [];
    for (const node of nodes) {
      const m = await client(node, `q-${node.name}`);
      m.on("question", (payload, ack) => ack(`answer-${node.name}`));
      await join(m, "q");
      members.push(m);
    }
    const trigger = await client(nodes[0], "q-trigger");
    step("Node emitWithAck to the room");
    const answers = await io.timeout(4000).to("q").emitWithAck("question", 1);
    checkEqual(answers.sort(), ["answer-A", "answer-B", "answer-N"], "Node's emitWithAck");
    step("trio_sio emit_with_ack to the room");
    const result = await call(trigger, "broadcast-ack", "q", 2);
    checkEqual(
      result,
      {
        expected: 3,
        replies: ["answer-A"],
        remote_replies: ["answer-B", "answer-N"],
        complete: true,
        missing_nodes: 0,
      },
      "trio_sio's emit_with_ack",
    );
    return { node_got: answers, trio_got: result };
  },

  /** @socket.io/redis-emitter reaches trio_sio clients (rooms, socketsJoin, binary). */
  async emitter(nodes, nodeServer) {
    const emitter = new Emitter(nodeServer.pub);
    const targets = nodes.filter((node) => node.name !== "N");
    const members = [];
    for (const node of targets) {
      const m = await client(node, `e-${node.name}`);
      await join(m, "e1");
      members.push(m);
    }
    const outsider = await client(targets[0], "e-outsider");
    // A Date travels as a msgpack timestamp: clients get what JSON.stringify would give them.
    const when = new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 678));
    emitter.to("e1").emit("from-emitter", 1, { x: [2], when }, Buffer.from([9, 8]));
    await until(() => members.every((m) => events(m, "from-emitter").length === 1), "emitter event");
    for (const m of members) {
      checkBinaryEqual(
        events(m, "from-emitter")[0],
        ["from-emitter", 1, { x: [2], when: when.toJSON() }, Buffer.from([9, 8])],
        "the emitter's event",
      );
    }
    emitter.in(members[0].id).socketsJoin("e2");
    await sleep(200);
    emitter.to("e2").emit("second", "ok");
    await until(() => events(members[0], "second").length === 1, "the emitter's socketsJoin");
    await sleep(200);
    check(events(outsider, "from-emitter").length === 0, "the outsider got a room event");
    const withLog = targets.filter((node) => node.name === "A" || node.name === "B");
    if (withLog.length) {
      emitter.serverSideEmit("hello", "from-emitter");
      const m = members[targets.indexOf(withLog[0])];
      await until(async () => {
        const log = await call(m, "sse-log");
        return log.some((args) => args[0] === "from-emitter");
      }, "the emitter's serverSideEmit");
    }
    return { receivers: members.length };
  },

  /** Deliveries per second from one trio_sio node (the first) to clients of another. */
  async rate(nodes) {
    const [a, b] = nodes;
    const count = Number(process.env.RATE_BROADCASTS ?? 2000);
    const receivers = Number(process.env.RATE_CLIENTS ?? 10);
    const size = Number(process.env.RATE_PAYLOAD ?? 100);
    const members = [];
    for (let i = 0; i < receivers; i++) {
      const m = await client(b, `rate-${i}`);
      m.offAny();
      m.floodCount = 0;
      m.on("flood", () => {
        m.floodCount += 1;
        if (m.floodCount === count) m.doneAt = performance.now();
      });
      await join(m, "flood");
      members.push(m);
    }
    // RATE_LOCAL=1 emits on the receivers' own node: the same fan-out without Redis.
    const trigger = await client(process.env.RATE_LOCAL === "1" ? b : a, "rate-trigger");
    const before = await call(members[0], "stats");
    const started = performance.now();
    const emitted = await call(trigger, "flood", "flood", count, size);
    await until(
      () => members.every((m) => m.floodCount === count),
      `${count} broadcasts at ${receivers} clients`,
      30000,
    ).catch((err) => {
      const got = members.map((m) => m.floodCount);
      throw new ScenarioFailure(`${err.message}: got ${describe(got)}`);
    });
    const finished = Math.max(...members.map((m) => m.doneAt));
    const seconds = (finished - started) / 1000;
    const after = await call(members[0], "stats");
    const deliveries = count * receivers;
    return {
      broadcasts: count,
      receivers,
      payload_bytes: size,
      deliveries,
      seconds,
      deliveries_per_second: Math.round(deliveries / seconds),
      broadcasts_per_second: Math.round(count / seconds),
      emit_seconds: emitted.seconds,
      receiver_node_dropped:
        after.dropped_overflow - before.dropped_overflow + after.dropped_malformed - before.dropped_malformed,
    };
  },
};

// ---------------------------------------------------------------------------------------------
// main

async function main() {
  if (!(scenario in scenarios) || !redisUrl || trioNodes.length < 1) {
    process.stderr.write(
      `usage: node redis_cluster.mjs <${Object.keys(scenarios).join("|")}> <redis_url> <NAME=url>...\n`,
    );
    process.exit(64);
  }
  const started = Date.now();
  const result = {
    scenario,
    server: `socket.io@${packageVersion("socket.io")}`,
    adapter: streams
      ? `@socket.io/redis-streams-adapter@${packageVersion("@socket.io/redis-streams-adapter")}`
      : `@socket.io/redis-adapter@${packageVersion("@socket.io/redis-adapter")}`,
    mode: streams ? "streams" : sharded ? `sharded/${subscriptionMode}` : "classic",
  };
  let code = 0;
  const timer = setTimeout(() => {
    process.stdout.write(
      `${JSON.stringify({ ...result, ok: false, error: `timeout during step "${currentStep}"` })}\n`,
    );
    process.exit(2);
  }, timeoutMs);
  try {
    step("start the Node server");
    const nodeServer = await startNodeServer();
    const nodes = [...trioNodes, nodeServer];
    const observed = await scenarios[scenario](nodes, nodeServer);
    Object.assign(result, { ok: true, observed });
  } catch (err) {
    code = 1;
    const what = err instanceof ScenarioFailure ? err.message : (err?.stack ?? String(err));
    Object.assign(result, { ok: false, error: `step "${currentStep}": ${what}` });
    process.stderr.write(`${scenario} FAILED: ${result.error}\n`);
  }
  clearTimeout(timer);
  result.elapsed_ms = Date.now() - started;
  process.stdout.write(`${JSON.stringify(result)}\n`);
  for (const c of clients) c.disconnect();
  io?.close();
  await Promise.allSettled(redisClients.map((c) => c.quit()));
  setTimeout(() => process.exit(code), 200).unref();
  process.exitCode = code;
}

await main();
