// Shared plumbing for the scenario scripts: argument parsing, assertions, the overall timeout,
// and printing exactly one JSON result line.
//
// Contract with the Python side (tests/test_official_clients.py):
//   - success: one JSON line on stdout with "ok": true, exit code 0;
//   - failure: one JSON line on stdout with "ok": false and "error", the same message on stderr,
//     exit code 1 (assertion or client error) or 2 (overall timeout).
import { readFileSync } from "node:fs";
import { isDeepStrictEqual, inspect } from "node:util";

export const TRANSPORT_MODES = {
  polling: ["polling"],
  websocket: ["websocket"],
  upgrade: ["polling", "websocket"],
};

/** Version of an installed npm package (read from node_modules next to this file). */
export function packageVersion(name) {
  const url = new URL(`../node_modules/${name}/package.json`, import.meta.url);
  return JSON.parse(readFileSync(url, "utf8")).version;
}

export class ScenarioFailure extends Error {}

/**
 * The scenario cannot be judged: a client lost its session to its surroundings (a heartbeat
 * missed on a starved machine: the contract's ping timeout is 200 ms), not to the behaviour
 * under test. Exits with INCONCLUSIVE, which tests/support/clients.py runs again (4 runs in all).
 */
export class Inconclusive extends ScenarioFailure {}
export const INCONCLUSIVE = 3;

/**
 * Watch `emitters` for `event` (how each one's session ends) from now on. The returned
 * `unlessLost(promise)` settles as `promise` does, unless a session ended before, or in the
 * same turn (a manager's "close" comes right after the connect_error it causes): it then
 * rejects with `lostError(index, reason)` for the first one lost. `lost` lists every loss.
 */
export function watchLosses(emitters, event, lostError) {
  const lost = [];
  let first = null;
  let reject;
  const anyLoss = new Promise((_, r) => {
    reject = r;
  });
  anyLoss.catch(() => {}); // the cleanup's closes come after the result
  emitters.forEach((emitter, index) =>
    emitter.on(event, (reason) => {
      lost.push(`client ${index}: ${reason}`);
      first ??= lostError(index, reason, lost);
      reject(first);
    }),
  );
  const unlessLost = (promise) =>
    Promise.race([promise, anyLoss]).catch((err) => {
      throw first ?? err;
    });
  return { lost, unlessLost };
}

export function fail(message) {
  throw new ScenarioFailure(message);
}

export function check(condition, message) {
  if (!condition) fail(message);
}

/** Turn every binary representation a client may hand us into a Buffer. */
export function normalizeBinary(value) {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof ArrayBuffer) return Buffer.from(value);
  if (ArrayBuffer.isView(value)) {
    return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  }
  if (Array.isArray(value)) return value.map(normalizeBinary);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, normalizeBinary(v)]));
  }
  return value;
}

export function describe(value) {
  return inspect(value, { depth: 6, maxArrayLength: 12, maxStringLength: 120, breakLength: 200 });
}

/** Deep equality where binary values must be binary with the same bytes. */
export function checkEqual(actual, expected, what) {
  if (!isDeepStrictEqual(normalizeBinary(actual), normalizeBinary(expected))) {
    fail(`${what}: expected ${describe(expected)}, got ${describe(actual)}`);
  }
}

