// A Node socket.io 4.8 node with @socket.io/redis-streams-adapter 0.3 and connection state
// recovery, for tests/test_redis_streams_adapter.py.
//
//   node streams_node.mjs <redis_url>
//
// Prints {"url": "http://127.0.0.1:PORT"} once it serves. "finish" broadcasts tick 6 to
// "news" and answers "N"; it runs until killed.
import { createServer } from "node:http";

import { createAdapter } from "@socket.io/redis-streams-adapter";
import { createClient } from "redis";
import { Server } from "socket.io";

const [redisUrl] = process.argv.slice(2);
const redis = createClient({ url: redisUrl });
redis.on("error", () => {});
await redis.connect();
const httpServer = createServer();
const io = new Server(httpServer, {
  adapter: createAdapter(redis),
  connectionStateRecovery: { maxDisconnectionDuration: 60000 },
});
io.on("connection", (socket) => {
  socket.on("join", (room, ack) => {
    socket.join(room);
    ack(room);
  });
  socket.on("finish", (ack) => {
    io.to("news").emit("tick", 6);
    ack("N");
  });
});
httpServer.listen(0, "127.0.0.1", () => {
  process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${httpServer.address().port}` })}\n`);
});
