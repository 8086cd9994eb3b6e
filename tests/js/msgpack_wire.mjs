// The msgpack format as npm's socket.io-msgpack-parser itself writes and reads it, for
// tests/test_parsers.py to compare trio_sio's MsgpackParser with.
//
//   node msgpack_wire.mjs < request.json
//
// stdin: {"decode": {name: hex}}, messages trio_sio encoded. stdout: one JSON line
// {"parser": version, "encoded": {name: hex}, "decoded": {name: packet or {"error": message}}}
// with the packets below as the npm Encoder writes them (what socket.io-client and Node's
// socket.io send), and what the npm Decoder (the client's) makes of each message given.
// In the decoded packets a Buffer is {"$bin": hex}, an ArrayBuffer {"$arraybuffer": hex},
// a Date {"$date": milliseconds} and undefined {"$undefined": true}.
import { readFileSync } from "node:fs";

import msgpackParser from "socket.io-msgpack-parser";

import { packageVersion } from "./lib/harness.mjs";

const PACKETS = {
  connect_without_auth: { type: 0, data: undefined, nsp: "/" },
  connect_with_auth: { type: 0, data: { token: "t", n: [1, 2] }, nsp: "/custom" },
  event: {
    type: 2,
    data: ["message", 1, "two", null, true, -1.5, { k: "v" }],
    options: { compress: true },
    nsp: "/",
    id: 3,
  },
  buffers: { type: 2, data: ["bin", Buffer.from([1, 2, 3]), { empty: Buffer.alloc(0) }], nsp: "/" },
  array_buffers: {
    type: 2,
    data: ["ab", new Uint8Array([0]), new Float64Array([1.5]), new Uint8Array([7, 8, 9]).buffer],
    nsp: "/",
  },
  date_and_undefined: { type: 2, data: ["when", new Date(86_400_000), undefined], nsp: "/" },
  ack: { type: 3, id: 5, data: ["a", Buffer.from("b")], nsp: "/chat" },
  disconnect: { type: 1, nsp: "/custom" },
  large_ack_id: { type: 2, data: ["x"], nsp: "/", id: 2 ** 53 - 1 },
};

function describeValue(value) {
  if (value === undefined) return { $undefined: true };
  if (Buffer.isBuffer(value)) return { $bin: value.toString("hex") };
  if (value instanceof ArrayBuffer) return { $arraybuffer: Buffer.from(value).toString("hex") };
  if (value instanceof Date) return { $date: value.getTime() };
  if (Array.isArray(value)) return value.map(describeValue);
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, describeValue(v)]));
  }
  return value;
}

function decodeOne(hex) {
  const decoder = new msgpackParser.Decoder();
  let packet;
  decoder.on("decoded", (decoded) => {
    packet = decoded;
  });
  try {
    decoder.add(Buffer.from(hex, "hex"));
  } catch (err) {
    return { error: err.message };
  }
  return describeValue(packet);
}

const request = JSON.parse(readFileSync(0, "utf8"));
const encoder = new msgpackParser.Encoder();
const encoded = Object.fromEntries(
  Object.entries(PACKETS).map(([name, packet]) => {
    const [message] = encoder.encode(packet);
    return [name, Buffer.from(message).toString("hex")];
  }),
);
const decoded = Object.fromEntries(
  Object.entries(request.decode).map(([name, hex]) => [name, decodeOne(hex)]),
);
const parser = `socket.io-msgpack-parser@${packageVersion("socket.io-msgpack-parser")}`;
process.stdout.write(`${JSON.stringify({ parser, encoded, decoded })}\n`);
