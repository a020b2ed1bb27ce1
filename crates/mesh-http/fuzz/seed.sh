#!/usr/bin/env bash
# Writes the seed corpora fuzz/corpus/http_request and fuzz/corpus/form: the challenge's request and body,
# chunked and pipelined requests, 100-continue, HTTP/1.0 keep-alive, and a few near-misses. The corpus
# directory is git-ignored; run this once before fuzzing (it only adds files). Needs bash.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
req_dir="$here/corpus/http_request"
form_dir="$here/corpus/form"
mkdir -p "$req_dir" "$form_dir"

iface=com.alibaba.dubbo.performance.demo.provider.IHelloService
challenge="interface=$iface&method=hash&parameterTypesString=Ljava%2Flang%2FString%3B&parameter=Ab3xYz09Qq"
forms=(
  "$challenge"
  "interface=$iface&method=hash&parameterTypesString=Ljava/lang/String;&parameter="
  "interface=a.B&method=m%C3%A9&parameterTypesString=java.lang.String%2Cint%2Clong%5B%5D&parameter=a+b&parameter=1&parameter=%2B&version=1.0.0&group=g"
  "interface=I&method=m&parameterTypesString=I%5BZLjava%2Flang%2FObject%3B&parameter=1&parameter=true&parameter=x&x=y&&"
  "interface=I&method=m"
  "interface=I&method=m&parameterTypesString=Ljava%2Flang%2FString%3B&parameter=a&parameter=b"
  "interface=I&method=m&parameterTypesString=IJZDFSBC&parameter=-5&parameter=9007199254740993&parameter=TRUE&parameter=1.5e3&parameter=NaN&parameter=-32768&parameter=127&parameter=%E4%B8%AD"
  "interface=I&method=m&parameterTypesString=java.lang.Integer%2Cjava.math.BigDecimal%2Cjava.math.BigInteger%2Cjava.util.Date%2Cjava.util.Date&parameter=null&parameter=-1.50E%2B3&parameter=123456789012345678901234567890&parameter=0&parameter=2024-05-01T12%3A30%3A00.250%2B02%3A00"
  "interface=I&method=m&parameterTypesString=%5BB%2C%5BC%2Cint%5B%5D%2Cjava.lang.String%5B%5D%5B%5D&parameter=aGk%3D&parameter=chars&parameter=%5B1%2C2%5D&parameter=%5B%5B%22a%22%2Cnull%5D%5D"
  "interface=I&method=m&parameterTypesString=java.util.List%2Cjava.util.Map%2Cjava.lang.Object%2Ccom.x.Pojo&parameter=%5B1%2C%22a%22%5D&parameter=%7B%22a%22%3A%7B%22class%22%3A%22x.Y%22%7D%7D&parameter=plain+text&parameter=%7B%22id%22%3A%7B%22class%22%3A%22java.lang.Long%22%2C%22value%22%3A4%7D%7D"
)
i=0
for f in "${forms[@]}"; do
  printf '%s' "$f" >"$form_dir/seed-$i"
  i=$((i + 1))
done

# req NAME BYTES: a request-stream seed (ctl byte 0x00 = small limits, 0x01 = defaults); BYTES uses printf escapes.
req() {
  { printf '\x00'; printf '%b' "$2"; } >"$req_dir/seed-$1-small"
  { printf '\x01'; printf '%b' "$2"; } >"$req_dir/seed-$1-default"
}
len=${#challenge}
post="POST / HTTP/1.1\r\nHost: 127.0.0.1:20000\r\nContent-Type: application/x-www-form-urlencoded\r\n"
req challenge "${post}Content-Length: $len\r\n\r\n$challenge"
req pipelined "${post}Content-Length: $len\r\n\r\n$challenge${post}Content-Length: $len\r\n\r\n${challenge}GET / HTTP/1.1\r\n\r\n"
req chunked "${post}Transfer-Encoding: chunked\r\n\r\n10;x=y\r\ninterface=I&meth\r\n1e\r\nod=m&parameterTypesString=I&pa\r\nA\r\nrameter=12\r\n0\r\nT: v\r\n\r\n"
req continue "${post}Expect: 100-continue\r\nContent-Length: $len\r\n\r\n$challenge"
req http10 "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n"
req close "GET / HTTP/1.1\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n\r\n"
req both "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc"
req gzip "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
req cl-list "POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\nabc"
req big-cl "POST / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n"

echo "http_request: $(ls "$req_dir" | wc -l) files, form: $(ls "$form_dir" | wc -l) files"