/** Like checkEqual, but also insists that every Buffer in `expected` arrived as binary. */
export function checkBinaryEqual(actual, expected, what) {
  const walk = (a, e, path) => {
    if (Buffer.isBuffer(e)) {
      const isBinary = a instanceof ArrayBuffer || ArrayBuffer.isView(a);
      check(isBinary, `${what}: ${path} should be binary, got ${describe(a)}`);
    } else if (Array.isArray(e) && Array.isArray(a)) {
      e.forEach((item, i) => walk(a[i], item, `${path}[${i}]`));
    } else if (e !== null && typeof e === "object" && a !== null && typeof a === "object") {
      for (const key of Object.keys(e)) walk(a[key], e[key], `${path}.${key}`);
    }
  };
  walk(actual, expected, "args");
  checkEqual(actual, expected, what);
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Run one scenario: parse argv, arm the overall timeout, print the JSON line, exit.
 *
 * `scenarios` maps a scenario name to `async (ctx) => observed`, where ctx carries
 * `baseUrl`, `mode` (polling|websocket|upgrade), `transports` (array) and `step(label)`
 * (names the current step for timeout messages). `cleanup()` is awaited after the scenario
 * (pass or fail) and should close every client; `finalState()` adds fields to the result.
 */
export async function runScenarioMain({ client, scenarios, cleanup, finalState }) {
  const [baseUrl, mode, scenario] = process.argv.slice(2);
  const usage =
    `usage: node ${process.argv[1]} <base_url> <polling|websocket|upgrade> <scenario>\n` +
    `scenarios: ${Object.keys(scenarios).join(", ")}`;
  if (!baseUrl || !(mode in TRANSPORT_MODES) || !(scenario in scenarios)) {
    process.stderr.write(`${usage}\n`);
    process.exit(64);
  }
  const timeoutMs = Number(process.env.SCENARIO_TIMEOUT_MS ?? 10000);
  const started = Date.now();
  let currentStep = "start";
  const result = { client, scenario, mode, base_url: baseUrl };

  let finished = false;
  const finish = (code, extra) => {
    if (finished) return;
    finished = true;
    const line = JSON.stringify({ ...result, ...extra, elapsed_ms: Date.now() - started });
    process.stdout.write(`${line}\n`);
    if (code !== 0) process.stderr.write(`${scenario} [${mode}] FAILED: ${extra.error}\n`);
    process.exitCode = code;
    // Exit on our own once every client is closed; force it if something lingers.
    setTimeout(() => process.exit(code), 1000).unref();
  };

  const timer = setTimeout(() => {
    finish(2, { ok: false, error: `timeout after ${timeoutMs} ms during step "${currentStep}"` });
    process.exit(2);
  }, timeoutMs);

  // A failed check inside an event handler surfaces here rather than in the scenario.
  const crash = (err) => {
    clearTimeout(timer);
    const what = err instanceof ScenarioFailure ? err.message : `uncaught ${err?.stack ?? err}`;
    finish(1, { ok: false, error: `step "${currentStep}": ${what}` });
    process.exit(1);
  };
  process.on("uncaughtException", crash);
  process.on("unhandledRejection", crash);

  const ctx = {
    baseUrl: baseUrl.replace(/\/+$/, ""),
    mode,
    transports: TRANSPORT_MODES[mode],
    step(label) {
      currentStep = label;
    },
  };
  try {
    const observed = await scenarios[scenario](ctx);
    ctx.step("final transport check");
    const state = finalState ? await finalState(ctx) : {};
    clearTimeout(timer);
    finish(0, { ok: true, ...state, observed: observed ?? {} });
  } catch (err) {
    clearTimeout(timer);
    const message =
      err instanceof ScenarioFailure
        ? `step "${currentStep}": ${err.message}`
        : `step "${currentStep}": unexpected ${err?.stack ?? describe(err)}`;
    const inconclusive = err instanceof Inconclusive;
    finish(inconclusive ? INCONCLUSIVE : 1, { ok: false, inconclusive, error: message });
  } finally {
    try {
      await cleanup();
    } catch {
      // closing is best effort; the result is already printed
    }
  }
}

/**
 * runScenarioMain for socket.io-client scripts that record the transport they ended on in
 * `state.transport` (checked against the mode) and keep their Managers in `managers`
 * (closed afterwards).
 */
export async function runSocketioScenarios({ scenarios, managers, state, client }) {
  await runScenarioMain({
    client,
    scenarios,
    async cleanup() {
      for (const manager of managers) manager.engine?.close();
    },
    async finalState(ctx) {
      const expected = ctx.mode === "polling" ? "polling" : "websocket";
      check(state.transport === expected, `transport is ${state.transport}, expected ${expected}`);
      return { transport: state.transport, upgraded: ctx.mode === "upgrade" };
    },
  });
}
