// The benchmark's load generator: speaks Engine.IO v4 / Socket.IO v5 directly, over WebSocket
// (package `ws`, no compression offered) and over HTTP long-polling (node:http), so that it
// costs far less per message than the servers under test. The official clients are used only
// by sanity.mjs.
//
//   node benchmarks/js/loadgen.mjs '<json config>'
//
// Prints exactly one JSON line on stdout: {"ok": true, ...metrics} or {"ok": false, "error"}.
// Every scenario is bounded in count and in time, and the whole process by config.timeout.
// Server CPU time and RSS are read from /proc for config.serverPids (each with its child
// processes; config.serverPid is one) at the edges of the measurement window, by this process,
// so the window is exact; config.redisPid's CPU too, when a Redis carries the server's traffic.
// The xnode_bcast scenario takes config.urls, two nodes of one cluster (serverPids in the
// same order).
import { readFileSync, readdirSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { performance } from "node:perf_hooks";

import { requireFromTestsJs } from "./modules.mjs";

const WebSocket = requireFromTestsJs("ws");

const config = JSON.parse(process.argv[2] ?? "{}");
const base = new URL(config.url);
const ENDPOINT = "/socket.io/";
const RS = "\x1e";
const CH_0 = 0x30;
const CH_2 = 0x32;
const CH_3 = 0x33;
const CH_4 = 0x34;
const CH_BRACKET = 0x5b;

function finish(result, code = 0) {
  process.stdout.write(JSON.stringify(result) + "\n", () => process.exit(code));
}

const overall = setTimeout(
  () => finish({ ok: false, error: `overall timeout of ${config.timeout}s` }, 2),
  (config.timeout ?? 120) * 1000,
);
overall.unref();

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const now = () => performance.now();

/** `promise`, or a rejection once `ms` milliseconds have passed. */
function withDeadline(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

// --- /proc: server CPU and RSS ---------------------------------------------------------------

function processTree(pid) {
  const pids = [pid];
  for (let i = 0; i < pids.length && i < 64; i++) {
    let tasks = [];
    try {
      tasks = readdirSync(`/proc/${pids[i]}/task`);
    } catch {
      continue;
    }
    for (const task of tasks) {
      try {
        const children = readFileSync(`/proc/${pids[i]}/task/${task}/children`, "utf8").trim();
        if (children) pids.push(...children.split(/\s+/).map(Number));
      } catch {
        // the task ended meanwhile
      }
    }
  }
  return pids;
}

/** The processes measured as the server: every node of a cluster (with its children). */
const serverPids = config.serverPids ?? (config.serverPid ? [config.serverPid] : []);

/** CPU ticks [user, system] of the servers' process trees (all of them by default). */
function serverTicks(pids = serverPids) {
  let user = 0;
  let system = 0;
  for (const pid of pids.flatMap(processTree)) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      user += Number(fields[11]); // utime (field 14 of proc(5))
      system += Number(fields[12]); // stime (field 15)
    } catch {
      // gone
    }
  }
  return [user, system];
}

let sysAtStart = 0;
let sysAtEnd = 0;
// Redis's CPU ticks and the wall clock at the edges of the window (see `announce`).
let redisAtStart = 0;
let redisAtEnd = 0;
let windowStart = 0;
let windowEnd = 0;

/** CPU seconds of the servers' process trees (all of them by default). */
function serverCpu(pids = serverPids) {
  if (pids.length === 0) return NaN;
  const [user, system] = serverTicks(pids);
  return (user + system) / (config.clkTck ?? 100);
}

/** The server's system CPU seconds in the measurement window (see `announce`). */
function serverSys() {
  if (serverPids.length === 0) return NaN;
  return (sysAtEnd - sysAtStart) / (config.clkTck ?? 100);
}

function redisTicks() {
  const [user, system] = serverTicks([config.redisPid]);
  return user + system;
}

/** Redis's CPU in the measurement window, when there is one: seconds and share of the window. */
function redisWindow() {
  if (!config.redisPid || windowEnd <= windowStart) return {};
  const redisCpu = (redisAtEnd - redisAtStart) / (config.clkTck ?? 100);
  return { redisCpu, redisCpuShare: redisCpu / ((windowEnd - windowStart) / 1000) };
}

