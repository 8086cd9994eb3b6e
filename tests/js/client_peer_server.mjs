// Node's socket.io 4.8 server running the fixture app of shared/conformance/CONTRACT.md, for
// the tests of trio_sio's client (tests/test_client.py), plus one event of its own:
// `drop-transport` closes the client's Engine.IO connection (a transport drop, after which
// the client reconnects). With TRIO_SIO_RECOVERY=1 it has connectionStateRecovery on
// (maxDisconnectionDuration 2 s), as tests/conformance_app.py has with the same variable.
//
//   node client_peer_server.mjs [port]
//
// Prints one JSON line {"port": N} once listening; runs until killed.
import { createServer } from "node:http";

import { Server } from "socket.io";

const httpServer = createServer();
const io = new Server(httpServer, {
  pingInterval: 300,
  pingTimeout: 200,
  maxHttpBufferSize: 1e6,
  connectTimeout: 1000,
  cors: { origin: "*" },
  ...(process.env.TRIO_SIO_RECOVERY === "1"
    ? { connectionStateRecovery: { maxDisconnectionDuration: 2000 } }
    : {}),
});

function withAck(args) {
  return typeof args[args.length - 1] === "function" ? args.pop() : () => {};
}

for (const nsp of [io.of("/"), io.of("/custom")]) {
  nsp.on("connection", (socket) => {
    socket.emit("auth", socket.handshake.auth);
    socket.on("message", (...args) => socket.emit("message-back", ...args));
    socket.on("message-with-ack", (...args) => {
      const ack = withAck(args);
      ack(...args);
    });
  });
}

io.on("connection", (socket) => {
  socket.on("join", (room, ack) => {
    socket.join(room);
    ack(room);
  });
  socket.on("leave", (room, ack) => {
    socket.leave(room);
    ack(room);
  });
  socket.on("room-broadcast", (room, payload, ack) => {
    socket.to(room).emit("room-message", room, payload);
    ack();
  });
  socket.on("request-ack", async (payload, ack) => {
    try {
      ack(await socket.timeout(2000).emitWithAck("ack-me", payload));
    } catch {
      ack({ error: "timeout" });
    }
  });
  socket.on("disconnect-me", () => socket.disconnect());
  socket.on("drop-transport", () => socket.conn.close());
});

io.of("/forbidden").use((socket, next) => {
  const err = new Error("forbidden");
  err.data = { reason: "nope" };
  next(err);
});

httpServer.listen(Number(process.argv[2] ?? 0), "127.0.0.1", () => {
  console.log(JSON.stringify({ port: httpServer.address().port }));
});
