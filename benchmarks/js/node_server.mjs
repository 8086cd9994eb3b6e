// The benchmark fixture on Node's socket.io 4.8 (the same behaviour as trio_sio_app.py).
//
//   node benchmarks/js/node_server.mjs PORT
//
// socket.io comes from tests/js/node_modules (npm ci --prefix tests/js), pinned by its lock.
// Binds 127.0.0.1 only. Prints "listening PORT" once ready.
import { createServer } from "node:http";

import { requireFromTestsJs } from "./modules.mjs";

const { Server } = requireFromTestsJs("socket.io");

const port = Number(process.argv[2] ?? "0");
const httpServer = createServer();
// Defaults except CORS, as for the Python fixtures. (perMessageDeflate is off by default in
// engine.io 6; the load generator does not offer it anyway.)
const io = new Server(httpServer, { cors: { origin: "*" }, serveClient: false });

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

const shutdown = () => {
  io.close();
  process.exit(0);
};
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);

httpServer.listen(port, "127.0.0.1", 2048, () => {
  console.log(`listening ${httpServer.address().port}`);
});