/** Server resident memory in KiB (the whole process tree). */
function serverRss() {
  if (serverPids.length === 0) return NaN;
  let kib = 0;
  for (const pid of serverPids.flatMap(processTree)) {
    try {
      const status = readFileSync(`/proc/${pid}/status`, "utf8");
      const match = /VmRSS:\s+(\d+) kB/.exec(status);
      if (match) kib += Number(match[1]);
    } catch {
      // gone
    }
  }
  return kib;
}

/** With config.announce, mark the measurement window on stderr (benchmarks/profile.py starts
 * and stops its profiler on these lines). */
function announce(edge) {
  if (edge === "start") {
    sysAtStart = serverTicks()[1];
    if (config.redisPid) redisAtStart = redisTicks();
    windowStart = now();
  } else {
    sysAtEnd = serverTicks()[1];
    if (config.redisPid) redisAtEnd = redisTicks();
    windowEnd = now();
  }
  if (config.announce) process.stderr.write(`window-${edge}\n`);
}

/** This process's CPU seconds so far (to show the load generator is not the bottleneck). */
function ownCpu() {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

// --- WebSocket clients -----------------------------------------------------------------------

function wsUrl(sid, at = base) {
  const url = new URL(ENDPOINT, at);
  url.protocol = "ws:";
  url.search = sid ? `?EIO=4&transport=websocket&sid=${sid}` : "?EIO=4&transport=websocket";
  return url.href;
}

// No permessage-deflate offer by default (engine.io leaves it off); config.deflate offers it
// as browsers and engine.io-client do, to measure what compression costs a server that
// accepts it (hypercorn always does).
const WS_OPTIONS = { perMessageDeflate: Boolean(config.deflate), skipUTF8Validation: true };

/** Parse the ack id of a `43<id>[...]` frame held in a Buffer, or -1. */
function ackIdOf(buf) {
  if (buf.length < 3 || buf[0] !== CH_4 || buf[1] !== CH_3) return -1;
  let id = 0;
  let i = 2;
  for (; i < buf.length && buf[i] !== CH_BRACKET; i++) id = id * 10 + (buf[i] - CH_0);
  return i > 2 ? id : -1;
}

/**
 * A Socket.IO client on one WebSocket, namespace "/". Hot paths (acks, deliveries of event
 * "m") are recognised on the raw bytes; everything else is rare and parsed as text.
 */
class WsClient {
  /** `at`: the server's URL (config.url by default; a cluster's node in xnode_bcast). */
  constructor(at = base) {
    this.at = at;
    this.ws = null;
    this.acks = new Map(); // id -> resolve(buf)
    this.nextId = 0;
    this.onDelivery = null; // (client) => void, for 42["m",...]
    this.deliveries = 0;
    this.closed = false;
  }

  /** Engine.IO handshake + Socket.IO CONNECT over a fresh WebSocket. */
  connect(timeoutMs) {
    return withDeadline(
      new Promise((resolve, reject) => {
        const ws = (this.ws = new WebSocket(wsUrl(null, this.at), WS_OPTIONS));
        let stage = 0;
        ws.on("error", reject);
        ws.on("close", () => {
          this.closed = true;
          reject(new Error("closed during connect"));
        });
        ws.on("message", (data) => {
          if (stage === 2) return this.onFrame(data);
          const text = data.toString();
          if (stage === 0 && text[0] === "0") {
            stage = 1;
            ws.send("40");
          } else if (stage === 1 && text.startsWith("40")) {
            stage = 2;
            resolve(this);
          } else if (text === "2") {
            ws.send("3");
          } else if (stage === 1 && text.startsWith("44")) {
            reject(new Error(`connect refused: ${text}`));
          }
        });
      }),
      timeoutMs,
      "websocket connect",
    );
  }

  /** Take over a WebSocket upgraded from polling (see PollClient.upgrade). */
  adopt(ws) {
    this.ws = ws;
    ws.removeAllListeners("message");
    ws.on("message", (data) => this.onFrame(data));
    ws.on("close", () => {
      this.closed = true;
    });
  }

  onFrame(data) {
    if (data[0] === CH_4) {
      if (data[1] === CH_3) {
        const resolve = this.acks.get(ackIdOf(data));
        if (resolve !== undefined) {
          this.acks.delete(ackIdOf(data));
          resolve(data);
        }
        return;
      }
      if (data[1] === CH_2 && data[2] === CH_BRACKET) {
        this.deliveries++;
        if (this.onDelivery !== null) this.onDelivery(this);
        return;
      }
      return;
    }
    if (data.length === 1 && data[0] === CH_2) this.ws.send("3");
  }

  /** Emit `event` with JSON-encoded args text `argsJson` (without brackets); resolve on ack. */
  call(event, argsJson) {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.acks.set(id, resolve);
      this.ws.send(`42${id}["${event}"${argsJson ? "," + argsJson : ""}]`);
    });
  }

  close() {
    this.closed = true;
    if (this.ws !== null) this.ws.terminate();
  }
}

