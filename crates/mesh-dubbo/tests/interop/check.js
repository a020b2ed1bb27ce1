#!/usr/bin/env node
'use strict';

// Raw-bytes probe of a running provider (provider.js or any dubbo:// hessian2 provider of
// IHelloService). Independent of every Dubbo/Hessian library: frames are built by hand here.
//
//   node check.js <port> [hessian-vectors-dir]
//
// Each probe opens its own loopback connection, writes request bytes, and collects response
// frames until it has the expected number, the peer closes, or 1.5 s pass. One JSON line per
// probe on stdout: {"probe","ok","request","responses":[{"id","flag","status","body"}],"closed"}.
// With a vectors dir (files `*.hex`, one hessian value each), every value is also sent as the
// argument of echo(Object) and reported with {"probe":"echo <file>","same":bool,...}.
// Exit 0 when every probe with an expectation met it, 1 otherwise; always within 30 s.

const fs = require('fs');
const net = require('net');
const path = require('path');

const HOST = '127.0.0.1';
const INTERFACE = 'com.alibaba.dubbo.performance.demo.provider.IHelloService';
const PROBE_WAIT_MS = 1500;

setTimeout(() => {
  process.stderr.write('check.js: global deadline (30 s) reached\n');
  process.exit(1);
}, 30000).unref();

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  process.stderr.write('usage: node check.js <port> [hessian-vectors-dir]\n');
  process.exit(2);
}
const vectorsDir = process.argv[3];

// The request dubbo2.js 2.3.9 sends for hash("hello") (captured on loopback; request id 1):
// "2.0.2", path, "" (version), "hash", "Ljava/lang/String;", "hello", attachments map.
const DUBBO2JS_HASH_HELLO = 'dabbc20000000000000000010000011605322e302e323039636f6d2e616c69626162612e647562626f2e706572666f726d616e63652e64656d6f2e70726f76696465722e4948656c6c6f53657276696365000468617368124c6a6176612f6c616e672f537472696e673b0568656c6c6f480b6170706c69636174696f6e09647562626f322e6a7309696e746572666163653039636f6d2e616c69626162612e647562626f2e706572666f726d616e63652e64656d6f2e70726f76696465722e4948656c6c6f5365727669636504706174683039636f6d2e616c69626162612e647562626f2e706572666f726d616e63652e64656d6f2e70726f76696465722e4948656c6c6f536572766963650774696d656f7574d413880776657273696f6e05302e302e305a';

// ---- minimal hessian2 writer: strings (UTF-16 unit count, CESU-8 bytes) and null ----
function hStr(s) {
  if (s === null) return Buffer.from([ 0x4e ]);
  const units = s.length;
  if (units > 0xffff) throw new Error('check.js only writes strings up to 65535 units');
  const bytes = [];
  for (let i = 0; i < units; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) bytes.push(c);
    else if (c < 0x800) bytes.push(0xc0 | (c >> 6), 0x80 | (c & 0x3f));
    else bytes.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f));
  }
  let head;
  if (units < 32) head = [ units ];
  else if (units < 1024) head = [ 0x30 + (units >> 8), units & 0xff ];
  else head = [ 0x53, units >> 8, units & 0xff ];
  return Buffer.from(head.concat(bytes));
}

function frame(flag, id, body) {
  const h = Buffer.alloc(16);
  h[0] = 0xda; h[1] = 0xbb; h[2] = flag; h[3] = 0;
  h.writeBigInt64BE(BigInt(id), 4);
  h.writeInt32BE(body.length, 12);
  return Buffer.concat([ h, body ]);
}

// A Java-style invocation body; `args` are already-encoded hessian values.
function invocation({ id = 1, flag = 0xc2, dubbo = '2.0.2', version = '0.0.0', method, desc, args }) {
  const body = Buffer.concat([
    hStr(dubbo), hStr(INTERFACE), hStr(version), hStr(method), hStr(desc),
    ...args,
    Buffer.from([ 0x48 ]), hStr('path'), hStr(INTERFACE), Buffer.from([ 0x5a ]), // H path=... Z
  ]);
  return frame(flag, id, body);
}

