#!/usr/bin/env node
'use strict';

// Calls org.apache.dubbo.metadata.MetadataService on a Dubbo port (the provider agent's) as a Java Dubbo 3
// consumer does (MetadataUtils / DubboInvoker attachments: path, interface, version 1.0.0, group = the
// application, timeout), with the request written and the answer read by hessian.js 2.11 alone (no Rust,
// no Dubbo library): an independent Hessian implementation checks what the agent answers.
//
//   node metadata_service.js <port> <group> <method> [string-arg]
//
// method getMetadataInfo sends descriptor Ljava/lang/String; and the argument; any other method sends no
// argument (descriptor ""). Prints one JSON line:
//   {"status": 20, "flag": 4, "classes": [{"name", "fields": [...]}, ...] (the class definitions in wire
//    order), "value": <the value read with types: {"$class", "$"} for objects, maps and typed values>,
//    "attachments": {...}}; an exception (flags 0, 3) as {"$class", "message"}; for status != 20: {"status", "error": <the message string>}.
// Exit 0 when an answer frame came, 1 otherwise (no answer within 10 s, connection lost), 2 on bad usage.

const net = require('net');
const hessian = require('hessian.js');

const HOST = '127.0.0.1';
const INTERFACE = 'org.apache.dubbo.metadata.MetadataService';

const port = Number(process.argv[2]);
const group = process.argv[3];
const method = process.argv[4];
const arg = process.argv[5];
if (!Number.isInteger(port) || port < 1 || port > 65535 || !group || !method) {
  process.stderr.write('usage: node metadata_service.js <port> <group> <method> [string-arg]\n');
  process.exit(2);
}

setTimeout(() => {
  process.stderr.write('metadata_service.js: no answer within 10 s\n');
  process.exit(1);
}, 10000).unref();

function request(id) {
  const enc = new hessian.EncoderV2();
  enc.write('2.0.2');
  enc.write(INTERFACE);
  enc.write('1.0.0');
  enc.write(method);
  if (method === 'getMetadataInfo') {
    enc.write('Ljava/lang/String;');
    enc.write(arg === undefined ? null : arg);
  } else {
    enc.write('');
  }
  // A plain object is an untyped map (H ... Z), as Java's HashMap of attachments.
  enc.write({ path: INTERFACE, interface: INTERFACE, version: '1.0.0', group, timeout: '5000' });
  const body = enc.get();
  const head = Buffer.alloc(16);
  head[0] = 0xda; head[1] = 0xbb; head[2] = 0xc2; head[3] = 0;
  head.writeBigInt64BE(BigInt(id), 4);
  head.writeInt32BE(body.length, 12);
  return Buffer.concat([ head, body ]);
}

function answer(status, body) {
  const dec = new hessian.DecoderV2(body);
  if (status !== 20) {
    return { status, error: dec.read() };
  }
  const flag = dec.read();
  const out = { status, flag };
  if (flag === 1 || flag === 4) {
    out.value = dec.read(true);
  }
  if (flag === 0 || flag === 3) {
    // hessian.js turns a Throwable into a JavaExceptionError whose cause is itself (read without types:
    // with them it drops the detailMessage): keep class and message.
    const e = dec.read(false);
    out.value = { $class: e.name, message: e.message };
  }
  if (flag >= 3) {
    out.attachments = dec.read();
  }
  out.classes = dec.classes.map(c => ({ name: c.name, fields: c.fields }));
  return out;
}

const id = 7;
const sock = net.connect(port, HOST, () => sock.write(request(id)));
let buf = Buffer.alloc(0);
sock.on('data', chunk => {
  buf = Buffer.concat([ buf, chunk ]);
  if (buf.length < 16) return;
  const len = buf.readInt32BE(12);
  if (buf.length < 16 + len) return;
  const gotId = buf.readBigInt64BE(4);
  if (gotId !== BigInt(id)) {
    process.stderr.write(`answer to id ${gotId}, sent ${id}\n`);
    process.exit(1);
  }
  const out = answer(buf[3], buf.subarray(16, 16 + len));
  process.stdout.write(JSON.stringify(out) + '\n');
  sock.destroy();
  process.exit(0);
});
sock.on('error', e => {
  process.stderr.write(`metadata_service.js: ${e.message}\n`);
  process.exit(1);
});
sock.on('close', () => {
  process.stderr.write('metadata_service.js: connection closed before an answer\n');
  process.exit(1);
});