// --- HTTP long-polling clients ---------------------------------------------------------------

const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 4096 });

function httpRequest(method, query, body, timeoutMs) {
  return new Promise((resolve, reject) => {
    const headers = body === undefined ? {} : { "content-type": "text/plain;charset=UTF-8" };
    const req = http.request(
      {
        host: base.hostname,
        port: base.port,
        method,
        path: `${ENDPOINT}?${query}`,
        agent,
        headers,
        timeout: timeoutMs,
      },
      (res) => {
        const chunks = [];
        res.on("data", (chunk) => chunks.push(chunk));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString();
          if (res.statusCode !== 200) reject(new Error(`${method} ${res.statusCode}: ${text}`));
          else resolve(text);
        });
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`${method} timed out after ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end(body);
  });
}

/**
 * One keep-alive HTTP/1.1 connection with at most one request in flight, written in one write
 * with `Host`, `Content-Type: text/plain;charset=UTF-8` and `Content-Length`, as browsers and
 * the official clients write them. The "dedicated" polling mode gives each session one of these
 * for its GETs and another for its POSTs (issue 18's second load generator did so).
 */
class KeepAliveConnection {
  constructor() {
    this.socket = null;
    this.buffer = Buffer.alloc(0);
    this.pending = null; // {resolve, reject, method, timer} of the request in flight
  }

  connect() {
    return new Promise((resolve, reject) => {
      const socket = net.connect(Number(base.port), base.hostname, () => resolve());
      socket.setNoDelay(true);
      socket.on("error", (error) => (this.pending ? this.fail(error) : reject(error)));
      socket.on("close", () => this.fail(new Error("connection closed by the server")));
      socket.on("data", (chunk) => this.onData(chunk));
      this.socket = socket;
    });
  }

  request(method, query, body, timeoutMs) {
    if (this.pending !== null) throw new Error("one request at a time on a connection");
    const payload = body === undefined ? null : Buffer.from(body);
    const head =
      `${method} ${ENDPOINT}?${query} HTTP/1.1\r\nHost: ${base.host}\r\nAccept: */*\r\n` +
      (payload === null
        ? "\r\n"
        : `Content-Type: text/plain;charset=UTF-8\r\nContent-Length: ${payload.length}\r\n\r\n`);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => this.fail(new Error(`${method} timed out after ${timeoutMs} ms`)),
        timeoutMs,
      );
      this.pending = { resolve, reject, method, timer };
      this.socket.write(payload === null ? head : Buffer.concat([Buffer.from(head), payload]));
    });
  }

  onData(chunk) {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    const end = this.buffer.indexOf("\r\n\r\n");
    if (end < 0 || this.pending === null) return;
    const head = this.buffer.subarray(0, end).toString("latin1");
    const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
    let body;
    let total;
    if (length !== null) {
      total = end + 4 + Number(length[1]);
      if (this.buffer.length < total) return;
      body = this.buffer.subarray(end + 4, total);
    } else if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) {
      const chunks = [];
      let at = end + 4;
      for (;;) {
        const line = this.buffer.indexOf("\r\n", at);
        if (line < 0) return; // wait for more bytes
        const size = parseInt(this.buffer.subarray(at, line).toString("latin1"), 16);
        if (this.buffer.length < line + 2 + size + 2) return;
        if (size === 0) {
          total = line + 4;
          break;
        }
        chunks.push(this.buffer.subarray(line + 2, line + 2 + size));
        at = line + 2 + size + 2;
      }
      body = Buffer.concat(chunks);
    } else {
      return this.fail(new Error(`response without a length: ${head}`));
    }
    const text = body.toString();
    this.buffer = this.buffer.subarray(total);
    const { resolve, reject, method, timer } = this.pending;
    this.pending = null;
    clearTimeout(timer);
    const status = Number(head.slice(9, 12));
    if (status !== 200) reject(new Error(`${method} ${status}: ${text}`));
    else resolve(text);
  }

  fail(error) {
    if (this.pending === null) return;
    const { reject, timer } = this.pending;
    this.pending = null;
    clearTimeout(timer);
    reject(error);
  }

  close() {
    this.socket?.destroy();
  }
}

/** A Socket.IO client over long-polling, namespace "/". */
class PollClient {
  /**
   * connections: "pooled" (node:http's shared keep-alive agent: any free socket) or "dedicated"
   * (one KeepAliveConnection for the GETs and one for the POSTs).
   */
  constructor(connections = "pooled") {
    this.connections = connections;
    this.getConnection = null;
    this.postConnection = null;
    this.sid = null;
    this.outbox = []; // packets waiting for the next POST
    this.posting = false;
    this.acks = new Map();
    this.nextId = 0;
    this.stopped = false;
    this.connected = null; // resolve of connect()
    this.failure = null;
    this.timeoutMs = 10_000;
  }

  query() {
    return `EIO=4&transport=polling&sid=${this.sid}`;
  }

  async open() {
    if (this.connections !== "dedicated") return;
    this.getConnection = new KeepAliveConnection();
    this.postConnection = new KeepAliveConnection();
    await Promise.all([this.getConnection.connect(), this.postConnection.connect()]);
  }

  request(method, query, body, timeoutMs) {
    const connection = method === "GET" ? this.getConnection : this.postConnection;
    if (connection === null) return httpRequest(method, query, body, timeoutMs);
    return connection.request(method, query, body, timeoutMs);
  }

  close() {
    this.stopped = true;
    this.getConnection?.close();
    this.postConnection?.close();
  }

  async handshake(timeoutMs) {
    this.timeoutMs = timeoutMs;
    await this.open();
    const open = await this.request("GET", "EIO=4&transport=polling", undefined, timeoutMs);
    if (open[0] !== "0") throw new Error(`bad open packet: ${open.slice(0, 80)}`);
    this.sid = JSON.parse(open.slice(1)).sid;
  }

  /** Handshake, CONNECT and its reply, with a single GET (used before an upgrade). */
  async connectOnce(timeoutMs) {
    await this.handshake(timeoutMs);
    await this.request("POST", this.query(), "40", timeoutMs);
    const deadline = now() + timeoutMs;
    for (let polls = 0; polls < 8 && now() < deadline; polls++) {
      const payload = await this.request("GET", this.query(), undefined, timeoutMs);
      if (payload.split(RS).some((p) => p.startsWith("40"))) return;
    }
    throw new Error("no CONNECT reply over polling");
  }

  /** Handshake, CONNECT, then keep a GET pending for as long as the client runs. */
  async connectAndPoll(timeoutMs) {
    await this.handshake(timeoutMs);
    const connected = new Promise((resolve) => {
      this.connected = resolve;
    });
    this.pollLoop();
    this.send("40");
    await withDeadline(connected, timeoutMs, "polling connect");
  }

  async pollLoop() {
    // Bounded by this.stopped (set at the end of the run) and by errors.
    while (!this.stopped) {
      let payload;
      try {
        payload = await this.request("GET", this.query(), undefined, 60_000);
      } catch (error) {
        if (!this.stopped) this.failure = error;
        return;
      }
      for (const packet of payload.split(RS)) this.onPacket(packet);
    }
  }

  onPacket(packet) {
    if (packet.startsWith("43")) {
      const bracket = packet.indexOf("[");
      const id = Number(packet.slice(2, bracket));
      const resolve = this.acks.get(id);
      if (resolve !== undefined) {
        this.acks.delete(id);
        resolve(packet);
      }
    } else if (packet === "2") {
      this.send("3");
    } else if (packet.startsWith("40")) {
      if (this.connected !== null) this.connected();
    } else if (packet === "1") {
      this.failure = new Error("server closed the session");
      this.stopped = true;
    }
  }

  /** Queue a packet; POSTs are never overlapped (the protocol forbids it). */
  send(packet) {
    this.outbox.push(packet);
    if (!this.posting) this.flush();
  }

  async flush() {
    this.posting = true;
    try {
      while (this.outbox.length > 0 && !this.stopped) {
        const body = this.outbox.join(RS);
        this.outbox = [];
        await this.request("POST", this.query(), body, this.timeoutMs);
      }
    } catch (error) {
      if (!this.stopped) this.failure = error;
    } finally {
      this.posting = false;
    }
  }

  call(event, argsJson) {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.acks.set(id, resolve);
      this.send(`42${id}["${event}"${argsJson ? "," + argsJson : ""}]`);
    });
  }

  /** Polling -> WebSocket upgrade (2probe/3probe/5); returns the WebSocket. */
  upgrade(timeoutMs) {
    return withDeadline(
      new Promise((resolve, reject) => {
        const ws = new WebSocket(wsUrl(this.sid), WS_OPTIONS);
        ws.on("error", reject);
        ws.on("close", () => reject(new Error("closed during upgrade")));
        ws.on("open", () => ws.send("2probe"));
        ws.on("message", (data) => {
          const text = data.toString();
          if (text === "3probe") {
            ws.send("5");
            ws.removeAllListeners("close");
            resolve(ws);
          }
        });
      }),
      timeoutMs,
      "upgrade",
    );
  }
}

// --- helpers ---------------------------------------------------------------------------------

function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index];
}

