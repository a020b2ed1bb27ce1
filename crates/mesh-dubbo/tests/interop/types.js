'use strict';

// The typed service of the interop peers, shared by provider.js (which serves it) and
// types_consumer.js (which calls it): its Java-style declaration, a wire-type reader built on
// hessian.js 2.11's own decoder, the check "does this hessian value decode as the declared Java
// type", and conversions between typed values, js-to-java values and JSON.
//
// Nothing here knows about the mesh agent. See README.md ("TypesService") for the table.

const hessian = require('hessian.js');
const java = require('js-to-java');

const TYPES_INTERFACE = 'org.apache.dubbo.mesh.TypesService';
const POJO_CLASS = 'org.apache.dubbo.mesh.Pojo';
const EXCEPTION_CLASS = 'java.lang.IllegalArgumentException';

// The POJO's fields, in the order Java's hessian (hessian-lite JavaSerializer) writes them:
// primitive fields first, then the others.
const POJO_FIELDS = [
  [ 'age', 'int' ],
  [ 'id', 'long' ],
  [ 'score', 'double' ],
  [ 'active', 'boolean' ],
  [ 'name', 'java.lang.String' ],
  [ 'tags', 'java.util.List' ],
];

// Java type -> JVM descriptor.
const DESCRIPTORS = {
  int: 'I',
  long: 'J',
  double: 'D',
  boolean: 'Z',
  'java.lang.String': 'Ljava/lang/String;',
  'byte[]': '[B',
  'java.util.List': 'Ljava/util/List;',
  'java.util.Map': 'Ljava/util/Map;',
  [POJO_CLASS]: `L${POJO_CLASS.replace(/\./g, '/')};`,
};

// method -> Java parameter type and return type (one parameter each).
const METHODS = {
  echoInt: { param: 'int', ret: 'int' },
  echoLong: { param: 'long', ret: 'long' },
  echoDouble: { param: 'double', ret: 'double' },
  echoBoolean: { param: 'boolean', ret: 'boolean' },
  echoString: { param: 'java.lang.String', ret: 'java.lang.String' },
  echoBytes: { param: 'byte[]', ret: 'byte[]' },
  echoList: { param: 'java.util.List', ret: 'java.util.List' },
  echoMap: { param: 'java.util.Map', ret: 'java.util.Map' },
  echoPojo: { param: POJO_CLASS, ret: POJO_CLASS },
  // Answers a Java exception object (response flag 0): IllegalArgumentException(message).
  throwException: { param: 'java.lang.String', ret: 'java.lang.String' },
  // Answers null the way Java does (response flag 2, RESPONSE_NULL_VALUE).
  returnNull: { param: 'java.lang.String', ret: 'java.lang.String' },
};

function descriptorOf(method) {
  return DESCRIPTORS[METHODS[method].param];
}

// ---- reading hessian values with their wire type --------------------------------------------
//
// A typed value is {t, v}: t is the hessian type the bytes carry as hessian.js classifies them
// (its BYTE_CODES table), v the value read with hessian.js's reader for that type:
//   null | boolean | int | long (v = decimal string, exact) | double | date (v = ms) | string |
//   binary (v = Buffer) | list {type, items} | map {type, entries: [[k, v]]} |
//   object {cls, fields: [[name, v]]} | ref (v = index; not followed)
// Lists, maps and objects are walked here because hessian.js drops the item types.

const MAX_ITEMS = 100000;
const MAX_DEPTH = 32;

