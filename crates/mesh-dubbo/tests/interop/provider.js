#!/usr/bin/env node
'use strict';

// Dubbo 2 (dubbo:// + hessian2) provider used as an interop peer by the mesh-dubbo Rust tests.
//
//   node provider.js <port>          (port 0 = let the OS pick a free port)
//
// stdout: exactly one line, `LISTENING <port>`, once the socket is bound on 127.0.0.1.
// stderr: diagnostics only.
// Stops on SIGTERM / SIGINT, when its parent process goes away, or after
// INTEROP_MAX_LIFETIME_SECS seconds (default 300, 0 = no limit).
//
// See README.md in this folder for the wire-level behaviour of this peer.

const net = require('net');
const util = require('util');
const { RpcServer, RpcService } = require('sofa-rpc-node').server;
const dubboProtocol = require('dubbo-remoting');
const java = require('js-to-java');
const types = require('./types');

const INTERFACE = 'com.alibaba.dubbo.performance.demo.provider.IHelloService';
// Service versions this provider answers to. dubbo-remoting routes a request to
// `<path>:<version>` when the request's version field is a non-empty string and to
// `<path>` when it is "" or null; '' below registers the bare `<path>` key.
const VERSIONS = [ '', '0.0.0', '1.0', '1.0.0' ];
const HOST = '127.0.0.1';

const verbose = process.env.INTEROP_VERBOSE === '1';

function log(level, args) {
  process.stderr.write(`[provider ${process.pid}] ${level}: ${util.format(...args)}\n`);
}

// sofa-rpc-node requires a logger; everything goes to stderr so stdout stays clean.
const logger = {
  debug: (...a) => { if (verbose) log('debug', a); },
  info: (...a) => { if (verbose) log('info', a); },
  warn: (...a) => {
    // sofa-rpc-node reports every ordinary client disconnect as "premature close" + stack.
    if (!verbose && util.format(...a).includes('premature close')) return;
    log('warn', a);
  },
  error: (...a) => {
    // The service layer logs every thrown business error with its stack; keep it to one line.
    if (!verbose && a.length === 1 && a[0] instanceof Error) {
      log('error', [ `${a[0].name}: ${a[0].message}` ]);
    } else {
      log('error', a);
    }
  },
};

function usage(msg) {
  process.stderr.write(`provider.js: ${msg}\nusage: node provider.js <port (0 = any free port)>\n`);
  process.exit(2);
}

const portArg = process.argv[2];
if (portArg === undefined || !/^\d+$/.test(portArg) || Number(portArg) > 65535) {
  usage(`invalid or missing port: ${portArg}`);
}
const requestedPort = Number(portArg);

// Java String.hashCode(): s[0]*31^(n-1) + ... + s[n-1], int (32-bit) overflow, over UTF-16 code units.
// JS strings are UTF-16 code-unit sequences too, so charCodeAt gives exactly Java's chars.
function javaStringHashCode(s) {
  let h = 0;
  for (let i = 0; i < s.length; i++) {
    h = (Math.imul(31, h) + s.charCodeAt(i)) | 0;
  }
  return h;
}

// Methods must be `async` functions: sofa-rpc-node answers "Can not find method" otherwise.
const delegate = {
  async hash(s) {
    if (typeof s !== 'string') {
      throw new TypeError(`hash(String) expects a string argument, got ${s === null ? 'null' : typeof s}`);
    }
    // java.int(...) makes the value a typed object: dubbo-remoting writes a falsy
    // plain result (0, '', null) without the RESPONSE_VALUE flag.
    return java.int(javaStringHashCode(s));
  },

  async echo(value) {
    // Wrapping as java.lang.Object keeps the result truthy (so the response always
    // carries flag 1 = RESPONSE_VALUE, even for null/0/false/"") and makes
    // dubbo-remoting hand the untouched JS value to hessian.js's generic writer.
    return { $class: 'java.lang.Object', $: value };
  },

  async fail(message) {
    throw new Error(message == null ? 'null' : String(message));
  },
};

// ---------------------------------------------------------------------------------------
// TypesService (org.apache.dubbo.mesh.TypesService, see types.js and README.md): one method
// per Java type. Each method first checks, on the request's own bytes read with hessian.js
// (`this.req.typedRequest`, filled in by the decoder wrapper below), that the parameter
// descriptor is the declared one and that the argument arrived as the declared Java type; a
// mismatch is an error answer (status 80) naming both. Then it echoes the argument with the
// same wire types (POJO fields with their declared types, as a Java object would have them).