// ---- one probe = one connection ----
function exchange(bytes, expectFrames, byteByByte = false) {
  return new Promise(resolve => {
    const frames = [];
    let buf = Buffer.alloc(0);
    let closed = false;
    let done = false;
    const sock = net.connect({ host: HOST, port });
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve({ frames, closed, trailing: buf.toString('hex') });
    };
    const timer = setTimeout(finish, PROBE_WAIT_MS);
    sock.setNoDelay(true);
    sock.on('connect', () => {
      if (!byteByByte) return sock.write(bytes);
      let i = 0;
      const next = () => {
        if (done || i >= bytes.length) return;
        sock.write(bytes.subarray(i, i + 1));
        i++;
        setTimeout(next, 1);
      };
      next();
    });
    sock.on('data', d => {
      buf = Buffer.concat([ buf, d ]);
      while (buf.length >= 16) {
        const len = buf.readInt32BE(12);
        if (len < 0 || buf.length < 16 + len) break;
        frames.push(buf.subarray(0, 16 + len));
        buf = buf.subarray(16 + len);
      }
      if (frames.length >= expectFrames) finish();
    });
    sock.on('error', () => { closed = true; finish(); });
    sock.on('close', () => { closed = true; finish(); });
  });
}

function describe(f) {
  return {
    id: f.readBigInt64BE(4).toString(),
    flag: f[2].toString(16).padStart(2, '0'),
    status: f[3],
    body: f.subarray(16).toString('hex'),
  };
}

let failures = 0;
async function probe(name, bytes, expectFrames, check, byteByByte = false) {
  const r = await exchange(bytes, expectFrames, byteByByte);
  const responses = r.frames.map(describe);
  let ok = null;
  if (check) {
    try {
      ok = !!check(responses, r);
    } catch (err) {
      ok = false;
    }
    if (!ok) failures++;
  }
  const line = { probe: name, ok, request: bytes.toString('hex'), responses, closed: r.closed };
  if (r.trailing) line.trailing = r.trailing;
  process.stdout.write(JSON.stringify(line) + '\n');
  return responses;
}

const HEX = h => Buffer.from(h, 'hex');
const STRING_DESC = 'Ljava/lang/String;';
const OBJECT_DESC = 'Ljava/lang/Object;';

