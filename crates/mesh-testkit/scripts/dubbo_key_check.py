#!/usr/bin/env python3
"""An independent decoder for Dubbo's interface-level registry keys in etcd (Python 3 standard library only).

It reads keys under a root (from etcd's v3 JSON gateway, or one key per line on stdin), decodes them as Java's
EtcdRegistry does and checks them against Java's rules, then matches provider URLs against consumer URLs with
the rules of Java's UrlUtils.isMatch. It shares no code with the Rust agents: a key the agent writes must survive
this decoder as it would survive a Java consumer.

Java's rules checked on every key under <root>/ (sources: apache/dubbo 2.7.x
dubbo-registry/dubbo-registry-etcd3/.../EtcdRegistry.java, dubbo-remoting-etcd3/.../JEtcdClientWrapper.java,
dubbo-common/.../URL.java):
  * keys with fewer than 3 segments after the root are parent keys (Java writes /<root>/<iface> and
    /<root>/<iface>/<category> as persistent keys); they are listed, not checked;
  * a URL key is <URLEncoder(interface)>/<category>/<URLEncoder(full URL)>: exactly one '/' after the category
    path (Java's getChildren drops anything else, so an unencoded '/' is an error);
  * both encoded segments are byte-exact java.net.URLEncoder output (unless --any-encoding) of their decoded form (letters, digits and
    '.-*_' literal, space as '+', every other UTF-8 byte as upper-case %XX);
  * the decoded URL contains '://' (Java's toUrlsWithoutEmpty skips it otherwise), has a protocol, a host and a
    port > 0 (providers), and its parameters are sorted by key with no key twice (URL.toFullString writes them
    from a TreeMap);
  * the interface (the 'interface' parameter, else the URL path) equals the decoded interface segment, and a
    'category' parameter, if present, equals the category segment;
  * a provider URL (category 'providers') carries the parameters a Dubbo provider writes: side=provider, dubbo,
    release, interface, methods, application, timestamp (digits), plus any --require KEY (e.g. dubbo, which
    dubbo-go does not write) -- or, with --simplified, the ones a simplified URL keeps (application, release).

Matching (--match QUERY, repeatable): QUERY is a consumer URL's parameters, e.g.
'interface=com.foo.Bar&group=a,b&version=1.0'. For every check-clean URL key the consumer URL and the provider
URL are compared with UrlUtils.isMatch (apache/dubbo 2.7.x dubbo-common/.../utils/UrlUtils.java): interface equal
or '*' on either side; category by isMatchCategory (consumer default 'providers'); a provider with enabled=false
only for a consumer with enabled=*; group '*', equal, or in the consumer's comma list; version '*' or equal
(absent matches only absent); classifier '*' or equal.

Output: one JSON document on stdout:
  {"keys": N, "parents": [...], "urls": [{"key", "interface", "category", "url", "protocol", "host", "port",
   "path", "params"}...], "errors": [{"key", "error"}...], "matches": {QUERY: [{"key", "address", "service_key"}]}}
Exit status 0 when no key has an error, 1 otherwise, 2 on bad usage or when etcd cannot be read.
"""

import argparse
import base64
import json
import re
import sys
import urllib.parse
import urllib.request

JAVA_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-*_")
# What every provider writes (dubbo-go has no `dubbo` parameter: add it with --require for Java-like writers).
PROVIDER_REQUIRED = ("side", "release", "interface", "methods", "application", "timestamp")
SIMPLIFIED_REQUIRED = ("application", "release")
COMMA_SPLIT = re.compile(r"\s*[,]+\s*")  # CommonConstants.COMMA_SPLIT_PATTERN


def java_url_encode(text):
    """java.net.URLEncoder.encode(text, "UTF-8")."""
    out = []
    for b in text.encode("utf-8"):
        if b in JAVA_SAFE:
            out.append(chr(b))
        elif b == 0x20:
            out.append("+")
        else:
            out.append("%%%02X" % b)
    return "".join(out)


def java_url_decode(text):
    """java.net.URLDecoder.decode(text, "UTF-8") (URL.decode): '+' is a space."""
    return urllib.parse.unquote_plus(text, encoding="utf-8", errors="strict")


class KeyError_(Exception):
    pass


