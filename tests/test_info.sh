#!/usr/bin/env bash
# `q4k info`: the table and metadata of a sample file, valid JSON with
# --json, exit 1 and a one-line error for a bad file, exit 2 for usage
# errors. Uses ./q4k and build/tool_gguf_write (the Makefile builds both).
set -u
cd "$(dirname "$0")/.."
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
Q4K=${Q4K_BIN:-./q4k} # Q4K_BIN=./q4k-asan: the sanitizer build (tests/test_sanitize_cli.sh)
TOOL=build/tool_gguf_write

ok() { echo "ok $1"; }
fail() { echo "FAIL $1${2:+: $2}"; }

if [ ! -x "$Q4K" ] || [ ! -x "$TOOL" ]; then
    fail info_prerequisites "build ./q4k and $TOOL first (make test-bins)"
    exit 1
fi

"$TOOL" "$tmp/s.gguf" || { fail info_sample_written; exit 1; }
"$TOOL" "$tmp/q3k.gguf" --q3k --align 64 || { fail info_sample_written; exit 1; }

# text: every tensor row with its type and shape, metadata values, abbreviation
out=$("$Q4K" info "$tmp/s.gguf" 2>"$tmp/err"); rc=$?
if [ $rc -eq 0 ] && [ ! -s "$tmp/err" ]; then ok info_text_exit_0; else fail info_text_exit_0 "rc=$rc $(cat "$tmp/err")"; fi
missing=""
while read -r name type shape; do
    printf '%s\n' "$out" | grep -E "^ +[0-9]+ +$name +$type +\\[$shape\\]" >/dev/null || missing="$missing $name/$type/[$shape]"
done <<'EOF'
token_embd.weight Q4_K 256, 4
blk.0.attn_q.weight Q5_K 512, 2
blk.0.ffn_down.weight Q6_K 256, 3
blk.0.attn_k.weight Q8_0 64, 3
blk.0.attn_v.weight Q4_0 32, 2, 2
blk.0.ffn_up.weight Q5_0 96, 1
blk.0.attn_norm.weight F32 16
blk.0.ffn_gate.weight F16 8, 2, 3, 2
output_norm.weight BF16 24
EOF
if [ -z "$missing" ]; then ok info_text_tensor_table; else fail info_text_tensor_table "missing rows:$missing"; printf '%s\n' "$out"; fi
missing=""
for want in 'general.architecture +STRING +"llama"' 'sample.i64 +INT64 +-1152921504606846977' \
            'sample.f32 +FLOAT32 +0.15625' 'sample.bool +BOOL +true' \
            'tokenizer.ggml.tokens +\[STRING\] +\["tok0", .*"tok7", \.\.\. \(20 total\)\]' \
            'sample.arr_i32_long +\[INT32\] +\[-50, .*\.\.\. \(100 total\)\]' \
            'sample.arr_nested +\[ARRAY\] +\[\[1, 2, 3\], \["x", "y"\], \[\[1.5\]\], \[\]\]' \
            '^tensors: 9, ' '^GGUF v3, [0-9]+ bytes, alignment 32'; do
    printf '%s\n' "$out" | grep -E -- "$want" >/dev/null || missing="$missing /$want/"
done
if [ -z "$missing" ]; then ok info_text_metadata; else fail info_text_metadata "no line matches$missing"; fi

# JSON: parses, and holds what the file holds
"$Q4K" info --json "$tmp/s.gguf" >"$tmp/s.json" 2>"$tmp/err"; rc=$?
if [ $rc -eq 0 ] && python3 -m json.tool "$tmp/s.json" >/dev/null 2>&1; then ok info_json_parses
else fail info_json_parses "rc=$rc $(python3 -m json.tool "$tmp/s.json" 2>&1 | tail -1)"; fi
"$Q4K" info "$tmp/s.gguf" --json >"$tmp/s2.json" 2>/dev/null
if cmp -s "$tmp/s.json" "$tmp/s2.json"; then ok info_json_flag_anywhere; else fail info_json_flag_anywhere; fi
if python3 - "$tmp/s.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
meta = {m["key"]: m for m in d["metadata"]}
assert d["version"] == 3 and d["alignment"] == 32 and d["tensor_count"] == 9, d
assert d["data_offset"] % 32 == 0 and d["key_count"] == len(d["metadata"]) == 28
assert meta["general.name"]["value"] == 'q4k sample \u2713 "quoted"\n', meta["general.name"]
assert meta["sample.u64"] == {"key": "sample.u64", "type": "UINT64", "value": 1152921504606846977}
assert meta["sample.f64"]["value"] == -2.718281828459045
t = meta["tokenizer.ggml.tokens"]
assert t["elem_type"] == "STRING" and t["count"] == 20 and t["truncated"] is True and t["value"][:2] == ["tok0", "tok1"], t
assert meta["sample.arr_str"]["value"] == ["", "hello", "h\u00e9llo", 'quote" back\\slash', "tab\tnl\n"]
n = meta["sample.arr_nested"]
assert n["elem_type"] == "ARRAY" and n["count"] == 4 and n["value"][0] == {"elem_type": "INT32", "count": 3, "value": [1, 2, 3], "truncated": False}, n
assert n["value"][2]["value"][0]["value"] == [1.5]
tens = {x["name"]: x for x in d["tensors"]}
assert tens["blk.0.ffn_gate.weight"]["shape"] == [8, 2, 3, 2] and tens["blk.0.ffn_gate.weight"]["type"] == "F16"
assert tens["token_embd.weight"]["bytes"] == 576 and tens["token_embd.weight"]["type_id"] == 12
for x in d["tensors"]:
    assert x["file_offset"] == d["data_offset"] + x["offset"] and x["offset"] % 32 == 0, x