function readTyped(d, depth = 0) {
  if (depth > MAX_DEPTH) throw new Error(`hessian value nested deeper than ${MAX_DEPTH}`);
  const bb = d.byteBuffer;
  const code = bb.get(bb.position());
  const method = d.BYTE_CODES[code];
  switch (method) {
    case 'readNull': d.readNull(); return { t: 'null' };
    case 'readBool': return { t: 'boolean', v: d.readBool() };
    case 'readInt': return { t: 'int', v: d.readInt() };
    case 'readLong': return { t: 'long', v: String(d.readLong()) };
    case 'readDouble': return { t: 'double', v: d.readDouble() };
    case 'readDate': return { t: 'date', v: d.readDate().getTime() };
    case 'readString': return { t: 'string', v: d.readString() };
    case 'readBytes': return { t: 'binary', v: d.readBytes() };
    case 'readRef': return { t: 'ref', v: d.readRefId() };
    case 'readArray': return readList(d, depth);
    case 'readHashMap': bb.skip(1); return readEntries(d, null, depth);
    case 'readMap': bb.skip(1); return readEntries(d, d.readType() || null, depth);
    case 'readObject': return readObject(d, depth);
    default:
      break;
  }
  // Variable-length lists (0x55 typed, 0x57 untyped), which hessian.js cannot decode.
  if (code === 0x55 || code === 0x57) {
    bb.skip(1);
    const type = code === 0x55 ? d.readType() || null : null;
    const items = [];
    while (bb.get(bb.position()) !== 0x5a) {
      if (items.length >= MAX_ITEMS) throw new Error('list too long');
      items.push(readTyped(d, depth + 1));
    }
    bb.skip(1);
    return { t: 'list', v: { type, items } };
  }
  throw new Error(`hessian.js has no reader for code 0x${code.toString(16)}`);
}

function readList(d, depth) {
  const bb = d.byteBuffer;
  const code = bb.get();
  let type = null;
  let len;
  if (code === 0x56) {
    type = d.readType();
    len = d.readInt();
  } else if (code === 0x58) {
    len = d.readInt();
  } else if (code >= 0x70 && code <= 0x77) {
    type = d.readType();
    len = code - 0x70;
  } else {
    len = code - 0x78;
  }
  if (len < 0 || len > MAX_ITEMS) throw new Error(`list length ${len}`);
  const items = [];
  for (let i = 0; i < len; i++) items.push(readTyped(d, depth + 1));
  return { t: 'list', v: { type: type || null, items } };
}

function readEntries(d, type, depth) {
  const bb = d.byteBuffer;
  const entries = [];
  while (bb.get(bb.position()) !== 0x5a) {
    if (entries.length >= MAX_ITEMS) throw new Error('map too long');
    const k = readTyped(d, depth + 1);
    const v = readTyped(d, depth + 1);
    entries.push([ k, v ]);
  }
  bb.skip(1);
  return { t: 'map', v: { type, entries } };
}

function readObject(d, depth) {
  const bb = d.byteBuffer;
  let code = bb.get();
  if (code === 0x43) { // 'C': class definition, then the instance
    d._readObjectDefinition();
    code = bb.get();
  }
  let ref;
  if (code === 0x4f) ref = d.readInt();
  else if (code >= 0x60 && code <= 0x6f) ref = code - 0x60;
  else throw new Error(`bad object code 0x${code.toString(16)}`);
  const cls = d.classes[ref];
  if (!cls) throw new Error(`object refers to unknown class definition #${ref}`);
  const fields = cls.fields.map(name => [ name, readTyped(d, depth + 1) ]);
  return { t: 'object', v: { cls: cls.name, fields } };
}

// A decoder over `buf` (hessian.js 2.11 DecoderV2).
function decoder(buf) {
  return new hessian.DecoderV2(buf);
}

// ---- request and response bodies ---------------------------------------------------------------

// Reads a Dubbo request body (after the 16-byte header): dubbo version, path, version, method,
// descriptor, then the arguments with their wire types (as many as the descriptor has types).
function readRequestBody(body) {
  const d = decoder(body);
  const dubbo = d.readString();
  const path = d.readString();
  const version = d.read(); // a string, or null from some clients
  const method = d.readString();
  const desc = d.readString();
  const count = countDescriptorTypes(desc);
  const args = [];
  for (let i = 0; i < count; i++) args.push(readTyped(d));
  return { dubbo, path, version, method, desc, args };
}

// Number of types in a JVM parameter descriptor (e.g. "I[BLjava/lang/String;" -> 3).
function countDescriptorTypes(desc) {
  let n = 0;
  for (let i = 0; i < desc.length; i++) {
    while (desc[i] === '[') i++;
    if (desc[i] === 'L') {
      const end = desc.indexOf(';', i);
      if (end < 0) throw new Error(`bad descriptor ${desc}`);
      i = end;
    }
    n++;
  }
  return n;
}