def parse_dubbo_url(url):
    """Splits 'protocol://[user[:pass]@]host[:port][/path][?k=v&...]' like Java URL.valueOf (no decoding of
    parameter values). Returns (protocol, host, port, path, [(k, v)...]) keeping parameter order."""
    if "://" not in url:
        raise KeyError_("no '://' in decoded URL (Java skips it)")
    protocol, rest = url.split("://", 1)
    if not protocol:
        raise KeyError_("empty protocol")
    query = ""
    if "?" in rest:
        rest, query = rest.split("?", 1)
    path = ""
    if "/" in rest:
        rest, path = rest.split("/", 1)
    if "@" in rest:
        rest = rest.rsplit("@", 1)[1]
    host, port = rest, 0
    if rest.count(":") == 1:
        host, port_text = rest.split(":", 1)
        if not port_text.isdigit():
            raise KeyError_("port %r is not a number" % port_text)
        port = int(port_text)
    params = []
    if query:
        for part in query.split("&"):
            if not part:
                continue
            if "=" in part:
                k, v = part.split("=", 1)
            else:
                k, v = part, part  # Java URL.valueOf: a bare key maps to itself
            params.append((k, v))
    return protocol, host, port, path, params


def utf16_key(s):
    """Java String.compareTo order (UTF-16 code units), for TreeMap."""
    return s.encode("utf-16-be")


def check_key(root, key, simplified, any_encoding=False, require=()):
    """Returns ('parent', None) for a parent key, or ('url', record); raises KeyError_ on a broken URL key."""
    rest = key[len(root):]
    if not rest.startswith("/"):
        raise KeyError_("not under root %r" % root)
    segments = rest[1:].split("/")
    if len(segments) < 3:
        return "parent", None
    if len(segments) > 3:
        raise KeyError_(
            "%d segments after the root: a '/' inside the interface or the URL is not encoded "
            "(Java keeps only keys with exactly one '/' after the category path)" % len(segments))
    iface_enc, category, url_enc = segments
    if not url_enc:
        raise KeyError_("empty URL segment")
    iface = java_url_decode(iface_enc)
    if not any_encoding and java_url_encode(iface) != iface_enc:
        raise KeyError_("interface segment %r is not Java URLEncoder output (expected %r)"
                        % (iface_enc, java_url_encode(iface)))
    url = java_url_decode(url_enc)
    if not any_encoding and java_url_encode(url) != url_enc:
        raise KeyError_("URL segment is not Java URLEncoder output: expected %r" % java_url_encode(url))
    protocol, host, port, path, params = parse_dubbo_url(url)
    keys = [k for k, _ in params]
    if len(set(keys)) != len(keys):
        raise KeyError_("a parameter appears twice: %r" % keys)
    if keys != sorted(keys, key=utf16_key):
        raise KeyError_("parameters not sorted by key (Java TreeMap order): %r" % keys)
    pmap = dict(params)
    service_interface = pmap.get("interface") or path
    if service_interface != iface:
        raise KeyError_("interface %r of the URL is not the key's interface %r" % (service_interface, iface))
    if "category" in pmap and pmap["category"] != category:
        raise KeyError_("category parameter %r under category path %r" % (pmap["category"], category))
    if category == "providers":
        if not host or port <= 0:
            raise KeyError_("provider URL without host:port")
        required = (SIMPLIFIED_REQUIRED if simplified else PROVIDER_REQUIRED) + tuple(require)
        missing = [k for k in required if not pmap.get(k)]
        if missing:
            raise KeyError_("provider URL lacks %r" % missing)
        if not simplified and pmap["side"] != "provider":
            raise KeyError_("side=%r on a provider URL" % pmap["side"])
        if "timestamp" in pmap and not pmap["timestamp"].isdigit():
            raise KeyError_("timestamp %r is not a number" % pmap["timestamp"])
    return "url", {
        "key": key, "interface": iface, "category": category, "url": url, "protocol": protocol,
        "host": host, "port": port, "path": path, "params": pmap,
    }


def java_bool(value, default):
    """URL.getParameter(key, boolean): empty -> default, else Boolean.parseBoolean."""
    if value is None or value == "":
        return default
    return value.lower() == "true"


def is_match_category(category, categories):
    """UrlUtils.isMatchCategory."""
    if not categories:
        return category == "providers"
    if "*" in categories:
        return True
    if "-" in categories:
        return ("-" + category) not in categories
    return category in categories


def is_contains(values, value):
    """StringUtils.isContains(String values, String value)."""
    return bool(values) and value is not None and value in COMMA_SPLIT.split(values)


