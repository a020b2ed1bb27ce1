#!/usr/bin/env node
'use strict';

// Calls org.apache.dubbo.mesh.TypesService (types.js) on 127.0.0.1:<port> through a third-party
// Dubbo client library, and checks with hessian.js what travels on the wire.
//
//   node types_consumer.js <dubbo2js|sofa> <port> [cases-json]
//
// client: `dubbo2js` = dubbo2.js 2.3.9 DirectlyDubbo (its own framing, hessian.js 2.5);
//         `sofa` = sofa-rpc-node 2.10.0 RpcClient + dubbo-remoting 2.1.4 (hessian.js 2.11).
// cases-json: a JSON array of {"method": "echoLong", "arg": <JSON>} (default: types.DEFAULT_CASES).
//   The argument is typed by the method's declared parameter (types.argToJava): long accepts a
//   decimal string, byte[] is base64, the POJO is an object of its fields.
//
// The library connects to an in-process relay that forwards bytes unchanged to the port and
// reads every frame with hessian.js 2.11 (types.js): the request's descriptor and argument wire
// types, the response's status, flag and result wire types. One JSON line per call on stdout:
//   {"client","method","arg","desc","sent","sentOk","status","flag","wire","typeOk","result"}
//   exception answers: "exception" (class) and "message" (its detailMessage) instead of "result";
//   non-20 answers: "error" (the body's message).
//   sentOk / typeOk: null when the bytes sent / received decode as the declared Java type
//   (hessian.js readers), else the reason. "result" is exact JSON: longs as integer literals,
//   byte[] as base64, the POJO as {"class": ..., fields}; "lib" is what the library returned.
// Exit 0 when every call got a response frame; 1 at the first call without one (timeout,
// connection lost; remaining calls skipped) or at the deadline; 2 on bad usage.
//
// env: INTEROP_SERVICE_VERSION (default "1.0.0"; "" = none), INTEROP_SERVICE_GROUP (default
// none; sofa-rpc-node would otherwise send "SOFA"), INTEROP_CALL_TIMEOUT_SECS (default 5),
// INTEROP_DEADLINE_MS (default and maximum 30000).

const net = require('net');
const util = require('util');
const types = require('./types');

const HOST = '127.0.0.1';
const DEADLINE_MS = Math.min(Number(process.env.INTEROP_DEADLINE_MS) || 30000, 30000);
const CALL_TIMEOUT_SECS = Number(process.env.INTEROP_CALL_TIMEOUT_SECS) || 5;
const VERSION = process.env.INTEROP_SERVICE_VERSION === undefined ? '1.0.0' : process.env.INTEROP_SERVICE_VERSION;
const GROUP = process.env.INTEROP_SERVICE_GROUP || '';
const MAX_FRAME = 16 * 1024 * 1024;

function exitFlushed(code) {
  process.stdout.write('', () => process.exit(code));
}

function die(code, ...msg) {
  process.stderr.write(`types_consumer.js: ${util.format(...msg)}\n`);
  exitFlushed(code);
}

setTimeout(() => die(1, `deadline of ${DEADLINE_MS} ms reached before all calls were answered`), DEADLINE_MS).unref();
process.on('uncaughtException', err => die(1, 'uncaught exception:', err && err.stack || err));
process.on('unhandledRejection', err => die(1, 'unhandled rejection:', err && err.stack || err));
process.on('SIGTERM', () => die(1, 'terminated by SIGTERM'));
process.on('SIGINT', () => die(1, 'terminated by SIGINT'));

function usage(msg) {
  process.stderr.write(`types_consumer.js: ${msg}\nusage: node types_consumer.js <dubbo2js|sofa> <port> [cases-json]\n`);
  process.exit(2);
}

const [ clientName, portArg, casesArg ] = process.argv.slice(2);
if (clientName !== 'dubbo2js' && clientName !== 'sofa') usage(`unknown client ${clientName}`);
if (portArg === undefined || !/^\d+$/.test(portArg) || Number(portArg) < 1 || Number(portArg) > 65535) usage(`invalid or missing port: ${portArg}`);
let cases = types.DEFAULT_CASES;
if (casesArg !== undefined) {
  try {
    cases = JSON.parse(casesArg);
  } catch (err) {
    usage(`cases are not JSON: ${err.message}`);
  }
  if (!Array.isArray(cases) || !cases.every(c => c && types.METHODS[c.method] && 'arg' in c)) {
    usage('cases must be an array of {"method": <a TypesService method>, "arg": ...}');
  }
}

// ---- the relay: bytes unchanged both ways, every frame read with hessian.js ----------------

