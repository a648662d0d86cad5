#!/usr/bin/env bash
# Write the seed corpus of the safetensors fuzzer (a few valid and invalid
# files) into tests/fuzz/corpus_safetensors/.  Run from anywhere.
set -eu
dir=$(cd "$(dirname "$0")" && pwd)/corpus_safetensors
mkdir -p "$dir"

# mk NAME HEADER DATA_BYTES [N]: 8-byte length (N, default the header's
# length), the header, then DATA_BYTES bytes counting 1, 2, 3, ...
mk() {
    local name=$1 hdr=$2 data=$3 n=${4:-${#2}} i
    {
        for i in 0 8 16 24 32 40 48 56; do
            printf "\\x$(printf %02x $(( (n >> i) & 255 )))"
        done
        printf '%s' "$hdr"
        for ((i = 1; i <= data; i++)); do printf "\\x$(printf %02x $((i & 255)))"; done
    } > "$dir/$name"
}

mk valid-two '{"__metadata__":{"format":"pt"},"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"w":{"dtype":"F16","shape":[2,1],"data_offsets":[4,8]}} ' 8
mk valid-floats '{"f":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[3],"data_offsets":[8,14]},"s":{"dtype":"F16","shape":[],"data_offsets":[14,16]},"z":{"dtype":"F64","shape":[0,4],"data_offsets":[16,16]},"i":{"dtype":"I64","shape":[1],"data_offsets":[16,24]}}' 24
mk valid-ints '{"a":{"dtype":"BOOL","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"I8","shape":[1],"data_offsets":[1,2]},"c":{"dtype":"I16","shape":[1],"data_offsets":[2,4]},"d":{"dtype":"U16","shape":[1],"data_offsets":[4,6]},"e":{"dtype":"I32","shape":[1],"data_offsets":[6,10]},"f":{"dtype":"U32","shape":[1],"data_offsets":[10,14]},"g":{"dtype":"U64","shape":[1],"data_offsets":[14,22]}}' 22
mk valid-empty '{"__metadata__":{"format":"pt"}}' 0
mk bad-overlap '{"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[8],"data_offsets":[4,12]}}' 12
mk bad-hole '{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[8,12]}}' 12
mk bad-size '{"w":{"dtype":"F16","shape":[4,3],"data_offsets":[0,10]}}' 10
mk bad-dtype '{"w":{"dtype":"F8","shape":[1],"data_offsets":[0,1]}}' 1
mk bad-dup '{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}' 2
mk bad-metadata '{"__metadata__":{"format":1}}' 0
mk bad-json '{"w":{"dtype":"U8","shape":[1],' 0
mk bad-truncated '{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}' 0 200
printf '\x05\x00\x00' > "$dir/bad-short"