def is_match(consumer, provider):
    """UrlUtils.isMatch(consumerUrl, providerUrl) over parameter maps (interface = param or path)."""
    ci, pi = consumer.get("interface"), provider.get("interface")
    if not (ci == "*" or pi == "*" or ci == pi):
        return False
    if not is_match_category(provider.get("category") or "providers", consumer.get("category") or "providers"):
        return False
    if not java_bool(provider.get("enabled"), True) and consumer.get("enabled") != "*":
        return False
    cg, cv = consumer.get("group"), consumer.get("version")
    cc = consumer.get("classifier") or "*"
    pg, pv = provider.get("group"), provider.get("version")
    pc = provider.get("classifier") or "*"
    return ((cg == "*" or cg == pg or is_contains(cg, pg))
            and (cv == "*" or cv == pv)
            and (cc == "*" or cc == pc))


def service_key(params):
    """BaseServiceMetadata.buildServiceKey: group/interface:version, empty parts omitted."""
    s = params.get("interface", "")
    if params.get("group"):
        s = params["group"] + "/" + s
    if params.get("version"):
        s = s + ":" + params["version"]
    return s


def read_etcd(endpoint, root):
    """All keys under root + '/' plus the root's own subtree keys, through etcd's v3 JSON gateway."""
    start = root.encode("utf-8")
    end = start[:-1] + bytes([start[-1] + 1])  # prefix end of the root (covers root itself and root/...)
    body = json.dumps({
        "key": base64.b64encode(start).decode(),
        "range_end": base64.b64encode(end).decode(),
        "keys_only": True,
    }).encode()
    keys = []
    for path in ("/v3/kv/range", "/v3beta/kv/range"):
        req = urllib.request.Request(endpoint.rstrip("/") + path, data=body,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                doc = json.load(resp)
        except urllib.error.HTTPError as e:
            if e.code == 404:
                continue
            raise
        for kv in doc.get("kvs", []):
            key = base64.b64decode(kv["key"]).decode("utf-8")
            if key == root or key.startswith(root + "/"):  # not /dubbo-other/...
                keys.append(key)
        return keys
    raise RuntimeError("etcd at %s has no v3 JSON gateway" % endpoint)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default="/dubbo", help="registry root (default /dubbo)")
    ap.add_argument("--etcd", help="etcd client URL to read keys from (else: keys on stdin, one a line)")
    ap.add_argument("--simplified", action="store_true", help="provider URLs may be simplified")
    ap.add_argument("--any-encoding", action="store_true",
                    help="accept any percent-encoding Java's decoder reads (e.g. Go's url.QueryEscape), "
                         "not only byte-exact URLEncoder output")
    ap.add_argument("--require", action="append", default=[],
                    help="a parameter every provider URL must carry besides the default ones (repeatable)")
    ap.add_argument("--match", action="append", default=[],
                    help="consumer URL parameters, e.g. 'interface=X&group=a,b&version=1.0' (repeatable)")
    args = ap.parse_args(argv)
    root = args.root.rstrip("/")
    if not root.startswith("/"):
        root = "/" + root
    try:
        if args.etcd:
            keys = read_etcd(args.etcd, root)
        else:
            keys = [line.rstrip("\r\n") for line in sys.stdin if line.strip()]
    except Exception as e:  # noqa: BLE001 - any failure to read is a usage/infrastructure error
        print(json.dumps({"fatal": "cannot read keys: %s" % e}))
        return 2

    report = {"keys": len(keys), "parents": [], "urls": [], "errors": [], "matches": {}}
    for key in sorted(keys):
        if key == root:
            report["parents"].append(key)
            continue
        try:
            kind, record = check_key(root, key, args.simplified, args.any_encoding, args.require)
        except (KeyError_, UnicodeDecodeError) as e:
            report["errors"].append({"key": key, "error": str(e)})
            continue
        if kind == "parent":
            report["parents"].append(key)
        else:
            report["urls"].append(record)

    for query in args.match:
        consumer = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
        matched = []
        for rec in report["urls"]:
            provider = dict(rec["params"])
            provider.setdefault("interface", rec["interface"])
            provider.setdefault("category", rec["category"])
            if is_match(consumer, provider):
                matched.append({
                    "key": rec["key"],
                    "address": "%s:%d" % (rec["host"], rec["port"]),
                    "service_key": service_key(provider),
                })
        report["matches"][query] = matched

    print(json.dumps(report, indent=1, sort_keys=True))
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
