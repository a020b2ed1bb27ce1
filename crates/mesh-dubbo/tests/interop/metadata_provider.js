#!/usr/bin/env node
'use strict';

// A Dubbo 3 MetadataService (org.apache.dubbo.metadata.MetadataService, version 1.0.0) whose requests are
// read and answers written by hessian.js 2.11 (not by our codec): the independent peer of the agent's
// MetadataService client (crates/mesh-registry/tests/metadata_client.rs).
//
//   node metadata_provider.js <port> <metadata-json>      (port 0 = let the OS pick a free port)
//
// <metadata-json>: {"app": .., "revision": .., "services": {"<match key>": {"name", "group", "version",
// "protocol", "port", "path", "params": {..}}}} (absent strings are sent as null, an absent port as -1).
//
// For each request frame it checks what a Java Dubbo 3 provider needs: service path and `interface`
// attachment org.apache.dubbo.metadata.MetadataService, version 1.0.0, method getMetadataInfo with
// descriptor Ljava/lang/String;, attachment `group` = the app. Then it answers as a Java 3 provider does:
//   * the configured revision  -> the MetadataInfo as hessian-lite writes it (class
//     org.apache.dubbo.metadata.MetadataInfo, fields services, revision, app; services a typed
//     java.util.concurrent.ConcurrentHashMap of org.apache.dubbo.metadata.MetadataInfo$ServiceInfo with
//     fields params, path, port, protocol, version, group, name), result flag 4 (value + attachments);
//   * revision "throw"         -> flag 3, a java.lang.IllegalStateException {detailMessage};
//   * revision "slow"          -> no answer for 10 s;
//   * revision "close"         -> the connection closed without an answer;
//   * any other revision       -> flag 5 (null + attachments), as MetadataServiceDelegation does;
//   * a request that fails the checks -> status 80 with a message naming the check.
// stdout: one line `LISTENING <port>`; stderr: one line per request. Stops on SIGTERM, when its parent
// goes away, or after INTEROP_MAX_LIFETIME_SECS (default 300).

const net = require('net');
const hessian = require('hessian.js');

const HEADER_LEN = 16;
const SERVICE = 'org.apache.dubbo.metadata.MetadataService';
const CONCURRENT_HASH_MAP = 'java.util.concurrent.ConcurrentHashMap';

const [ portArg, metadataArg ] = process.argv.slice(2);
if (portArg === undefined || !/^\d+$/.test(portArg) || metadataArg === undefined) {
  process.stderr.write('usage: node metadata_provider.js <port> <metadata-json>\n');
  process.exit(2);
}
const metadata = JSON.parse(metadataArg);

function log(msg) {
  process.stderr.write(`[metadata_provider ${process.pid}] ${msg}\n`);
}

// The Java object graph of a MetadataInfo, fields in hessian-lite's order.
function metadataInfo(m) {
  const services = {};
  for (const [ key, s ] of Object.entries(m.services || {})) {
    services[key] = {
      $class: 'org.apache.dubbo.metadata.MetadataInfo$ServiceInfo',
      $: {
        params: s.params || {},
        path: s.path === undefined ? null : s.path,
        port: s.port === undefined ? -1 : s.port,
        protocol: s.protocol === undefined ? null : s.protocol,
        version: s.version === undefined ? null : s.version,
        group: s.group === undefined ? null : s.group,
        name: s.name,
      },
    };
  }
  return {
    $class: 'org.apache.dubbo.metadata.MetadataInfo',
    $: {
      services: { $class: CONCURRENT_HASH_MAP, $: services },
      revision: m.revision,
      app: m.app,
    },
  };
}

function frame(id, status, body) {
  const h = Buffer.alloc(HEADER_LEN);
  h[0] = 0xda; h[1] = 0xbb; h[2] = 0x02; h[3] = status;
  h.writeBigInt64BE(id, 4);
  h.writeInt32BE(body.length, 12);
  return Buffer.concat([ h, body ]);
}

function encoder() {
  const mapTypes = {};
  mapTypes[CONCURRENT_HASH_MAP] = true;
  return new hessian.EncoderV2({ mapTypes });
}