async function main() {
  await probe('dubbo2js vector hash("hello")', HEX(DUBBO2JS_HASH_HELLO), 1,
    ([ r ]) => r.id === '1' && r.flag === '02' && r.status === 20 && r.body === '914905e918d2');

  for (const [ label, version ] of [ [ '"0.0.0"', '0.0.0' ], [ '""', '' ], [ 'null', null ], [ '"1.0"', '1.0' ], [ '"1.0.0"', '1.0.0' ] ]) {
    await probe(`hash("hello") version ${label}`, invocation({ version, method: 'hash', desc: STRING_DESC, args: [ hStr('hello') ] }), 1,
      ([ r ]) => r.status === 20 && r.body === '914905e918d2');
  }
  await probe('hash("hello") dubbo "2.0.1"', invocation({ dubbo: '2.0.1', method: 'hash', desc: STRING_DESC, args: [ hStr('hello') ] }), 1,
    ([ r ]) => r.status === 20 && r.body === '914905e918d2');
  await probe('hash("")', invocation({ method: 'hash', desc: STRING_DESC, args: [ hStr('') ] }), 1,
    ([ r ]) => r.status === 20 && r.body === '9190');
  await probe('hash("x\\u{1F600}y") (CESU-8)', invocation({ method: 'hash', desc: STRING_DESC, args: [ hStr('x\u{1F600}y') ] }), 1,
    ([ r ]) => r.status === 20 && r.body === '9149' + (58534910).toString(16).padStart(8, '0'));
  await probe('hash(null)', invocation({ method: 'hash', desc: STRING_DESC, args: [ hStr(null) ] }), 1,
    ([ r ]) => r.status === 80);
  await probe('fail("boom")', invocation({ method: 'fail', desc: STRING_DESC, args: [ hStr('boom') ] }), 1,
    ([ r ]) => r.status === 80 && r.body === hStr('boom').toString('hex'));
  await probe('fail("")', invocation({ method: 'fail', desc: STRING_DESC, args: [ hStr('') ] }), 1,
    ([ r ]) => r.status === 80);
  await probe('unknown method', invocation({ method: 'nope', desc: STRING_DESC, args: [ hStr('x') ] }), 1,
    ([ r ]) => r.status === 80);
  await probe('unknown version "9.9"', invocation({ version: '9.9', method: 'hash', desc: STRING_DESC, args: [ hStr('x') ] }), 1,
    ([ r ]) => r.status === 80);
  for (const [ label, hex ] of [ [ 'null', '4e' ], [ 'int 0', '90' ], [ 'false', '46' ], [ '""', '00' ], [ 'int -1234567', '49ffed2979' ] ]) {
    await probe(`echo(${label})`, invocation({ method: 'echo', desc: OBJECT_DESC, args: [ HEX(hex) ] }), 1,
      ([ r ]) => r.status === 20 && r.body === '91' + hex);
  }
  await probe('heartbeat id 3', HEX('dabbe2000000000000000003000000014e'), 1,
    ([ r ]) => r.id === '3' && r.flag === '22' && r.status === 20 && r.body === '4e');
  await probe('two requests in one write (pipelined)', Buffer.concat([
    invocation({ id: 7, method: 'hash', desc: STRING_DESC, args: [ hStr('hello') ] }),
    invocation({ id: 8, method: 'hash', desc: STRING_DESC, args: [ hStr('') ] }),
  ]), 2, rs => rs.length === 2 && rs[0].id === '7' && rs[1].id === '8');
  await probe('request split byte by byte', invocation({ id: 9, method: 'hash', desc: STRING_DESC, args: [ hStr('hello') ] }), 1,
    ([ r ]) => r.id === '9' && r.body === '914905e918d2', true);
  // Informational (no expectation): how the peer treats unusual frames.
  await probe('one-way request (flag 82)', invocation({ flag: 0x82, method: 'hash', desc: STRING_DESC, args: [ hStr('hello') ] }), 1);
  await probe('readonly event "R" (flag a2)', frame(0xa2, 4, HEX('0152')), 1);
  await probe('serialization id 6 (fastjson)', frame(0xc6, 5, Buffer.from('"2.0.2"\n')), 1);

  if (vectorsDir) {
    const files = fs.readdirSync(vectorsDir).filter(f => f.endsWith('.hex')).sort();
    for (const file of files) {
      const hex = fs.readFileSync(path.join(vectorsDir, file), 'utf8').trim();
      const rs = await exchange(invocation({ method: 'echo', desc: OBJECT_DESC, args: [ HEX(hex) ] }), 1);
      const r = rs.frames[0] && describe(rs.frames[0]);
      const line = { probe: `echo ${file}`, sent: hex.length > 80 ? hex.slice(0, 80) + '...' : hex };
      if (!r) {
        line.closed = rs.closed;
      } else {
        line.status = r.status;
        line.same = r.status === 20 && r.body === '91' + hex;
        if (!line.same) line.got = r.body.length > 82 ? r.body.slice(0, 82) + '...' : r.body;
      }
      process.stdout.write(JSON.stringify(line) + '\n');
    }
  }
  process.exit(failures ? 1 : 0);
}

main().catch(err => {
  process.stderr.write(`check.js: ${err && err.stack || err}\n`);
  process.exit(1);
});