const exchanges = []; // one per request frame (events excluded), in the order sent

// Splits a byte stream into frames; calls onFrame(frame) for each complete one.
function framer(onFrame) {
  let buf = Buffer.alloc(0);
  return chunk => {
    buf = buf.length ? Buffer.concat([ buf, chunk ]) : chunk;
    while (buf.length >= 16) {
      const len = buf.readInt32BE(12);
      if (buf[0] !== 0xda || buf[1] !== 0xbb || len < 0 || len > MAX_FRAME) {
        throw new Error(`not a Dubbo frame: ${buf.subarray(0, 16).toString('hex')}`);
      }
      if (buf.length < 16 + len) break;
      onFrame(buf.subarray(0, 16 + len));
      buf = buf.subarray(16 + len);
    }
  };
}

function onRequest(frame) {
  if ((frame[2] & 0x20) !== 0) return; // event (heartbeat)
  const ex = { id: frame.readBigInt64BE(4).toString(), response: null };
  try {
    const r = types.readRequestBody(frame.subarray(16));
    ex.method = r.method;
    ex.desc = r.desc;
    ex.args = r.args;
  } catch (err) {
    ex.readError = err.message;
  }
  exchanges.push(ex);
}

function onResponse(frame) {
  if ((frame[2] & 0x20) !== 0) return;
  const id = frame.readBigInt64BE(4).toString();
  const ex = exchanges.find(e => e.id === id && !e.response);
  if (!ex) return;
  const status = frame[3];
  const body = frame.subarray(16);
  ex.response = { status };
  try {
    if (status === 20) {
      Object.assign(ex.response, types.readResponseBody(body));
    } else {
      ex.response.error = types.readErrorBody(body);
    }
  } catch (err) {
    ex.response.readError = err.message;
  }
}

function startRelay(targetPort) {
  return new Promise((resolve, reject) => {
    const server = net.createServer(client => {
      client.setNoDelay(true);
      const upstream = net.connect({ host: HOST, port: targetPort });
      upstream.setNoDelay(true);
      const up = framer(onRequest);
      const down = framer(onResponse);
      client.on('data', d => {
        try { up(d); } catch (err) { process.stderr.write(`relay: request stream: ${err.message}\n`); }
        upstream.write(d);
      });
      upstream.on('data', d => {
        try { down(d); } catch (err) { process.stderr.write(`relay: response stream: ${err.message}\n`); }
        client.write(d);
      });
      const close = () => { client.destroy(); upstream.destroy(); };
      client.on('error', close);
      client.on('close', close);
      upstream.on('error', close);
      upstream.on('close', close);
    });
    server.once('error', reject);
    server.listen({ host: HOST, port: 0 }, () => resolve(server.address().port));
    server.unref();
  });
}

// ---- the two client libraries -----------------------------------------------------------------

function dubbo2jsClient(port) {
  const { DirectlyDubbo } = require('dubbo2.js');
  const dubbo = DirectlyDubbo.from({
    dubboAddress: `${HOST}:${port}`,
    dubboVersion: '2.0.2',
    dubboInvokeTimeout: CALL_TIMEOUT_SECS,
  });
  const methods = {};
  for (const name of Object.keys(types.METHODS)) methods[name] = arg => [ arg ];
  const service = dubbo.proxyService({
    dubboInterface: types.TYPES_INTERFACE,
    version: VERSION,
    group: GROUP || undefined,
    methods,
  });
  return {
    // dubbo2.js derives the descriptor from each argument's $class.
    toArg(javaType, v) {
      const a = types.argToJava(javaType, v);
      if (Buffer.isBuffer(a)) {
        // dubbo2.js wants {$class, $}; hessian.js writes a Buffer as binary whatever its fields.
        Object.defineProperty(a, '$class', { value: '[byte' });
        Object.defineProperty(a, '$', { value: a });
      }
      if (a === null) return { $class: javaType === 'byte[]' ? '[byte' : javaType, $: null };
      return a;
    },
    async call(method, arg) {
      const { res, err } = await service[method](arg);
      if (!err) return { ok: true, value: res };
      const { DubboDecodeError } = require('dubbo2.js/es7/err');
      // An exception answer decodes to a JavaExceptionError from hessian.js: answered too.
      const answered = err instanceof DubboDecodeError || !!(err && err.name && /Exception$/.test(err.name));
      return { ok: false, answered, message: String(err && err.message) };
    },
  };
}

