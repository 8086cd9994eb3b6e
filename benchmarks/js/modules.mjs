// Where the benchmark's npm packages come from: tests/js/node_modules, installed from
// tests/js/package-lock.json (socket.io 4.8.1, socket.io-client 4.8.1, and ws 8.17.1, which
// the lock pins as their dependency; for the clusters and workers, @socket.io/redis-adapter
// 8.3.0, @socket.io/redis-streams-adapter 0.3, redis 4.7.1, @socket.io/sticky 2.0.1 and
// @socket.io/cluster-adapter 0.3.0). Set BENCH_NODE_MODULES_FROM to another package.json to
// use another install.
import { createRequire } from "node:module";

const anchor =
  process.env.BENCH_NODE_MODULES_FROM ?? new URL("../../tests/js/package.json", import.meta.url);

export const requireFromTestsJs = createRequire(anchor);

/** The installed version of an npm package, read from its package.json. */
export function packageVersion(name) {
  return requireFromTestsJs(`${name}/package.json`).version;
}
