#!/usr/bin/env bash
# The gate's false-alarm study: runs the unfaulted gate (q4k qa: reference =
# CPU scalar path, test = SIMD path with threads) many times on synthetic
# models with random prompts and seeds, and reports every failure and the
# worst cosines seen (the spread between two correct paths).
#
#   tools/gate_study.sh [-n RUNS] [-j JOBS] [-m "q8 f32"] [-p "tiny 0.5b 7b1 tinyo"] [-s SEED] [--max-pos N]
#                       [--measure] DIR
#
# --measure: thresholds that never fail, to see the whole spread (a run of
# the default gate then counts the false alarms).
# Presets: tiny, 0.5b (24 layers), 0.5b2 (2 layers), 7b1 (7B shapes, 1 layer,
# full vocabulary), 7b (28 layers), tinyo / 0.5bo (--outliers). Models are
# written once into DIR. Exit 0 when no run failed, 3 otherwise.
# CI runs a sample: tools/gate_study.sh -n 20 -p "tiny 0.5b2" DIR
set -u
measure=""; runs=200; jobs=$(nproc 2>/dev/null || echo 2); modes="q8"; presets="tiny 0.5b 7b1 tinyo"; seed0=1; max_pos=16
q4k=${Q4K:-./q4k}
while [ $# -gt 1 ]; do
    case $1 in
        -n) runs=$2; shift 2 ;;
        -j) jobs=$2; shift 2 ;;
        -m) modes=$2; shift 2 ;;
        -p) presets=$2; shift 2 ;;
        -s) seed0=$2; shift 2 ;;
        --max-pos) max_pos=$2; shift 2 ;;
        --measure) measure="--layer-cos 0.5 --op-cos 0.5 --logit-cos 0.5 --margin 1e6"; shift ;;
        *) echo "gate_study: unknown option $1" >&2; exit 2 ;;
    esac
done
dir=${1:?usage: tools/gate_study.sh [options] DIR}
mkdir -p "$dir/runs"
synth_args() {
    case $1 in
        tiny) echo "--preset tiny" ;;
        tinyo) echo "--preset tiny --outliers" ;;
        0.5b) echo "--preset 0.5b" ;;
        0.5b2) echo "--preset 0.5b --layers 2" ;;
        0.5bo) echo "--preset 0.5b --layers 4 --outliers" ;;
        7b1) echo "--preset 7b --layers 1" ;;
        7b) echo "--preset 7b" ;;
        *) echo "gate_study: unknown preset $1" >&2; return 1 ;;
    esac
}
for p in $presets; do
    a=$(synth_args "$p") || exit 2
    [ -f "$dir/$p.gguf" ] || "$q4k" synth "$dir/$p.gguf" $a --fast --seed 7 >/dev/null 2>&1 || { echo "synth $p failed" >&2; exit 1; }
done
set -- $presets; np=$#; set -- $modes; nm=$#
one() { # index
    local i=$1 p m s pos out
    set -- $presets; shift $(( i % np )); p=$1
    set -- $modes; shift $(( (i / np) % nm )); m=$1
    s=$(( seed0 * 100003 + i * 7919 ))
    pos=$(( 1 + (s / 13) % max_pos ))
    out="$dir/runs/$i.json"
    "$q4k" qa "$dir/$p.gguf" --mode "$m" --seed "$s" --pos "$pos" --steps 3 -t 1 $measure --json >"$out" 2>"$dir/runs/$i.err"
    echo "$i $p $m $s $pos $?" >"$dir/runs/$i.rc"
}
export -f one; export presets modes np nm seed0 max_pos dir q4k measure
seq 0 $((runs - 1)) | xargs -P "$jobs" -I{} bash -c 'one {}'
fails=0
for i in $(seq 0 $((runs - 1))); do
    read -r _ p m s pos rc <"$dir/runs/$i.rc"
    if [ "$rc" != 0 ]; then
        fails=$((fails + 1))
        echo "FALSE ALARM: run $i preset $p mode $m seed $s pos $pos exit $rc"
        grep -h '"divergence"' "$dir/runs/$i.json" | sed 's/^/    /'
    fi
done
# the spread between the two correct paths: worst values per preset and mode
summary() { # label, files...
    local label=$1; shift
    cat "$@" 2>/dev/null | awk -v label="$label" '
        function num(key,   v) { if (!match($0, "\"" key "\":[-0-9.e+]+")) return 0; v = substr($0, RSTART + length(key) + 3, RLENGTH - length(key) - 3); return v + 0 }
        /"kind":"step"/ {
            match($0, /"mode":"[a-z0-9]+"/); md = substr($0, RSTART + 8, RLENGTH - 9)
            c = num("cosine"); u = num("update_cos"); o = num("op_cos"); f = num("flip_margin")
            match($0, /"op":"[a-z_]+"/); op = substr($0, RSTART + 6, RLENGTH - 7)
            n[md]++
            if (!(md in wc) || c < wc[md]) wc[md] = c
            if (!(md in wu) || u < wu[md]) wu[md] = u
            if (!(md in wo) || o < wo[md]) { wo[md] = o; wop[md] = op }
            if (f > wf[md]) wf[md] = f
            if (f > 0) flips[md]++
        }
        END { for (k in n) printf "  %-8s %-4s %5d steps: 1-cos logits %.2e, layer update %.2e, op %.2e (%s); argmax flips %d, largest flipped margin %.4f std\n", label, k, n[k], 1 - wc[k], 1 - wu[k], 1 - wo[k], wop[k], flips[k], wf[k] }'
}
summary all "$dir"/runs/*.json
for p in $presets; do
    summary "$p" $(grep -l " $p " "$dir"/runs/*.rc | sed 's/\.rc$/.json/')
done
echo "gate study: $runs runs, $fails false alarms"
[ "$fails" -eq 0 ] || exit 3
