// Checks a fixture's behaviour once with the official socket.io-client 4.8 (over
// WebSocket, over long-polling, and polling-then-upgrade), before it is put under load.
//
//   node benchmarks/js/sanity.mjs http://127.0.0.1:PORT
//
// Prints one JSON line: {"ok": true, "client": "<version>"} or {"ok": false, "error"}.
import { isDeepStrictEqual } from "node:util";

import { packageVersion, requireFromTestsJs } from "./modules.mjs";

const { io } = requireFromTestsJs("socket.io-client");

const url = process.argv[2];
const TIMEOUT_MS = 10_000;

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

function connect(transports, upgrade) {
  const socket = io(url, { transports, upgrade, forceNew: true, reconnection: false });
  return new Promise((resolve, reject) => {
    socket.on("connect", () => resolve(socket));
    socket.on("connect_error", reject);
  });
}

async function exercise(name, transports, upgrade) {
  const a = await connect(transports, upgrade);
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
  await exercise("websocket", ["websocket"], false);
  await exercise("polling", ["polling"], false);
  await exercise("upgrade", ["polling", "websocket"], true);
  finish({ ok: true, client: packageVersion("socket.io-client") }, 0);
} catch (error) {
  finish({ ok: false, error: String(error?.message ?? error) }, 1);
}
