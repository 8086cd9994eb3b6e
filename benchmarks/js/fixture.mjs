// The benchmark fixture's behaviour on Node's socket.io (the same as trio_sio_app.py), shared
// by the one-process server (node_server.mjs) and each worker of node_workers.mjs.
//
// Namespace "/": echo(...args) acks with its arguments; join(room) joins and acks with room;
// bcast({room, n, size}) emits m(i, "x".repeat(size)) for i < n to the room, then acks with n.
//
// With BENCH_REDIS_URL set, the server uses a Redis adapter (BENCH_REDIS_ADAPTER: "classic",
// the default, @socket.io/redis-adapter's createAdapter; "sharded", its createShardedAdapter;
// "streams", @socket.io/redis-streams-adapter), each with its defaults, as trio_sio_app.py
// does with the same variables: several such processes on one Redis form a cluster.
import { requireFromTestsJs } from "./modules.mjs";

const { Server } = requireFromTestsJs("socket.io");

export const REDIS_ADAPTERS = ["classic", "sharded", "streams"];

/** The adapter constructor BENCH_REDIS_URL and BENCH_REDIS_ADAPTER ask for, or undefined. */
async function redisAdapter() {
  const url = process.env.BENCH_REDIS_URL;
  const kind = process.env.BENCH_REDIS_ADAPTER || "classic";
  if (!REDIS_ADAPTERS.includes(kind)) {
    throw new Error(`BENCH_REDIS_ADAPTER must be one of ${REDIS_ADAPTERS}, not ${kind}`);
  }
  if (!url) return undefined;
  const { createClient } = requireFromTestsJs("redis");
  const pub = createClient({ url });
  // Errors end the process: a benchmark must not go on measuring a cluster that lost Redis.
  pub.on("error", (error) => {
    console.error(`redis: ${error}`);
    process.exit(1);
  });
  if (kind === "streams") {
    await pub.connect();
    return requireFromTestsJs("@socket.io/redis-streams-adapter").createAdapter(pub);
  }
  const sub = pub.duplicate();
  sub.on("error", (error) => {
    console.error(`redis: ${error}`);
    process.exit(1);
  });
  await Promise.all([pub.connect(), sub.connect()]);
  const { createAdapter, createShardedAdapter } = requireFromTestsJs("@socket.io/redis-adapter");
  return kind === "sharded" ? createShardedAdapter(pub, sub) : createAdapter(pub, sub);
}

/**
 * A socket.io Server on `httpServer` with the fixture's handlers. `adapter`, when given,
 * overrides the one the environment asks for (the workers' cluster adapter).
 */
export async function fixtureServer(httpServer, adapter) {
  // Defaults except CORS, as for the Python fixtures. (perMessageDeflate is off by default in
  // engine.io 6; the load generator does not offer it anyway.)
  const io = new Server(httpServer, {
    cors: { origin: "*" },
    serveClient: false,
    adapter: adapter ?? (await redisAdapter()),
  });
  io.on("connection", (socket) => {
    socket.on("echo", (...args) => {
      const ack = args.pop();
      if (typeof ack === "function") ack(...args);
    });
    socket.on("join", (room, ack) => {
      socket.join(room);
      if (typeof ack === "function") ack(room);
    });
    socket.on("bcast", (spec, ack) => {
      const payload = "x".repeat(spec.size);
      for (let i = 0; i < spec.n; i++) io.to(spec.room).emit("m", i, payload);
      if (typeof ack === "function") ack(spec.n);
    });
  });
  return io;
}
