#!/usr/bin/env bash
# `make bench`: the full comparison on SmolLM2 and, with BIG=1, on the 1.1B random TinyLlama shape.
#
# Per model: convert every (format, recipe) the registry offers that is not yet under
# out/bench/<model>/ (a recipe that cannot be built is written to skipped.txt, not hidden), add
# llama.cpp's own Q8_0/Q4_0 conversion of the same weights, bench torch, transformers and every
# artefact in one run, then draw the report (with every row as a ratio to llama.cpp's). Results:
# bench/results/<model>/{bench.json, report.md, *.png, skipped.txt}; an eval*.json placed there
# (tinyexport eval --json) joins the report. 1.1B work runs under the shared heavy-memory lock.
set -uo pipefail
cd "$(dirname "$0")/.."

TE=${TE:-.venv/bin/tinyexport}
PY=${PY:-.venv/bin/python}
OUT=${OUT:-out}
RESULTS=${RESULTS:-bench/results}
BIG=${BIG:-0}
SMALL=${SMALL:-1}  # SMALL=0 BIG=1: only the 1.1B shape
LOCK=/tmp/tinyexport-heavy.lock
CONTEXTS=${CONTEXTS:-128,512,1024}

# Every artefact (format:recipe) the recipe registry says can be built, plus the int8 TFLite file with
# 256- and 2048-slot caches: a fixed LiteRT cache is read whole every step, so decode time follows
# kv_cache_max_len, not the tokens in it (format:recipe:slots; 1024 slots when not given).
ALL_RECIPES=$($PY -c 'from tinyexport.formats.recipes import RECIPES
print(" ".join(f"{f}:{n}" for n, r in RECIPES.items() for f in r.formats if f != "torch"))')
ALL_RECIPES="$ALL_RECIPES tflite:dynamic_int8:256 tflite:dynamic_int8:2048"
# RECIPES="fmt:recipe[:slots] ..." benches a chosen subset of SmolLM2 artefacts instead of all of them.
RECIPES=${RECIPES:-$ALL_RECIPES}
# RETRY=1: convert again what failed in an earlier run (its reason is kept in <artefact dir>.skipped).
# CONVERT_TIMEOUT=S: a conversion still running after S seconds is stopped and written to skipped.txt
# with its time (the ExecuTorch fp32 lowering of SmolLM2 ran > 48 min here); 0 = no limit.
CONVERT_TIMEOUT=${CONVERT_TIMEOUT:-0}
# CONVERT_ONLY=1: convert what is missing and stop (bench later on a quiet machine: conversions need no quiet)
CONVERT_ONLY=${CONVERT_ONLY:-0}
# The 1.1B shape: the quantized artefacts only (fp32/fp16 files of 4.4/2.2 GB add little but hours).
BIG_RECIPES=${BIG_RECIPES:-"tflite:dynamic_int8 tflite:int4_block32 onnx:dynamic_int8 onnx:int4_block32 gguf:q8_0 gguf:q4_0 executorch:8da4w"}
# llama.cpp's OWN conversion of the same weights (convert_hf_to_gguf.py + llama_model_quantize), benched in the
# same run: the report gives every row as a ratio to these (scripts/lcpp_reference.py, docs/gguf.md).
LLAMA_CPP_RECIPES=${LLAMA_CPP_RECIPES:-q8_0,q4_0}

bench_model() {  # name, recipes, repeats, heavy (0|1), torch candidates, checkpoint args...
    local name=$1 recipes=$2 repeats=$3 heavy=$4 torches=$5
    shift 5
    local ckpt=("$@") dir results=$RESULTS/$name arts=() lock=()
    [ "$heavy" = 1 ] && lock=(flock "$LOCK")
    mkdir -p "$results"
    : > "$results/skipped.txt"
    for pair in $recipes; do
        local fmt recipe slots
        IFS=: read -r fmt recipe slots <<< "$pair"
        dir=$OUT/bench/$name/${fmt}_${recipe}${slots:+_ekv$slots}
        local failed="$dir.skipped"  # a conversion that failed before is not retried (RETRY=1 does)
        if [ ! -f "$dir/manifest.json" ] && [ -f "$failed" ] && [ "${RETRY:-0}" != 1 ]; then
            tee -a "$results/skipped.txt" < "$failed"
            continue
        fi
        if [ ! -f "$dir/manifest.json" ]; then
            echo "== $name: convert $fmt/$recipe -> $dir"
            local limit=() t0 rc
            [ "$CONVERT_TIMEOUT" != 0 ] && limit=(timeout "$CONVERT_TIMEOUT")
            t0=$(date +%s)
            "${lock[@]}" "${limit[@]}" "$TE" convert --format "$fmt" --quantize "$recipe" --kv-cache-max-len "${slots:-1024}" \
                "${ckpt[@]}" -o "$dir" --force 2> "$results/.convert.err"
            rc=$?
            if [ "$rc" = 124 ]; then
                echo "$fmt/$recipe: conversion stopped after $(( $(date +%s) - t0 )) s (CONVERT_TIMEOUT=$CONVERT_TIMEOUT)" \
                    > "$failed"
                tee -a "$results/skipped.txt" < "$failed"
                continue
            elif [ "$rc" != 0 ]; then
                echo "$fmt/$recipe: $(tail -n 1 "$results/.convert.err")" > "$failed"
                tee -a "$results/skipped.txt" < "$failed"
                continue
            fi
        fi
        # the int8 TFLite file (1024 slots) also goes into a LiteRT-LM bundle: `bench --litertlm` runs
        # Google's engine on it beside our runner (docs/litertlm.md)
        if [ "$fmt:$recipe:${slots}" = "tflite:dynamic_int8:" ] && [ ! -f "$dir/model.litertlm" ]; then
            "$TE" bundle "$dir" || echo "$fmt/$recipe: no LiteRT-LM bundle" | tee -a "$results/skipped.txt"
        fi
        arts+=("$dir")
    done
    # EXTRA="dir ..." (SmolLM2): artefacts converted by hand (e.g. --kv-cache int8) join the same bench run
    if [ "$name" = smollm2-135m ]; then
        for extra in ${EXTRA:-}; do
            if [ -f "$extra/manifest.json" ]; then arts+=("$extra"); else echo "EXTRA $extra: no artefact there" | tee -a "$results/skipped.txt"; fi
        done
    fi
    if [ -n "$LLAMA_CPP_RECIPES" ]; then
        echo "== $name: llama.cpp's own conversion ($LLAMA_CPP_RECIPES) -> $OUT/bench/$name/llamacpp_*"
        if "${lock[@]}" "$PY" scripts/lcpp_reference.py "${ckpt[@]}" -o "$OUT/bench/$name" \
                --recipes "$LLAMA_CPP_RECIPES" --fetch 2> "$results/.convert.err"; then
            for r in ${LLAMA_CPP_RECIPES//,/ }; do arts+=("$OUT/bench/$name/llamacpp_$r"); done
        else
            echo "llama.cpp reference: $(tail -n 1 "$results/.convert.err")" | tee -a "$results/skipped.txt"
        fi
    fi
    rm -f "$results/.convert.err"
    if [ "$CONVERT_ONLY" = 1 ]; then
        echo "== $name: ${#arts[@]} artefact(s) ready (CONVERT_ONLY=1: no bench)"
        return 0
    fi
    echo "== $name: bench ${#arts[@]} artefact(s) + $torches hf"
    local litertlm=()
    compgen -G "$OUT/bench/$name/*/model.litertlm" > /dev/null && litertlm=(--litertlm)
    "${lock[@]}" "$TE" bench "${arts[@]}" $torches --hf "${ckpt[@]}" --repeats "$repeats" --context "$CONTEXTS" \
        "${litertlm[@]}" --json "$results/bench.json" || return 1
    local evals=()
    for f in "$results"/eval*.json; do [ -f "$f" ] && evals+=("$f"); done
    "$TE" report "$results/bench.json" "${evals[@]}" -o "$results" --title "tinyexport bench: $name"
}

start=$(date +%s)
status=0
if [ "$SMALL" = 1 ]; then
    bench_model smollm2-135m "$RECIPES" 5 0 "--torch --torch=sdpa" --checkpoint smollm2-135m || status=1
fi
if [ "$BIG" = 1 ]; then
    bench_model tinyllama-1.1b-random "$BIG_RECIPES" 3 1 "--torch" \
        --checkpoint tinyllama-1.1b --random-weights --seed 0 || status=1
fi
echo "make bench took $(( $(date +%s) - start )) s; results under $RESULTS/"
exit $status
