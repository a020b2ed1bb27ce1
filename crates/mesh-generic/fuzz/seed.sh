#!/usr/bin/env bash
# Writes the seed corpus fuzz/corpus/json_body: one types line, then a body, for each supported type and
# both Pixiu body shapes. The corpus directory is git-ignored; run this once before fuzzing (it only adds
# files). Needs bash.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
dir="$here/corpus/json_body"
mkdir -p "$dir"
seeds=(
  'java.lang.String,int
["tc", 18]'
  '
{"types":"java.lang.String,java.lang.Integer","values":["tc",18]}'
  '
{"types":["long","double","boolean"],"values":[9007199254740993, 1.5e300, true]}'
  'Ljava/lang/String;IJZDFSBC
["a",1,2,true,1.5,0.1,-3,127,"x"]'
  'java.math.BigDecimal,java.math.BigInteger,java.util.Date,java.util.Date
["-1.50E+3","123456789012345678901234567890",0,"2024-05-01T12:30:00.250+02:00"]'
  'byte[],char[],[B,int[],java.lang.String[][]
["aGk=","chars",[1,-1,255],[1,2,3],[["a",null],[]]]'
  'java.util.List,java.util.Map,java.lang.Object
[[1,"a",null,{"k":[true]}],{"a":{"class":"x.Y","n":2}},{"class":"java.lang.Long","value":5}]'
  'org.apache.dubbo.mesh.Pojo,com.x.Color
[{"age":3,"id":{"class":"java.lang.Long","value":4},"score":1.5,"active":true,"name":"ann","tags":["x"]},"RED"]'
  'java.lang.Object
{"class":"java.util.TreeMap","k":{"class":"int[]","value":[1]},"d":{"class":"java.util.Date","value":"1970-01-01T00:00:00Z"}}'
  'int
"5"'
  ''
)
i=0
for s in "${seeds[@]}"; do
  printf '%s' "$s" >"$dir/seed-$i"
  i=$((i + 1))
done
echo "json_body: $(ls "$dir" | wc -l) files"