// Reads an OK (status 20) response body: {flag, value?, exception?, attachments?}.
function readResponseBody(body) {
  const d = decoder(body);
  const flag = d.readInt();
  const out = { flag };
  if (flag === 1 || flag === 4) out.value = readTyped(d);
  if (flag === 0 || flag === 3) out.exception = readTyped(d);
  if (flag >= 3 && flag <= 5) out.attachments = readTyped(d);
  return out;
}

// The message of a non-20 response: a hessian string (what Java writes), else the raw text.
function readErrorBody(body) {
  try {
    return decoder(body).readString();
  } catch (err) {
    return body.toString('utf8');
  }
}

// {cls, message} of an exception object (its `detailMessage` field, as Java's Throwable has it).
function describeException(typed) {
  if (!typed || typed.t !== 'object') return { cls: null, message: null };
  const f = typed.v.fields.find(([ name ]) => name === 'detailMessage');
  return { cls: typed.v.cls, message: f && f[1].t === 'string' ? f[1].v : null };
}

// ---- does a typed value decode as a Java type? -----------------------------------------------

// Returns null when `typed` is what Java's hessian writes for `javaType`, else a reason.
// strict: top-level arguments and results must carry exactly the type (an int for `long` is
// wrong). Not strict (POJO fields): numeric widening that hessian-lite's field readers accept
// (int for long; int or long for double).
function checkType(javaType, typed, strict = true) {
  const t = typed.t;
  const want = (ok, what) => (ok ? null : `expected ${what}, got hessian ${t}`);
  switch (javaType) {
    case 'int': return want(t === 'int', 'int');
    case 'long': return want(t === 'long' || (!strict && t === 'int'), 'long');
    case 'double': return want(t === 'double' || (!strict && (t === 'int' || t === 'long')), 'double');
    case 'boolean': return want(t === 'boolean', 'boolean');
    case 'java.lang.String': return want(t === 'string' || t === 'null', 'string');
    case 'byte[]': return want(t === 'binary' || t === 'null', 'binary');
    case 'java.util.List': return want(t === 'list' || t === 'null', 'list');
    case 'java.util.Map': return want(t === 'map' || t === 'null', 'map');
    case POJO_CLASS: {
      if (t === 'null') return null;
      if (t !== 'object' || typed.v.cls !== POJO_CLASS) {
        return `expected object ${POJO_CLASS}, got hessian ${t}${t === 'object' ? ' ' + typed.v.cls : ''}`;
      }
      for (const [ name, value ] of typed.v.fields) {
        const decl = POJO_FIELDS.find(([ n ]) => n === name);
        if (!decl) return `${POJO_CLASS} has no field ${name}`;
        const why = checkType(decl[1], value, strict);
        if (why) return `field ${name}: ${why}`;
      }
      return null;
    }
    default:
      return `unknown Java type ${javaType}`;
  }
}

// A short description of a typed value's wire types, e.g. "list[int,string]" or
// "object org.apache.dubbo.mesh.Pojo{age:int,...}".
function wireOf(typed) {
  switch (typed.t) {
    case 'list': return `list${typed.v.type ? '<' + typed.v.type + '>' : ''}[${typed.v.items.map(wireOf).join(',')}]`;
    case 'map': return `map${typed.v.type ? '<' + typed.v.type + '>' : ''}{${typed.v.entries.map(([ k, v ]) => `${k.t === 'string' ? k.v : wireOf(k)}:${wireOf(v)}`).join(',')}}`;
    case 'object': return `object ${typed.v.cls}{${typed.v.fields.map(([ n, v ]) => `${n}:${wireOf(v)}`).join(',')}}`;
    default: return typed.t;
  }
}

// ---- conversions ---------------------------------------------------------------------------------