// Marks a null result: answered as Java does, flag 2 (RESPONSE_NULL_VALUE), see nullResponse().
const NULL_RESULT = { $class: 'java.lang.Object', $: null };

function typedMethod(name) {
  const decl = types.METHODS[name];
  const desc = types.DESCRIPTORS[decl.param];
  return async function typedCall() {
    const seen = this && this.req && this.req.typedRequest;
    if (!seen) throw new Error(`${name}: no wire view of this request`);
    if (seen.error) throw new Error(`${name}: hessian.js cannot read the request: ${seen.error}`);
    if (seen.desc !== desc) {
      throw new Error(`${name}: parameter types ${JSON.stringify(seen.desc)}, declared ${JSON.stringify(desc)} (${decl.param})`);
    }
    const arg = seen.args[0];
    const why = types.checkType(decl.param, arg);
    if (why) throw new Error(`${name}(${decl.param}): the argument does not decode as ${decl.param}: ${why}`);
    switch (name) {
      case 'throwException':
        // What Java's hessian writes for a Throwable: its fields (no stack frames here).
        return {
          $class: types.EXCEPTION_CLASS,
          $: {
            detailMessage: arg.t === 'string' ? arg.v : null,
            cause: null,
            stackTrace: { $class: '[java.lang.StackTraceElement', $: [] },
            suppressedExceptions: [],
          },
        };
      case 'returnNull':
        return NULL_RESULT;
      default:
        break;
    }
    if (arg.t === 'null') return NULL_RESULT;
    const value = types.toJava(arg, decl.param);
    // dubbo-remoting writes a falsy result ('') without the result flag: keep it an object.
    return typeof value === 'string' ? java.String(value) : value;
  };
}

const typesDelegate = {};
for (const name of Object.keys(types.METHODS)) typesDelegate[name] = typedMethod(name);

// $invoke(String, String[], Object[]) with generic=true, as Java's GenericFilter serves it (types.js).
typesDelegate[types.GENERIC_METHOD] = async function genericInvoke() {
  const seen = this && this.req && this.req.typedRequest;
  if (!seen) throw new Error('$invoke: no wire view of this request');
  if (seen.error) throw new Error(`$invoke: hessian.js cannot read the request: ${seen.error}`);
  if (seen.desc !== types.GENERIC_DESCRIPTOR) {
    throw new Error(`$invoke: parameter types ${JSON.stringify(seen.desc)}, declared ${JSON.stringify(types.GENERIC_DESCRIPTOR)}`);
  }
  const props = (this.req.data && this.req.data.requestProps) || {};
  if (props.generic !== undefined && props.generic !== '' && props.generic !== 'true') {
    throw new Error(`$invoke: generic=${props.generic} is not served by this peer (only true)`);
  }
  const [ m, ts, vs ] = seen.args;
  if (m.t !== 'string') throw new Error('$invoke: the method name is not a string');
  const decl = types.METHODS[m.v];
  if (!decl) throw new Error(`$invoke: No such method ${m.v} in class interface ${types.TYPES_INTERFACE}`);
  const names = ts.t === 'null' ? null : ts.t === 'list' ? ts.v.items : null;
  if (ts.t !== 'null' && ts.t !== 'list') throw new Error('$invoke: parameter types are not a String[]');
  if (names && (names.length !== 1 || names[0].t !== 'string' || !types.TYPE_NAMES[decl.param].includes(names[0].v))) {
    throw new Error(`$invoke: No such method ${m.v}(${names.map(n => n.v).join(',')}) in class interface ${types.TYPES_INTERFACE}`);
  }
  const values = vs.t === 'list' ? vs.v.items : [];
  if (values.length !== 1) throw new Error(`$invoke: ${values.length} arguments for ${m.v}, which takes 1`);
  let arg;
  try {
    arg = types.realize(decl.param, values[0]);
  } catch (err) {
    if (err instanceof types.ArgumentMismatch) return types.genericException('java.lang.IllegalArgumentException', err.message);
    throw err;
  }
  switch (m.v) {
    case 'throwException':
      return types.genericException(types.EXCEPTION_CLASS, arg.t === 'string' ? arg.v : null);
    case 'returnNull':
      return NULL_RESULT;
    default:
      break;
  }
  if (arg.t === 'null') return NULL_RESULT;
  const value = types.generalize(decl.param, arg);
  return typeof value === 'string' ? java.String(value) : value;
};

