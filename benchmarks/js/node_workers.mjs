// The benchmark fixture (fixture.mjs) on Node's socket.io 4.8 in WORKERS processes on one port,
// as Socket.IO's documentation sets it up: node:cluster, @socket.io/sticky routing each
// request by its session id (handshakes to the worker with the fewest connections, its
// default), and @socket.io/cluster-adapter carrying broadcasts between the workers through
// the primary.
//
//   node benchmarks/js/node_workers.mjs PORT [WORKERS]      # WORKERS defaults to 2
//
// Binds 127.0.0.1 only. Prints "listening PORT" once every worker serves. A worker that dies
// is not replaced: a benchmark must fail rather than measure fewer workers.
import cluster from "node:cluster";
import { createServer } from "node:http";

import { fixtureServer } from "./fixture.mjs";
import { requireFromTestsJs } from "./modules.mjs";

const { setupMaster, setupWorker } = requireFromTestsJs("@socket.io/sticky");
const { createAdapter, setupPrimary } = requireFromTestsJs("@socket.io/cluster-adapter");

const READY = "bench:ready";

if (cluster.isPrimary) {
  const port = Number(process.argv[2] ?? "0");
  const workers = Number(process.argv[3] ?? "2");
  const httpServer = createServer();
  setupMaster(httpServer, { loadBalancingMethod: "least-connection" });
  setupPrimary();
  // Buffers cross the IPC channel as Buffers, not JSON (the packages' documented setting).
  cluster.setupPrimary({ serialization: "advanced" });
  let ready = 0;
  for (let i = 0; i < workers; i++) {
    cluster.fork().on("message", (message) => {
      // Listen only once every worker can take a connection: sticky routes to any of them.
      if (message?.type === READY && ++ready === workers) {
        httpServer.listen(port, "127.0.0.1", 2048, () => {
          console.log(`listening ${httpServer.address().port}`);
        });
      }
    });
  }
  cluster.on("exit", (worker, code, signal) => {
    console.error(`worker ${worker.process.pid} exited (${signal ?? code})`);
    process.exit(1);
  });
  const shutdown = () => {
    cluster.removeAllListeners("exit");
    for (const worker of Object.values(cluster.workers)) worker.kill();
    process.exit(0);
  };
  process.on("SIGTERM", shutdown);
  process.on("SIGINT", shutdown);
} else {
  // Not listening itself: the primary hands it the connections.
  const io = await fixtureServer(createServer(), createAdapter());
  setupWorker(io);
  const shutdown = () => process.exit(0);
  process.on("SIGTERM", shutdown);
  process.on("SIGINT", shutdown);
  process.send({ type: READY });
}