// typed -> a js-to-java value hessian.js writes with the same wire type (used by the echo).
// `javaType`, when given, forces the declared type (POJO fields: Java's object has typed fields).
function toJava(typed, javaType) {
  switch (javaType) {
    case 'int': return java.int(Number(typed.v));
    case 'long': return java.long(String(typed.v));
    case 'double': return java.double(Number(typed.v));
    default: break;
  }
  switch (typed.t) {
    case 'null': return null;
    case 'boolean': return java.boolean(typed.v);
    case 'int': return java.int(typed.v);
    case 'long': return java.long(typed.v);
    case 'double': return java.double(typed.v);
    case 'date': return new Date(typed.v);
    case 'string': return typed.v;
    case 'binary': return typed.v;
    case 'list': return typed.v.items.map(i => toJava(i));
    case 'map': {
      const out = {};
      for (const [ k, v ] of typed.v.entries) out[k.t === 'string' ? k.v : String(k.v)] = toJava(v);
      return out;
    }
    case 'object': {
      if (typed.v.cls === POJO_CLASS) {
        const got = new Map(typed.v.fields);
        const out = {};
        for (const [ name, type ] of POJO_FIELDS) {
          const v = got.get(name);
          out[name] = v === undefined || v.t === 'null' ? defaultOf(type) : toJava(v, type);
        }
        return { $class: POJO_CLASS, $: out };
      }
      const out = {};
      for (const [ name, v ] of typed.v.fields) out[name] = toJava(v);
      return { $class: typed.v.cls, $: out };
    }
    default:
      throw new Error(`cannot echo a hessian ${typed.t}`);
  }
}

// Java's default for a missing field.
function defaultOf(type) {
  switch (type) {
    case 'int': return java.int(0);
    case 'long': return java.long(0);
    case 'double': return java.double(0);
    case 'boolean': return java.boolean(false);
    default: return null;
  }
}

// typed -> JSON text. Longs are written as exact integer literals (JSON allows any size),
// byte[] as base64, objects as Dubbo's generic form (a map with a "class" key).
function toJsonText(typed) {
  switch (typed.t) {
    case 'null': return 'null';
    case 'boolean': return typed.v ? 'true' : 'false';
    case 'int': return String(typed.v);
    case 'long': return String(typed.v);
    case 'double': return Number.isFinite(typed.v) ? JSON.stringify(typed.v) : JSON.stringify(String(typed.v));
    case 'date': return String(typed.v);
    case 'string': return JSON.stringify(typed.v);
    case 'binary': return JSON.stringify(typed.v.toString('base64'));
    case 'ref': return JSON.stringify(`<ref ${typed.v}>`);
    case 'list': return `[${typed.v.items.map(toJsonText).join(',')}]`;
    case 'map':
      return `{${typed.v.entries.map(([ k, v ]) => `${JSON.stringify(k.t === 'string' ? k.v : String(k.v))}:${toJsonText(v)}`).join(',')}}`;
    case 'object':
      return `{"class":${JSON.stringify(typed.v.cls)}${typed.v.fields.map(([ n, v ]) => `,${JSON.stringify(n)}:${toJsonText(v)}`).join('')}}`;
    default:
      return JSON.stringify(`<${typed.t}>`);
  }
}

// ---- JSON arguments -> js-to-java values (what a Node client passes to its library) -------------

// A JSON value without a declared type: integers that fit an int -> int, other integers -> long,
// other numbers -> double (Dubbo generic-call conventions for untyped JSON numbers).
function untypedToJava(v) {
  if (v === null) return null;
  if (typeof v === 'boolean') return java.boolean(v);
  if (typeof v === 'number') {
    if (Number.isInteger(v)) return v >= -2147483648 && v <= 2147483647 ? java.int(v) : java.long(v);
    return java.double(v);
  }
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) return java.List(v.map(untypedToJava));
  const out = {};
  for (const [ k, x ] of Object.entries(v)) out[k] = untypedToJava(x);
  return java.Map(out);
}