// The whole frame of a null result, as Java writes it: status 20, body = flag 2 (0x92).
function nullResponse(id) {
  const h = Buffer.alloc(HEADER_LEN + 1);
  h[0] = 0xda; h[1] = 0xbb; h[2] = 0x02; h[3] = 20;
  h.writeBigInt64BE(BigInt(id), 4);
  h.writeInt32BE(1, 12);
  h[HEADER_LEN] = 0x92;
  return h;
}

// Reads a complete request frame with hessian.js for the TypesService checks.
function typedView(frame) {
  try {
    return types.readRequestBody(frame.subarray(HEADER_LEN));
  } catch (err) {
    return { error: err.message };
  }
}

// ---------------------------------------------------------------------------------------
// Null service version support.
// dubbo-remoting reads the request's service-version field with readString(), which throws
// on a hessian null ('N'), and the connection is then dropped without a reply. Java consumers
// and the 2018 demo agent may send null there, so every complete request frame is inspected
// before it reaches the decoder and a null version (1 byte 'N') is replaced by the empty
// string (1 byte 0x00): same length, so the frame header stays valid.
const HEADER_LEN = 16;

// Returns the offset just past the hessian2 string starting at `pos`, or -1 if the bytes
// there are not a complete string. Lengths count UTF-16 units; each unit is 1-3 UTF-8 bytes
// (4-byte sequences are counted as a surrogate pair).
function skipHessianString(buf, pos, end) {
  for (;;) {
    if (pos >= end) return -1;
    const tag = buf[pos];
    let units;
    let last = true;
    if (tag <= 0x1f) {
      units = tag;
      pos += 1;
    } else if (tag >= 0x30 && tag <= 0x33) {
      if (pos + 2 > end) return -1;
      units = ((tag - 0x30) << 8) | buf[pos + 1];
      pos += 2;
    } else if (tag === 0x53 || tag === 0x52) { // 'S' final chunk, 'R' non-final chunk
      if (pos + 3 > end) return -1;
      units = buf.readUInt16BE(pos + 1);
      last = tag === 0x53;
      pos += 3;
    } else {
      return -1;
    }
    while (units > 0) {
      if (pos >= end) return -1;
      const b = buf[pos];
      if (b < 0x80) { pos += 1; units -= 1; } else if (b >= 0xc0 && b < 0xe0) { pos += 2; units -= 1; } else if (b >= 0xe0 && b < 0xf0) { pos += 3; units -= 1; } else if (b >= 0xf0) { pos += 4; units -= 2; } else { return -1; }
    }
    if (pos > end) return -1;
    if (last) return pos;
  }
}

// Rewrites, in place, a null service version in one complete hessian2 request frame.
function fixNullVersion(frame) {
  const flag = frame[2];
  const isRequest = (flag & 0x80) !== 0;
  const isEvent = (flag & 0x20) !== 0;
  if (!isRequest || isEvent || (flag & 0x1f) !== 2) return;
  const end = frame.length;
  let pos = skipHessianString(frame, HEADER_LEN, end); // dubbo protocol version
  if (pos < 0) return;
  pos = skipHessianString(frame, pos, end); // service path
  if (pos < 0 || pos >= end) return;
  if (frame[pos] === 0x4e) {
    frame[pos] = 0x00;
    logger.debug('request id %s: null service version rewritten to ""', frame.readBigInt64BE(4));
  }
}

// Wraps a dubbo-remoting protocol so that its decoder only ever sees fixed, whole frames.
function withNullVersionFix(protocol) {
  return Object.assign({}, protocol, {
    encoder(options) {
      const encoder = protocol.encoder(options);
      const responseEncode = encoder._responseEncode.bind(encoder);
      encoder._responseEncode = packet => (packet.res && packet.res.appResponse === NULL_RESULT && !packet.res.isError
        ? nullResponse(packet.packetId)
        : responseEncode(packet));
      return encoder;
    },
    decoder(options) {
      const decoder = protocol.decoder(options);
      // The decoder emits one 'request' per request frame, synchronously and in order, so the
      // wire views queued below line up with the decoded requests.
      const views = [];
      decoder.prependListener('request', req => { req.typedRequest = views.shift(); });
      const decoderWrite = decoder._write.bind(decoder);
      // dubbo-remoting closes the connection on any decode error, without a reply (and its
      // own log only says "premature close"); say why.
      const innerWrite = (buf, encoding, callback) => decoderWrite(buf, encoding, err => {
        if (err) logger.warn('decode error, closing connection: %s', err.message);
        callback(err);
      });
      let pending = null;
      let passthrough = false;
      decoder._write = (chunk, encoding, callback) => {
        if (passthrough) return innerWrite(chunk, encoding, callback);
        let buf = pending ? Buffer.concat([ pending, chunk ]) : chunk;
        let complete = 0;
        while (buf.length - complete >= HEADER_LEN) {
          const bodyLen = buf.readInt32BE(complete + 12);
          if (buf[complete] !== 0xda || buf[complete + 1] !== 0xbb || bodyLen < 0) {
            // Not a frame boundary we understand: stop rewriting, let the decoder judge.
            passthrough = true;
            complete = buf.length;
            break;
          }
          const frameLen = HEADER_LEN + bodyLen;
          if (buf.length - complete < frameLen) break;
          if (buf === chunk) buf = Buffer.from(chunk); // never modify the caller's buffer
          const frame = buf.subarray(complete, complete + frameLen);
          fixNullVersion(frame);
          if ((frame[2] & 0x80) !== 0 && (frame[2] & 0x20) === 0) views.push(typedView(frame));
          complete += frameLen;
        }
        pending = complete < buf.length ? buf.subarray(complete) : null;
        if (complete === 0) return callback();
        return innerWrite(buf.subarray(0, complete), encoding, callback);
      };
      return decoder;
    },
  });
}
// ---------------------------------------------------------------------------------------

