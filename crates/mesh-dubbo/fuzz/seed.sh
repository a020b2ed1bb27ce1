#!/usr/bin/env bash
# Writes the seed corpora fuzz/corpus/frame and fuzz/corpus/hessian_value from tests/vectors (hex files) plus a
# few hand-written fastjson frames. The corpus directory is git-ignored; run this once before fuzzing (it only
# adds files, so running it again is harmless). Needs bash and xxd. See docs/fuzzing.md.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
vectors="$here/../tests/vectors"
frame_dir="$here/corpus/frame"
value_dir="$here/corpus/hessian_value"
mkdir -p "$frame_dir" "$value_dir"

# put DIR NAME HEX: write HEX as binary to DIR/seed-NAME.
put() { printf '%s' "$3" | xxd -r -p >"$1/seed-$2"; }
# text2hex TEXT: the hex of TEXT's bytes.
text2hex() { printf '%s' "$1" | xxd -p | tr -d '\n'; }
# frame FLAG STATUS BODYHEX: a whole Dubbo frame (id 7) as hex.
frame() { printf 'dabb%s%s0000000000000007%08x%s' "$1" "$2" $((${#3} / 2)) "$3"; }
# frame_seeds NAME FRAMEHEX: the frame read whole (ctl 00), byte by byte (01), in random pieces (87).
frame_seeds() {
  put "$frame_dir" "$1-whole" "00$2"
  put "$frame_dir" "$1-bytewise" "01$2"
  put "$frame_dir" "$1-pieces" "87$2"
}

# Captured frames: as they are, and their bodies as hessian value sequences.
all=""
for f in "$vectors"/frames/*.hex; do
  name=$(basename "$f" .hex)
  hex=$(tr -d ' \n' <"$f")
  all="$all$hex"
  frame_seeds "$name" "$hex"
  put "$value_dir" "body-$name" "${hex:32}"
done
# All of them back to back, as one pipelined stream.
frame_seeds "pipelined" "$all"

# hessian.js values: as they are, and as the value of an OK response (flag 02, status 20 = 0x14, result flag
# 1 = 0x91) and of an event, when they fit the frame target's 64 KiB body limit.
for f in "$vectors"/hessian2-hessianjs/*.hex; do
  name=$(basename "$f" .hex)
  hex=$(tr -d ' \n' <"$f")
  put "$value_dir" "$name" "$hex"
  if [ $((${#hex} / 2)) -lt 60000 ]; then
    put "$frame_dir" "resp-$name" "00$(frame 02 14 "91$hex")"
    put "$frame_dir" "event-$name" "00$(frame 22 14 "$hex")"
  fi
done

# fastjson (serialization 6): a request (flag c6), responses (flag 06), a heartbeat, an error.
nl=$'\n'
req="\"2.0.2\"$nl\"com.example.HelloService\"$nl\"0.0.0\"$nl\"hash\"$nl\"Ljava/lang/String;IDJ[Ljava/lang/String;\"$nl"
req+="\"hello\"${nl}42${nl}1.5${nl}12345678901234${nl}[\"a\",null,{\"k\":[1,2.5e300,true]}]$nl"
req+="{\"path\":\"com.example.HelloService\",\"timeout\":\"5000\",\"n\":1}$nl"
frame_seeds "fastjson-request" "$(frame c6 00 "$(text2hex "$req")")"
frame_seeds "fastjson-response-value" "$(frame 06 14 "$(text2hex "1${nl}99162322${nl}")")"
frame_seeds "fastjson-response-attachments" \
  "$(frame 06 14 "$(text2hex "4${nl}{\"d\":-0.0,\"s\":\"\\u00e9\\ud83d\\ude00\"}${nl}{\"dubbo\":\"2.0.2\"}${nl}")")"
frame_seeds "fastjson-response-exception" "$(frame 06 14 "$(text2hex "0${nl}{\"message\":\"boom\"}${nl}")")"
frame_seeds "fastjson-heartbeat" "$(frame e6 00 "$(text2hex "null${nl}")")"
frame_seeds "fastjson-error" "$(frame 06 50 "$(text2hex "\"service not found\"${nl}")")"

echo "frame: $(ls "$frame_dir" | wc -l) files, hessian_value: $(ls "$value_dir" | wc -l) files"