EOF
then ok info_json_content; else fail info_json_content; fi

# a pipe has no size to map: read as a stream, same output
if cat "$tmp/s.gguf" | "$Q4K" info --json /dev/stdin >"$tmp/pipe.json" 2>"$tmp/err" &&
   python3 -c 'import json,sys; a=json.load(open(sys.argv[1])); b=json.load(open(sys.argv[2])); a.pop("file"); b.pop("file"); assert a == b' "$tmp/pipe.json" "$tmp/s.json"; then
    ok info_reads_pipe
else fail info_reads_pipe "$(cat "$tmp/err")"; fi

# a type q4k cannot run: shown and marked, not refused by info
out=$("$Q4K" info "$tmp/q3k.gguf" 2>&1); rc=$?
if [ $rc -eq 0 ] && printf '%s\n' "$out" | grep -Eq 'blk\.0\.q3k\.weight +Q3_K\*' &&
   printf '%s\n' "$out" | grep -q 'alignment 64' && printf '%s\n' "$out" | grep -q 'cannot run'; then
    ok info_unimplemented_type_marked
else fail info_unimplemented_type_marked "rc=$rc"; fi

# bad files: exit 1, nothing on stdout, exactly one line on stderr naming the file
check_bad() { # name, file, pattern the error must match
    "$Q4K" info "$2" >"$tmp/out" 2>"$tmp/err"; local rc=$?
    local lines; lines=$(wc -l <"$tmp/err")
    if [ $rc -eq 1 ] && [ ! -s "$tmp/out" ] && [ "$lines" -eq 1 ] && grep -q -- "$2" "$tmp/err" && grep -Eq -- "$3" "$tmp/err"; then
        ok "$1"
    else
        fail "$1" "rc=$rc stdout=$(wc -c <"$tmp/out")B stderr($lines lines): $(cat "$tmp/err")"
    fi
}
printf 'version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n' >"$tmp/lfs.gguf"
check_bad info_bad_lfs "$tmp/lfs.gguf" 'Git LFS'
printf '<!doctype html>\n<html><body>Not found</body></html>\n' >"$tmp/page.gguf"
check_bad info_bad_html "$tmp/page.gguf" 'HTML'
head -c 3000 "$tmp/s.gguf" >"$tmp/cut.gguf"
check_bad info_bad_truncated "$tmp/cut.gguf" 'truncated'
: >"$tmp/empty.gguf"
check_bad info_bad_empty "$tmp/empty.gguf" 'empty'
check_bad info_bad_missing "$tmp/does-not-exist.gguf" 'cannot open'

# usage errors: exit 2
"$Q4K" info >"$tmp/out" 2>"$tmp/err"; rc=$?
if [ $rc -eq 2 ] && grep -q 'missing FILE' "$tmp/err"; then ok info_usage_missing_file; else fail info_usage_missing_file "rc=$rc"; fi
"$Q4K" info --bogus "$tmp/s.gguf" >"$tmp/out" 2>"$tmp/err"; rc=$?
if [ $rc -eq 2 ]; then ok info_usage_unknown_flag; else fail info_usage_unknown_flag "rc=$rc"; fi
"$Q4K" info "$tmp/s.gguf" "$tmp/s.gguf" >"$tmp/out" 2>"$tmp/err"; rc=$?
if [ $rc -eq 2 ]; then ok info_usage_two_files; else fail info_usage_two_files "rc=$rc"; fi