// Registers the service under the bare interface name when the version is empty.
class InteropService extends RpcService {
  constructor(options) {
    super(options);
    if (!options.version) {
      this.id = this.interfaceName;
    }
  }
}

// RpcServer listens on all interfaces; this test peer must bind loopback only.
class LoopbackRpcServer extends RpcServer {
  // The context is `this` in service methods: TypesService reads the request's wire view.
  createContext(req) {
    return { req };
  }

  _startServer(port) {
    const server = net.createServer(socket => this._handleSocket(socket));
    server.once('error', err => this.emit('error', err));
    server.listen({ port, host: HOST }, () => {
      this.publishPort = server.address().port;
    });
    this.netServer = server;
    return server;
  }
}

const rpc = new LoopbackRpcServer({
  appName: 'mesh-dubbo-interop-provider',
  logger,
  port: requestedPort,
  protocol: withNullVersionFix(dubboProtocol),
  serviceClass: InteropService,
  // Java's dubbo server closes idle channels after 180 s; do the same (default here is 90 s).
  maxIdleTime: 180 * 1000,
  // graceful(): exit soon after an uncaught exception instead of lingering 30 s.
  killTimeout: 1000,
});

for (const version of VERSIONS) {
  rpc.addService({ interfaceName: INTERFACE, version }, delegate);
  rpc.addService({ interfaceName: types.TYPES_INTERFACE, version }, typesDelegate);
}

rpc.on('error', err => {
  // Per-request errors (service not found, thrown business errors) are also emitted here.
  if (verbose) logger.warn('rpc error: %s', err && err.message);
});

let stopping = false;
function stop(code, why) {
  if (stopping) return;
  stopping = true;
  if (why) logger.warn('stopping: %s', why);
  // Close the listening socket and the connections, then exit without waiting.
  try {
    if (rpc.netServer) rpc.netServer.close();
    for (const conn of rpc._connections.values()) conn.socket.destroy();
  } catch (err) {
    logger.warn('error while closing: %s', err.message);
  }
  process.exit(code);
}

process.on('SIGTERM', () => stop(0));
process.on('SIGINT', () => stop(0));
process.on('SIGHUP', () => stop(0));
process.on('uncaughtException', err => {
  log('fatal', [ err && err.stack || err ]);
  process.exit(1);
});
process.on('unhandledRejection', err => {
  log('fatal', [ 'unhandled rejection:', err && err.stack || err ]);
  process.exit(1);
});

// Safety nets so an orphaned provider never outlives the test that started it.
const parentPid = process.ppid;
setInterval(() => {
  if (process.ppid !== parentPid) stop(0, `parent ${parentPid} is gone`);
}, 1000).unref();
const maxLifetime = Number(process.env.INTEROP_MAX_LIFETIME_SECS || 300);
if (maxLifetime > 0) {
  setTimeout(() => stop(0, `max lifetime ${maxLifetime}s reached`), maxLifetime * 1000).unref();
}

rpc.start().then(() => {
  const { port } = rpc.netServer.address();
  process.stdout.write(`LISTENING ${port}\n`);
  logger.info('serving %s and %s versions %j on %s:%d', INTERFACE, types.TYPES_INTERFACE, VERSIONS, HOST, port);
}, err => {
  log('fatal', [ `cannot listen on ${HOST}:${requestedPort}: ${err && err.message}` ]);
  process.exit(1);
});
