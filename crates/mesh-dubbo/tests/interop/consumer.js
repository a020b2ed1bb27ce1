#!/usr/bin/env node
'use strict';

// Dubbo 2 consumer (dubbo2.js DirectlyDubbo, its own hessian.js 2.5 codec) used as an
// interop peer by the mesh-dubbo Rust tests.
//
//   node consumer.js <port> [string ...]
//
// Calls IHelloService.hash(String) on 127.0.0.1:<port> once per string (a default list
// when none are given), sequentially, and prints one JSON line per call on stdout:
//   {"arg":"hello","result":99162322}
//   {"arg":"x","error":"..."}
// Exit 0 when every call got a response frame (a Dubbo error response counts as an
// answer). Exit 1 at the first call without an answer (invoke timeout, connection lost;
// reason on stderr, remaining calls skipped) or at the deadline; 2 on bad usage.
// Always exits within INTEROP_DEADLINE_MS (default and maximum 20000 ms).
//
// Optional env: INTEROP_SERVICE_VERSION (default "0.0.0"; the literal "null" sends a
// hessian null), INTEROP_CALL_TIMEOUT_SECS (per call, default 5).

const util = require('util');
const { DirectlyDubbo, java } = require('dubbo2.js');
const { DubboDecodeError } = require('dubbo2.js/es7/err');

const INTERFACE = 'com.alibaba.dubbo.performance.demo.provider.IHelloService';
const HOST = '127.0.0.1';
const DUBBO_PROTOCOL_VERSION = '2.0.2';

const DEADLINE_MS = Math.min(Number(process.env.INTEROP_DEADLINE_MS) || 20000, 20000);
const CALL_TIMEOUT_SECS = Number(process.env.INTEROP_CALL_TIMEOUT_SECS) || 5;
const envVersion = process.env.INTEROP_SERVICE_VERSION;
const SERVICE_VERSION = envVersion === undefined ? '0.0.0' : envVersion === 'null' ? null : envVersion;

// Exit only once stdout has been flushed: on a pipe, process.exit() right after a large write
// drops whatever is still queued (seen: output cut at 64 KiB).
function exitFlushed(code) {
  process.stdout.write('', () => process.exit(code));
}

function die(code, ...msg) {
  process.stderr.write(`consumer.js: ${util.format(...msg)}\n`);
  exitFlushed(code);
}

// Hard deadline: no matter what the library does (it reconnects for ~60 s), stop.
setTimeout(() => die(1, `deadline of ${DEADLINE_MS} ms reached before all calls were answered`), DEADLINE_MS).unref();
process.on('uncaughtException', err => die(1, 'uncaught exception:', err && err.stack || err));
process.on('unhandledRejection', err => die(1, 'unhandled rejection:', err && err.stack || err));
process.on('SIGTERM', () => die(1, 'terminated by SIGTERM'));
process.on('SIGINT', () => die(1, 'terminated by SIGINT'));

const portArg = process.argv[2];
if (portArg === undefined || !/^\d+$/.test(portArg) || Number(portArg) < 1 || Number(portArg) > 65535) {
  process.stderr.write(`consumer.js: invalid or missing port: ${portArg}\nusage: node consumer.js <port> [string ...]\n`);
  process.exit(2); // nothing on stdout yet: exiting at once loses nothing
}

const DEFAULT_ARGS = [
  '',
  'hello',
  '中文字符串', // CJK (BMP, 3-byte UTF-8)
  'x\u{1F600}y', // emoji: a UTF-16 surrogate pair (written as two 3-byte sequences)
  'a'.repeat(1000), // 1000 chars: two-byte string length form (0x30..0x33)
];
const args = process.argv.length > 3 ? process.argv.slice(3) : DEFAULT_ARGS;

const dubbo = DirectlyDubbo.from({
  dubboAddress: `${HOST}:${Number(portArg)}`,
  dubboVersion: DUBBO_PROTOCOL_VERSION,
  dubboInvokeTimeout: CALL_TIMEOUT_SECS,
});

const helloService = dubbo.proxyService({
  dubboInterface: INTERFACE,
  version: SERVICE_VERSION,
  methods: {
    hash(s) {
      return [ java.String(s) ];
    },
  },
});

async function main() {
  let done = 0;
  for (const arg of args) {
    const { res, err } = await helloService.hash(arg);
    if (!err) {
      process.stdout.write(JSON.stringify({ arg, result: res }) + '\n');
      done++;
      continue;
    }
    // DubboDecodeError = a response frame arrived (error status, exception flag, bad flag).
    // Anything else (invoke timeout, socket closed) means no answer.
    const answered = err instanceof DubboDecodeError;
    process.stdout.write(JSON.stringify({ arg, error: String(err.message) }) + '\n');
    if (!answered) {
      // Connection-level trouble: the remaining calls would only wait for their timeouts too.
      return die(1, `no answer for ${JSON.stringify(arg).slice(0, 80)}: ${err.message}; ${args.length - done - 1} call(s) not attempted`);
    }
    done++;
  }
  // DirectlyDubbo has no close(); its socket and heartbeat timer would keep us alive.
  exitFlushed(0);
}

main().catch(err => die(1, 'failed:', err && err.stack || err));