function errorAnswer(id, message) {
  log(`status 80: ${message}`);
  return frame(id, 80, encoder().write(message).get());
}

// One request body read with hessian.js: the checks, then the answer frame (or null: none).
function answer(id, body) {
  let request;
  try {
    const d = new hessian.DecoderV2(body);
    const dubboVersion = d.read();
    const path = d.read();
    const version = d.read();
    const method = d.read();
    const desc = d.read();
    const args = desc === 'Ljava/lang/String;' ? [ d.read() ] : [];
    const attachments = d.read() || {};
    request = { dubboVersion, path, version, method, desc, args, attachments };
  } catch (err) {
    return errorAnswer(id, `hessian.js cannot read the request: ${err.message}`);
  }
  log(`request ${JSON.stringify(request)}`);
  const att = request.attachments;
  if (request.path !== SERVICE || att.path !== SERVICE || att.interface !== SERVICE) {
    return errorAnswer(id, `not found service ${request.path} (path ${att.path}, interface ${att.interface})`);
  }
  if (request.version !== '1.0.0' || att.version !== '1.0.0') {
    return errorAnswer(id, `not found service version ${request.version} / ${att.version}`);
  }
  if (att.group !== metadata.app) {
    return errorAnswer(id, `not found service group ${att.group} (serving group ${metadata.app})`);
  }
  if (request.method !== 'getMetadataInfo' || request.desc !== 'Ljava/lang/String;') {
    return errorAnswer(id, `no method ${request.method}(${request.desc})`);
  }
  const revision = request.args[0];
  const attachmentsOut = { dubbo: '2.0.2' };
  if (revision === 'close') return 'close';
  if (revision === 'slow') return 'slow';
  const e = encoder();
  if (revision === metadata.revision) {
    e.write(4).write(metadataInfo(metadata)).write(attachmentsOut);
  } else if (revision === 'throw') {
    e.write(3).write({
      $class: 'java.lang.IllegalStateException',
      $: { detailMessage: 'metadata not ready', cause: null },
    }).write(attachmentsOut);
  } else {
    e.write(5).write(attachmentsOut);
  }
  return frame(id, 20, e.get());
}

const server = net.createServer(socket => {
  let buf = Buffer.alloc(0);
  socket.on('error', err => log(`socket: ${err.message}`));
  socket.on('data', chunk => {
    buf = Buffer.concat([ buf, chunk ]);
    while (buf.length >= HEADER_LEN) {
      if (buf[0] !== 0xda || buf[1] !== 0xbb) {
        log('bad magic, closing');
        socket.destroy();
        return;
      }
      const len = buf.readInt32BE(12);
      if (len < 0 || len > 1024 * 1024) {
        log(`bad body length ${len}, closing`);
        socket.destroy();
        return;
      }
      if (buf.length < HEADER_LEN + len) return;
      const flag = buf[2];
      const id = buf.readBigInt64BE(4);
      const body = buf.subarray(HEADER_LEN, HEADER_LEN + len);
      buf = buf.subarray(HEADER_LEN + len);
      if ((flag & 0x80) === 0 || (flag & 0x20) !== 0) continue; // answers and events: ignored
      const out = answer(id, body);
      if (out === 'close') {
        socket.destroy();
        return;
      }
      if (out === 'slow') {
        setTimeout(() => socket.destroy(), 10000).unref();
        continue;
      }
      socket.write(out);
    }
  });
});

server.listen({ port: Number(portArg), host: '127.0.0.1' }, () => {
  process.stdout.write(`LISTENING ${server.address().port}\n`);
});
server.on('error', err => {
  log(`fatal: cannot listen: ${err.message}`);
  process.exit(1);
});

function stop() {
  server.close();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
const parentPid = process.ppid;
setInterval(() => {
  if (process.ppid !== parentPid) stop();
}, 1000).unref();
const maxLifetime = Number(process.env.INTEROP_MAX_LIFETIME_SECS || 300);
if (maxLifetime > 0) setTimeout(stop, maxLifetime * 1000).unref();
