// The benchmark fixture on Node's socket.io 4.8 (the same behaviour as trio_sio_app.py; the
// handlers are in fixture.mjs).
//
//   node benchmarks/js/node_server.mjs PORT
//   BENCH_REDIS_URL=redis://127.0.0.1:RPORT/0 BENCH_REDIS_ADAPTER=sharded node ... PORT
//
// socket.io comes from tests/js/node_modules (npm ci --prefix tests/js), pinned by its lock.
// Binds 127.0.0.1 only. Prints "listening PORT" once ready.
import { createServer } from "node:http";

import { fixtureServer } from "./fixture.mjs";

const port = Number(process.argv[2] ?? "0");
const httpServer = createServer();
const io = await fixtureServer(httpServer);

const shutdown = () => {
  io.close();
  process.exit(0);
};
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);

httpServer.listen(port, "127.0.0.1", 2048, () => {
  console.log(`listening ${httpServer.address().port}`);
});
