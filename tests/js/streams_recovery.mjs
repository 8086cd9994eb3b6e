// Connection state recovery across the nodes of a Redis Streams cluster, with the unmodified
// socket.io-client 4.8 (tests/test_redis_streams_adapter.py).
//
//   node streams_recovery.mjs <proxy_url> <polling|websocket|upgrade> recover
//
// The URL is a TCP proxy in front of node A (trio_sio). The client joins "news", asks A to
// "prepare" (A holds new connections at the proxy and broadcasts tick 0), then cuts its
// transport (socket.io.engine.close()). While it is away A broadcasts ticks 1..5 and stops; the
// proxy then leads the reconnection to node B (trio_sio or Node). On B the client must come
// back recovered, with the same id, get ticks 1..5 once and in order, then "finish" makes B
// broadcast tick 6. Prints one JSON line.
import { Manager } from "socket.io-client";

const [baseUrl, mode, scenario] = process.argv.slice(2);
const timeoutMs = Number(process.env.SCENARIO_TIMEOUT_MS ?? 30000);
const LAST_TICK = 6;
const result = { scenario, mode };
let manager = null;

function once(emitter, event) {
  return new Promise((resolve) => emitter.once(event, (...args) => resolve(args)));
}

/** In "upgrade" mode, until the session runs on WebSocket (it may have upgraded already). */
async function upgraded(socket) {
  if (mode !== "upgrade") return;
  const engine = socket.io.engine;
  if (engine.transport.name !== "websocket") await once(engine, "upgrade");
}

async function until(predicate) {
  while (!predicate()) await new Promise((r) => setTimeout(r, 10));
}

async function run() {
  manager = new Manager(baseUrl, {
    transports: mode === "websocket" ? ["websocket"] : ["polling", "websocket"],
    upgrade: mode === "upgrade",
    reconnectionDelay: 100,
    reconnectionDelayMax: 300,
    timeout: 20000,
  });
  const socket = manager.socket("/");
  const ticks = [];
  socket.on("tick", (n) => ticks.push(n));
  await once(socket, "connect");
  await upgraded(socket);
  const id = socket.id;
  await socket.timeout(10000).emitWithAck("join", "news");
  await socket.timeout(10000).emitWithAck("prepare");
  await until(() => ticks.includes(0));
  const reconnected = once(socket, "connect");
  socket.io.engine.close();
  await reconnected;
  await upgraded(socket);
  result.recovered = socket.recovered;
  result.same_id = socket.id === id;
  result.node = await socket.timeout(10000).emitWithAck("finish");
  await until(() => ticks.includes(LAST_TICK));
  result.ticks = ticks;
  result.transport = socket.io.engine.transport.name;
  result.upgraded = mode === "upgrade";
  result.ok = true;
}

const timer = setTimeout(() => {
  process.stdout.write(`${JSON.stringify({ ...result, ok: false, error: "timeout" })}\n`);
  process.exit(2);
}, timeoutMs);
try {
  await run();
} catch (err) {
  Object.assign(result, { ok: false, error: String(err?.stack ?? err) });
  process.exitCode = 1;
}
clearTimeout(timer);
process.stdout.write(`${JSON.stringify(result)}\n`);
manager?.engine?.close();
setTimeout(() => process.exit(), 100).unref();