function sofaClient(port) {
  const { RpcClient } = require('sofa-rpc-node').client;
  const logger = {
    debug() {},
    info() {},
    warn(...a) { process.stderr.write(`[sofa client] warn: ${util.format(...a)}\n`); },
    error(...a) { process.stderr.write(`[sofa client] error: ${util.format(...a)}\n`); },
  };
  const client = new RpcClient({ logger, protocol: require('dubbo-remoting') });
  const consumer = client.createConsumer({
    interfaceName: types.TYPES_INTERFACE,
    version: VERSION,
    group: GROUP,
    serverHost: `${HOST}:${port}`,
    responseTimeout: CALL_TIMEOUT_SECS * 1000,
  });
  return {
    // dubbo-remoting derives the descriptor from the values: typed wrappers, Buffer = [B.
    toArg(javaType, v) {
      const a = types.argToJava(javaType, v);
      return a === null ? { $class: javaType === 'byte[]' ? '[byte' : javaType, $: null } : a;
    },
    async call(method, arg) {
      try {
        await consumer.ready();
        const value = await consumer.invoke(method, [ arg ], { responseTimeout: CALL_TIMEOUT_SECS * 1000 });
        return { ok: true, value };
      } catch (err) {
        const timeout = err && (err.name === 'RpcResponseTimeoutError' || /timeout/i.test(err.name || ''));
        const noConn = err && /NoProvider|Connection|ECONNREFUSED|closed/i.test(`${err.name} ${err.message}`);
        return { ok: false, answered: !(timeout || noConn), message: String(err && err.message) };
      }
    },
  };
}

// ---- main -----------------------------------------------------------------------------------------

// JSON text of what a library returned (hessian.js values without type: longs beyond 2^53 are strings).
function libJson(v) {
  if (Buffer.isBuffer(v)) return JSON.stringify(v.toString('base64'));
  try {
    const s = JSON.stringify(v === undefined ? null : v);
    return s === undefined ? 'null' : s;
  } catch (err) {
    return JSON.stringify(String(v));
  }
}

async function main() {
  const relayPort = await startRelay(Number(portArg));
  const client = clientName === 'dubbo2js' ? dubbo2jsClient(relayPort) : sofaClient(relayPort);
  for (const { method, arg } of cases) {
    const decl = types.METHODS[method];
    const before = exchanges.length;
    const got = await client.call(method, client.toArg(decl.param, arg));
    // The exchange of this call: the first request frame sent for it (calls are sequential).
    const ex = exchanges[before];
    const parts = [ `"client":${JSON.stringify(clientName)}`, `"method":${JSON.stringify(method)}`, `"arg":${JSON.stringify(arg)}` ];
    if (ex) {
      parts.push(`"desc":${JSON.stringify(ex.desc === undefined ? null : ex.desc)}`);
      if (ex.readError) {
        parts.push(`"sentOk":${JSON.stringify('hessian.js cannot read the request: ' + ex.readError)}`);
      } else {
        parts.push(`"sent":${JSON.stringify(ex.args[0] ? types.wireOf(ex.args[0]) : null)}`);
        const why = ex.desc !== types.DESCRIPTORS[decl.param]
          ? `descriptor ${ex.desc}, declared ${types.DESCRIPTORS[decl.param]}`
          : types.checkType(decl.param, ex.args[0]);
        parts.push(`"sentOk":${JSON.stringify(why)}`);
      }
      const r = ex.response;
      if (r) {
        parts.push(`"status":${r.status}`);
        if (r.readError) {
          parts.push(`"typeOk":${JSON.stringify('hessian.js cannot read the response: ' + r.readError)}`);
        } else if (r.status !== 20) {
          parts.push(`"error":${JSON.stringify(r.error)}`);
        } else {
          parts.push(`"flag":${r.flag}`);
          if (r.exception) {
            const e = types.describeException(r.exception);
            parts.push(`"exception":${JSON.stringify(e.cls)}`, `"message":${JSON.stringify(e.message)}`);
          } else {
            const value = r.value || { t: 'null' };
            parts.push(`"wire":${JSON.stringify(types.wireOf(value))}`);
            parts.push(`"typeOk":${JSON.stringify(types.checkType(decl.ret, value))}`);
            parts.push(`"result":${types.toJsonText(value)}`);
          }
        }
      }
    }
    parts.push(got.ok ? `"lib":${libJson(got.value)}` : `"libError":${JSON.stringify(got.message)}`);
    process.stdout.write(`{${parts.join(',')}}\n`);
    if (!ex || !ex.response) {
      return die(1, `no answer for ${method}: ${got.ok ? 'library returned without a response frame' : got.message}`);
    }
  }
  exitFlushed(0);
}

main().catch(err => die(1, 'failed:', err && err.stack || err));
