// Checks a fixture's behaviour once with the official socket.io-client 4.8 (over
// WebSocket, over long-polling, and polling-then-upgrade), before it is put under load.
//
//   node benchmarks/js/sanity.mjs http://127.0.0.1:PORT [http://127.0.0.1:PORT_B]
//
// With a second URL (node B of a two-node cluster), the receiving client is on node B and the
// sender on the first: every broadcast crosses the cluster adapter. It first waits until one
// does (a node's adapter subscribes in the background).
//
// Prints one JSON line: {"ok": true, "client": "<version>"} or {"ok": false, "error"}.
import { isDeepStrictEqual } from "node:util";

import { packageVersion, requireFromTestsJs } from "./modules.mjs";

const { io } = requireFromTestsJs("socket.io-client");

const [url, otherUrl = url] = process.argv.slice(2);
const TIMEOUT_MS = otherUrl === url ? 10_000 : 30_000;
const READY_TIMEOUT_MS = 15_000;

function finish(result, code) {
  process.stdout.write(JSON.stringify(result) + "\n", () => process.exit(code));
}

setTimeout(() => finish({ ok: false, error: "sanity check timed out" }, 2), TIMEOUT_MS).unref();

function check(condition, message) {
  if (!condition) throw new Error(message);
}

function call(socket, event, ...args) {
  return new Promise((resolve) => socket.emit(event, ...args, (...reply) => resolve(reply)));
}

function connect(transports, upgrade, at = url) {
  const socket = io(at, { transports, upgrade, forceNew: true, reconnection: false });
  return new Promise((resolve, reject) => {
    socket.on("connect", () => resolve(socket));
    socket.on("connect_error", reject);
  });
}

/**
 * Wait until a broadcast sent on the first node to room "r" reaches a client of the other
 * one; return that client, to be disconnected at the end: while it stays in "r", node B
 * stays subscribed to what the room needs (the sharded adapter subscribes per room).
 */
async function crossNodeReady() {
  const receiver = await connect(["websocket"], false, otherUrl);
  const sender = await connect(["websocket"], false);
  try {
    await call(receiver, "join", "r");
    const heard = new Promise((resolve) => receiver.once("m", resolve));
    let done = false;
    heard.then(() => (done = true));
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (!done) {
      check(Date.now() < deadline, `no broadcast crossed the cluster in ${READY_TIMEOUT_MS} ms`);
      await call(sender, "bcast", { room: "r", n: 1, size: 1 });
      await Promise.race([heard, new Promise((resolve) => setTimeout(resolve, 200))]);
    }
  } catch (error) {
    receiver.disconnect();
    throw error;
  } finally {
    sender.disconnect();
  }
  return receiver;
}

async function exercise(name, transports, upgrade) {
  const a = await connect(transports, upgrade, otherUrl);
  const b = await connect(["websocket"], false);
  try {
    const echoed = await call(a, "echo", "hello", 1, { k: [true, null] });
    check(isDeepStrictEqual(echoed, ["hello", 1, { k: [true, null] }]), `${name}: echo ${echoed}`);
    check(isDeepStrictEqual(await call(a, "echo"), []), `${name}: empty echo`);
    check(isDeepStrictEqual(await call(a, "join", "r"), ["r"]), `${name}: join ack`);
    const got = [];
    const all = new Promise((resolve) =>
      a.on("m", (...args) => {
        got.push(args);
        if (got.length === 3) resolve();
      }),
    );
    const acked = await call(b, "bcast", { room: "r", n: 3, size: 4 });
    check(isDeepStrictEqual(acked, [3]), `${name}: bcast ack ${acked}`);
    await all;
    const expected = [0, 1, 2].map((i) => [i, "xxxx"]);
    check(isDeepStrictEqual(got, expected), `${name}: broadcast ${JSON.stringify(got)}`);
    if (upgrade) {
      // By now the upgrade has had several round trips to complete.
      for (let i = 0; i < 50 && a.io.engine.transport.name !== "websocket"; i++) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      check(a.io.engine.transport.name === "websocket", `${name}: did not upgrade`);
    }
  } finally {
    a.disconnect();
    b.disconnect();
  }
}

try {
  const holder = otherUrl !== url ? await crossNodeReady() : null;
  await exercise("websocket", ["websocket"], false);
  await exercise("polling", ["polling"], false);
  await exercise("upgrade", ["polling", "websocket"], true);
  holder?.disconnect();
  finish({ ok: true, client: packageVersion("socket.io-client") }, 0);
} catch (error) {
  finish({ ok: false, error: String(error?.message ?? error) }, 1);
}