// A JSON argument for `javaType` -> the js-to-java value. long accepts a decimal string for
// values beyond 2^53; byte[] is base64; the POJO is an object of its fields ("class" ignored).
function argToJava(javaType, v) {
  if (v === null) return null;
  switch (javaType) {
    case 'int': return java.int(v);
    case 'long': return java.long(String(v));
    case 'double': return java.double(v);
    case 'boolean': return java.boolean(v);
    case 'java.lang.String': return java.String(v);
    case 'byte[]': return Buffer.from(v, 'base64');
    case 'java.util.List': return java.List(v.map(untypedToJava));
    case 'java.util.Map': {
      const out = {};
      for (const [ k, x ] of Object.entries(v)) out[k] = untypedToJava(x);
      return java.Map(out);
    }
    case POJO_CLASS: {
      const out = {};
      for (const [ name, type ] of POJO_FIELDS) {
        out[name] = v[name] === undefined ? defaultOf(type) : type === 'java.util.List'
          ? (v[name] === null ? null : java.List(v[name].map(untypedToJava)))
          : argToJava(type, v[name]);
      }
      return { $class: POJO_CLASS, $: out };
    }
    default:
      throw new Error(`unknown Java type ${javaType}`);
  }
}

// ---- Dubbo's generic call ($invoke with generic=true), as Java's GenericFilter serves it -----------------
//
// $invoke(String method, String[] parameterTypes, Object[] args): the method is found by name and
// parameter type names (ReflectUtils.findMethodByMethodSignature: names as Class.forName or Java source
// takes them), each argument is "realized" to its declared type (PojoUtils.realize: numbers converted
// between number types, a map becomes the POJO of its `class` member or of the declared class), the
// method runs, and its result is "generalized" (PojoUtils.generalize: a POJO becomes a HashMap with a
// `class` member; numbers, strings, booleans, byte[] stay; lists and maps item by item). A thrown exception
// is answered as org.apache.dubbo.rpc.service.GenericException {exceptionClass, exceptionMessage}.

const GENERIC_METHOD = '$invoke';
const GENERIC_DESCRIPTOR = 'Ljava/lang/String;[Ljava/lang/String;[Ljava/lang/Object;';
const GENERIC_EXCEPTION_CLASS = 'org.apache.dubbo.rpc.service.GenericException';

// Type names Java's method lookup accepts for each declared type.
const TYPE_NAMES = {
  int: [ 'int' ],
  long: [ 'long' ],
  double: [ 'double' ],
  boolean: [ 'boolean' ],
  'java.lang.String': [ 'java.lang.String' ],
  'byte[]': [ 'byte[]', '[B' ],
  'java.util.List': [ 'java.util.List' ],
  'java.util.Map': [ 'java.util.Map' ],
  [POJO_CLASS]: [ POJO_CLASS ],
};

// A realize failure: Java's reflection refuses the argument ("argument type mismatch").
class ArgumentMismatch extends Error {}

const INT_MIN = -2147483648;
const INT_MAX = 2147483647;

function isNumber(t) {
  return t.t === 'int' || t.t === 'long' || t.t === 'double';
}

// PojoUtils.realize of a typed value to `javaType`; returns a typed value of that type.
function realize(javaType, typed) {
  if (typed.t === 'null') {
    if ([ 'int', 'long', 'double', 'boolean' ].includes(javaType)) throw new ArgumentMismatch('argument type mismatch');
    return typed;
  }
  const mismatch = () => { throw new ArgumentMismatch('argument type mismatch'); };
  switch (javaType) {
    case 'int': {
      if (!isNumber(typed)) mismatch();
      const n = Number(typed.v);
      if (!Number.isInteger(n) || n < INT_MIN || n > INT_MAX) mismatch();
      return { t: 'int', v: n };
    }
    case 'long': {
      if (typed.t === 'int' || typed.t === 'long') return { t: 'long', v: String(typed.v) };
      if (typed.t === 'double' && Number.isInteger(typed.v)) return { t: 'long', v: String(typed.v) };
      return mismatch();
    }
    case 'double':
      return isNumber(typed) ? { t: 'double', v: Number(typed.v) } : mismatch();
    case 'boolean':
      return typed.t === 'boolean' ? typed : mismatch();
    case 'java.lang.String':
      return typed.t === 'string' ? typed : mismatch();
    case 'byte[]':
      return typed.t === 'binary' ? typed : mismatch();
    case 'java.util.List':
      return typed.t === 'list' ? typed : mismatch();
    case 'java.util.Map':
      return typed.t === 'map' ? typed : mismatch();
    case POJO_CLASS: {
      let fields;
      if (typed.t === 'object' && typed.v.cls === POJO_CLASS) {
        fields = typed.v.fields;
      } else if (typed.t === 'map') {
        fields = [];
        for (const [ k, v ] of typed.v.entries) {
          if (k.t !== 'string') mismatch();
          if (k.v === 'class') {
            if (v.t !== 'string' || v.v !== POJO_CLASS) mismatch();
            continue;
          }
          fields.push([ k.v, v ]);
        }
      } else {
        return mismatch();
      }
      const out = [];
      for (const [ name, type ] of POJO_FIELDS) {
        const f = fields.find(([ n ]) => n === name);
        out.push([ name, f ? realize(type, f[1]) : { t: 'null' } ]);
      }
      return { t: 'object', v: { cls: POJO_CLASS, fields: out } };
    }
    default:
      return mismatch();
  }
}