/** Run `task(i)` for i in 0..count-1, at most `concurrency` at once, until `deadline`. */
async function ramp(count, concurrency, deadline, task) {
  let next = 0;
  let done = 0;
  const errors = [];
  async function worker() {
    while (next < count && now() < deadline && errors.length < 20) {
      const i = next++;
      try {
        await task(i);
        done++;
      } catch (error) {
        errors.push(String(error?.message ?? error));
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return { done, errors };
}

async function openWsClients(count, concurrency, timeLimitS, at = base) {
  const clients = [];
  const started = now();
  const { done, errors } = await ramp(count, concurrency, started + timeLimitS * 1000, async () => {
    const client = new WsClient(at);
    clients.push(client);
    await client.connect(10_000);
  });
  if (done < count) {
    throw new Error(`connected ${done}/${count} clients in ${timeLimitS}s: ${errors.slice(0, 3)}`);
  }
  return clients;
}

// --- scenarios -------------------------------------------------------------------------------

/**
 * Closed-loop echo: each of `clients` keeps one echo call outstanding while `live(client)`,
 * `check`ing every reply; `warmup` s, then `duration` s measured (the latencies of at most
 * `maxSamples` acks). `what` names the calls in the drain deadline's message.
 */
async function closedLoopEcho(clients, { live, check = () => {}, maxSamples, what }) {
  const { warmup, duration } = config;
  const payload = JSON.stringify("x".repeat(config.payloadSize ?? 16));
  const latencies = new Float64Array(maxSamples);
  let samples = 0;
  let acks = 0;
  let measuring = false;
  let running = true;
  const loops = clients.map(async (client) => {
    // Bounded by `running` (cleared after warmup + duration); a lost ack is caught by the
    // drain deadline below.
    while (running && live(client)) {
      const t0 = now();
      const reply = await client.call("echo", payload);
      if (measuring) {
        acks++;
        if (samples < latencies.length) latencies[samples++] = now() - t0;
      }
      check(reply);
    }
  });
  await sleep(warmup * 1000);
  announce("start");
  const cpu0 = serverCpu();
  const own0 = ownCpu();
  const t0 = now();
  measuring = true;
  await sleep(duration * 1000);
  measuring = false;
  const elapsed = (now() - t0) / 1000;
  const cpu = serverCpu() - cpu0;
  announce("end");
  const loadgenCpuShare = (ownCpu() - own0) / elapsed;
  running = false;
  await withDeadline(Promise.all(loops), 10_000, `${what} outstanding at the end`);
  const sorted = latencies.subarray(0, samples).sort();
  return {
    acks,
    elapsed,
    acksPerSec: acks / elapsed,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    serverCpu: cpu,
    serverCpuShare: cpu / elapsed,
    serverSysShare: serverSys() / cpu,
    loadgenCpuShare,
    cpuUsPerAck: (cpu / acks) * 1e6,
  };
}

/** Closed-loop echo over WebSocket: each client keeps one echo outstanding. */
async function echoScenario() {
  const clients = await openWsClients(config.clients, 100, 30);
  const result = await closedLoopEcho(clients, {
    live: () => true,
    check: (reply) => {
      if (reply.length < 4) throw new Error(`bad ack ${reply}`);
    },
    maxSamples: 4_000_000,
    what: "echo acks",
  });
  for (const client of clients) client.close();
  return result;
}

/** Broadcast fan-out: `clients` receivers in one room; one sender calls bcast repeatedly. */
async function bcastScenario() {
  const { clients: count, n, size, duration } = config;
  const minRepeats = config.minRepeats ?? 3;
  const maxRepeats = config.maxRepeats ?? 200;
  const receivers = await openWsClients(count, 100, config.connectTimeLimit ?? 60);
  await ramp(count, 200, now() + 30_000, async (i) => {
    const reply = await withDeadline(receivers[i].call("join", '"bench"'), 10_000, "join ack");
    if (!reply.toString().includes('"bench"')) throw new Error(`bad join ack ${reply}`);
  });
  const [sender] = await openWsClients(1, 1, 10);
  let received = 0;
  let lastDelivery = 0;
  let target = 0;
  let reached = null; // resolve, called once `received` reaches `target`
  for (const receiver of receivers) {
    receiver.onDelivery = () => {
      received++;
      if (received === target) {
        lastDelivery = now();
        if (reached !== null) reached();
      }
    };
  }
  const spec = JSON.stringify({ room: "bench", n, size });

  async function broadcastOnce() {
    const before = received;
    target = received + count * n;
    const allDelivered = new Promise((resolve) => {
      reached = resolve;
    });
    const t0 = now();
    const ack = await withDeadline(sender.call("bcast", spec), 30_000, "bcast ack");
    try {
      await withDeadline(allDelivered, 30_000, "deliveries");
    } catch {
      throw new Error(`only ${received - before}/${count * n} deliveries in 30 s`);
    }
    reached = null;
    if (!ack.toString().endsWith(`[${n}]`)) throw new Error(`bad bcast ack ${ack}`);
    return lastDelivery - t0;
  }

  await broadcastOnce(); // warm-up
  announce("start");
  const cpu0 = serverCpu();
  const own0 = ownCpu();
  const started = now();
  const times = [];
  while (
    times.length < maxRepeats &&
    (times.length < minRepeats || now() - started < duration * 1000)
  ) {
    times.push(await broadcastOnce());
  }
  const cpu = serverCpu() - cpu0;
  announce("end");
  const window = (now() - started) / 1000;
  const loadgenCpuShare = (ownCpu() - own0) / window;
  const busy = times.reduce((a, b) => a + b, 0) / 1000;
  const deliveries = times.length * count * n;
  const perClient = receivers.map((r) => r.deliveries);
  const expected = (times.length + 1) * n;
  if (perClient.some((d) => d !== expected)) {
    throw new Error(`a receiver got ${Math.min(...perClient)}..${Math.max(...perClient)} != ${expected}`);
  }
  times.sort((a, b) => a - b);
  for (const client of [...receivers, sender]) client.close();
  return {
    broadcasts: times.length,
    deliveries,
    deliveriesPerSec: deliveries / busy,
    lastDeliveryMs: percentile(times, 50),
    serverCpu: cpu,
    serverCpuShare: cpu / window,
    serverSysShare: serverSys() / cpu,
    loadgenCpuShare,
    cpuUsPerDelivery: (cpu / deliveries) * 1e6,
  };
}

/**
 * Cross-node broadcast: `clients` receivers in one room, split evenly across the two nodes of
 * one cluster (config.urls: A, then B); one sender on A calls bcast repeatedly, one call at a
 * time, so that every event reaches A's receivers directly and B's through the cluster
 * adapter (Redis). Timed from the bcast call: the first and the last delivery on B, the last
 * on A. CPU: both nodes together, and B alone (what receiving through the adapter costs).
 */
async function xnodeBcastScenario() {
  const { clients: count, n, size, duration } = config;
  const minRepeats = config.minRepeats ?? 3;
  const maxRepeats = config.maxRepeats ?? 200;
  const [atA, atB] = config.urls.map((url) => new URL(url));
  const limit = config.connectTimeLimit ?? 60;
  const onA = await openWsClients(Math.ceil(count / 2), 100, limit, atA);
  const onB = await openWsClients(Math.floor(count / 2), 100, limit, atB);
  const receivers = [...onA, ...onB];
  await ramp(count, 200, now() + 30_000, async (i) => {
    const reply = await withDeadline(receivers[i].call("join", '"bench"'), 10_000, "join ack");
    if (!reply.toString().includes('"bench"')) throw new Error(`bad join ack ${reply}`);
  });
  const [sender] = await openWsClients(1, 1, 10, atA);
  const received = { A: 0, B: 0 };
  const target = { A: 0, B: 0 };
  let firstB = 0;
  let lastA = 0;
  let lastB = 0;
  let lastAny = 0; // the time of the latest delivery, for waiting until the nodes are quiet
  let reached = null; // resolve, called once both nodes reach their targets
  const done = () => received.A >= target.A && received.B >= target.B;
  const listen = (clients, node) => {
    for (const client of clients) {
      client.onDelivery = () => {
        const t = (lastAny = now());
        received[node]++;
        if (node === "B" && firstB === 0) firstB = t;
        if (received[node] === target[node]) {
          if (node === "A") lastA = t;
          else lastB = t;
          if (done() && reached !== null) reached();
        }
      };
    }
  };
  listen(onA, "A");
  listen(onB, "B");
  const spec = JSON.stringify({ room: "bench", n, size });

  /** One bcast and its deliveries: [to the last anywhere, first on B, last on B, last on A]. */
  async function broadcastOnce(deadlineMs) {
    const before = { ...received };
    target.A = received.A + onA.length * n;
    target.B = received.B + onB.length * n;
    firstB = lastA = lastB = 0;
    const allDelivered = new Promise((resolve) => {
      reached = resolve;
    });
    const t0 = now();
    const ack = await withDeadline(sender.call("bcast", spec), 30_000, "bcast ack");
    try {
      await withDeadline(allDelivered, deadlineMs, "deliveries");
    } catch {
      const a = received.A - before.A;
      const b = received.B - before.B;
      throw new Error(`deliveries in ${deadlineMs} ms: A ${a}/${onA.length * n}, B ${b}/${onB.length * n}`);
    } finally {
      reached = null;
    }
    if (!ack.toString().endsWith(`[${n}]`)) throw new Error(`bad bcast ack ${ack}`);
    return [Math.max(lastA, lastB) - t0, firstB - t0, lastB - t0, lastA - t0];
  }

  // Warm-up, which also waits for the cluster: a node's adapter subscribes in the background
  // (the sharded adapter per room, on the first join), so a broadcast may miss B at first.
  // Repeat until one reaches everyone; then count from zero.
  const tries = config.readyTries ?? 20;
  for (let attempt = 1; ; attempt++) {
    try {
      await broadcastOnce(config.readyTimeoutMs ?? 5000);
      break;
    } catch (error) {
      if (attempt >= tries) throw new Error(`the cluster never delivered everywhere: ${error.message}`);
      for (let quiet = 0; quiet < 100 && now() - lastAny < 300; quiet++) await sleep(100);
    }
  }
  for (const client of receivers) client.deliveries = 0;

  announce("start");
  const cpu0 = serverCpu();
  const nodeB = serverPids.slice(1, 2); // without it (run by hand), NaN
  const cpuB0 = serverCpu(nodeB);
  const own0 = ownCpu();
  const started = now();
  const runs = [];
  while (runs.length < maxRepeats && (runs.length < minRepeats || now() - started < duration * 1000)) {
    runs.push(await broadcastOnce(30_000));
  }
  const cpu = serverCpu() - cpu0;
  const cpuB = serverCpu(nodeB) - cpuB0;
  announce("end");
  const window = (now() - started) / 1000;
  const loadgenCpuShare = (ownCpu() - own0) / window;
  const perClient = receivers.map((r) => r.deliveries);
  const expected = runs.length * n;
  if (perClient.some((d) => d !== expected)) {
    throw new Error(`a receiver got ${Math.min(...perClient)}..${Math.max(...perClient)} != ${expected}`);
  }
  for (const client of [...receivers, sender]) client.close();
  const column = (i) => runs.map((run) => run[i]).sort((a, b) => a - b);
  const sum = (values) => values.reduce((a, b) => a + b, 0) / 1000;
  const deliveries = runs.length * count * n;
  const remoteDeliveries = runs.length * onB.length * n;
  const { redisCpu } = redisWindow();
  return {
    broadcasts: runs.length,
    deliveries,
    remoteDeliveries,
    deliveriesPerSec: deliveries / sum(column(0)),
    remoteDeliveriesPerSec: remoteDeliveries / sum(column(2)),
    lastDeliveryMs: percentile(column(0), 50),
    remoteFirstMs: percentile(column(1), 50),
    remoteLastMs: percentile(column(2), 50),
    localLastMs: percentile(column(3), 50),
    serverCpu: cpu,
    serverCpuShare: cpu / window,
    serverSysShare: serverSys() / cpu,
    remoteCpuShare: cpuB / window,
    loadgenCpuShare,
    cpuUsPerDelivery: (cpu / deliveries) * 1e6,
    cpuUsPerRemoteDelivery: (cpuB / remoteDeliveries) * 1e6,
    redisCpuUsPerEvent: redisCpu === undefined ? NaN : (redisCpu / (runs.length * n)) * 1e6,
  };
}

/** Connection scale: ramp to `clients` idle connections; handshakes/s and RSS per connection. */
async function connectScenario() {
  const { clients: count, transport, concurrency } = config;
  const timeLimit = config.timeLimit ?? 60;
  const held = [];
  await sleep(200);
  const rss0 = serverRss();
  announce("start");
  const cpu0 = serverCpu();
  const own0 = ownCpu();
  const started = now();
  const { done, errors } = await ramp(count, concurrency, started + timeLimit * 1000, async () => {
    if (transport === "websocket") {
      const client = new WsClient();
      held.push(client);
      await client.connect(15_000);
    } else {
      const poller = new PollClient();
      await poller.connectOnce(15_000);
      const client = new WsClient();
      held.push(client);
      client.adopt(await poller.upgrade(15_000));
    }
  });
  const elapsed = (now() - started) / 1000;
  const cpu = serverCpu() - cpu0;
  announce("end");
  const loadgenCpuShare = (ownCpu() - own0) / elapsed;
  await sleep((config.settle ?? 1) * 1000);
  const rss1 = serverRss();
  const open = held.filter((c) => !c.closed).length;
  for (const client of held) client.close();
  return {
    connected: done,
    stillOpen: open,
    errors: errors.slice(0, 5),
    errorCount: errors.length,
    elapsed,
    handshakesPerSec: done / elapsed,
    serverCpu: cpu,
    serverCpuShare: cpu / elapsed,
    serverSysShare: serverSys() / cpu,
    loadgenCpuShare,
    cpuUsPerHandshake: (cpu / done) * 1e6,
    rssBeforeKiB: rss0,
    rssAfterKiB: rss1,
    rssPerConnKiB: (rss1 - rss0) / Math.max(open, 1),
  };
}

/** Closed-loop echo over long-polling: a GET always pending, echoes POSTed one at a time. */
async function pollEchoScenario() {
  const { clients: count } = config;
  const clients = [];
  const { done, errors } = await ramp(count, 50, now() + 30_000, async () => {
    const client = new PollClient(config.connections ?? "pooled");
    clients.push(client);
    await client.connectAndPoll(10_000);
  });
  if (done < count) throw new Error(`connected ${done}/${count}: ${errors.slice(0, 3)}`);
  const result = await closedLoopEcho(clients, {
    live: (client) => client.failure === null,
    maxSamples: 1_000_000,
    what: "polling echo acks",
  });
  const failures = clients.filter((c) => c.failure !== null).map((c) => String(c.failure));
  for (const client of clients) client.close();
  if (failures.length > 0) throw new Error(`${failures.length} clients failed: ${failures[0]}`);
  return result;
}

const SCENARIOS = {
  echo: echoScenario,
  bcast: bcastScenario,
  connect: connectScenario,
  poll_echo: pollEchoScenario,
  xnode_bcast: xnodeBcastScenario,
};

try {
  const scenario = SCENARIOS[config.scenario];
  if (scenario === undefined) throw new Error(`unknown scenario ${config.scenario}`);
  const result = await scenario();
  agent.destroy();
  finish({ ok: true, scenario: config.scenario, ...result, ...redisWindow() });
} catch (error) {
  finish({ ok: false, scenario: config.scenario, error: String(error?.stack ?? error) }, 1);
}