// PojoUtils.generalize of a typed result of `javaType`, as a js-to-java value.
function generalize(javaType, typed) {
  if (typed.t === 'null') return null;
  if (javaType === POJO_CLASS) {
    const out = { class: POJO_CLASS };
    for (const [ name, type ] of POJO_FIELDS) {
      const f = typed.v.fields.find(([ n ]) => n === name);
      out[name] = !f || f[1].t === 'null' ? defaultOf(type) : toJava(f[1], type);
    }
    return out; // a plain object: hessian.js writes it as an untyped map (Java's HashMap)
  }
  return toJava(typed, javaType);
}

// The GenericException Java's GenericFilter answers for a thrown exception.
function genericException(cls, message) {
  return {
    $class: GENERIC_EXCEPTION_CLASS,
    $: {
      exceptionClass: cls,
      exceptionMessage: message,
      detailMessage: message === null ? cls : `${cls}: ${message}`,
      cause: null,
      stackTrace: { $class: '[java.lang.StackTraceElement', $: [] },
      suppressedExceptions: [],
    },
  };
}

// Default calls of the consumer script: boundary values of every type.
const DEFAULT_CASES = [
  { method: 'echoInt', arg: 0 },
  { method: 'echoInt', arg: -2147483648 },
  { method: 'echoInt', arg: 2147483647 },
  { method: 'echoLong', arg: 0 },
  { method: 'echoLong', arg: '9223372036854775807' },
  { method: 'echoLong', arg: '-9223372036854775808' },
  { method: 'echoDouble', arg: 0 },
  { method: 'echoDouble', arg: -0.1 },
  { method: 'echoDouble', arg: 1e300 },
  { method: 'echoBoolean', arg: false },
  { method: 'echoBoolean', arg: true },
  { method: 'echoString', arg: '' },
  { method: 'echoString', arg: 'x\u{1F600}y中' },
  { method: 'echoBytes', arg: '' },
  { method: 'echoBytes', arg: 'AAEC/w==' },
  { method: 'echoList', arg: [ 1, 'two', null, 2.5, 4294967296, true ] },
  { method: 'echoMap', arg: { a: 1, b: 'x', c: null, d: [ 1 ] } },
  { method: 'echoPojo', arg: { name: 'n', age: 42, id: '9007199254740993', score: 2.5, active: true, tags: [ 't1', 't2' ] } },
  { method: 'throwException', arg: 'bad input' },
  { method: 'returnNull', arg: 'x' },
];

module.exports = {
  GENERIC_METHOD,
  GENERIC_DESCRIPTOR,
  GENERIC_EXCEPTION_CLASS,
  TYPE_NAMES,
  ArgumentMismatch,
  realize,
  generalize,
  genericException,
  TYPES_INTERFACE,
  POJO_CLASS,
  POJO_FIELDS,
  EXCEPTION_CLASS,
  METHODS,
  DESCRIPTORS,
  DEFAULT_CASES,
  descriptorOf,
  readTyped,
  readRequestBody,
  readResponseBody,
  readErrorBody,
  describeException,
  checkType,
  wireOf,
  toJava,
  toJsonText,
  argToJava,
  untypedToJava,
  countDescriptorTypes,
};
