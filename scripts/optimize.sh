#!/usr/bin/env bash
# make optimize: every optimisation transform on SmolLM2 (real weights) -- perplexity / KL / top-1
# against the untransformed transformers reference, and speed / memory / size from `tinyexport bench`.
# Short on purpose (the machine is shared): the first TOKENS tokens of Macbeth, a short bench.
# EXPORTED=1 adds ONNX (FORMATS="onnx tflite": and TFLite) artefact rows and the plots; BIG=1 the 1.1B
# shape's speed / memory / size rows.
set -euo pipefail
TE=${TE:-.venv/bin/tinyexport}
PY=${PY:-.venv/bin/python}
OUT=${OUT:-bench/results/optimize}
TOKENS=${TOKENS:-512}
WINDOW=${WINDOW:-512}
STRIDE=${STRIDE:-256}
THREADS=${THREADS:-2}
BENCH=(--prompt-len 64 --new-tokens 32 --warmup 1 --repeats 3 --threads "$THREADS" --no-log)
# BENCH_ONLY="baseline kv-int8": bench only these methods (eval runs for all); empty = bench all
BENCH_ONLY=${BENCH_ONLY:-}
mkdir -p "$OUT"

methods=(
  "baseline|"
  "prune-heads-0.1-global|--transform prune-heads=0.1:o_proj:global"
  "prune-heads-0.1|--transform prune-heads=0.1:o_proj"
  "prune-heads-0.25|--transform prune-heads=0.25:o_proj"
  "prune-heads-0.5|--transform prune-heads=0.5:o_proj"
  "prune-heads-0.25-activation|--transform prune-heads=0.25:activation"
  "prune-groups-0.25|--transform prune-heads=0.25:o_proj:groups"
  "prune-groups-0.25-activation|--transform prune-heads=0.25:activation:groups"
  "kv-int8|--kv-cache int8"
  "bf16|--transform mixed-precision=bf16"
  "prune-heads-0.25+kv-int8|--transform prune-heads=0.25:o_proj --kv-cache int8"
)
for entry in "${methods[@]}"; do
  slug=${entry%%|*}
  read -r -a args <<< "${entry#*|}"
  echo "== $slug"
  [ -s "$OUT/eval-$slug.json" ] || "$TE" eval perplexity "${args[@]}" --max-tokens "$TOKENS" --window "$WINDOW" --stride "$STRIDE" --json "$OUT/eval-$slug.json"
  if [ -n "$BENCH_ONLY" ] && [[ " $BENCH_ONLY " != *" $slug "* ]]; then continue; fi
  [ -s "$OUT/bench-$slug.json" ] || "$TE" bench --torch=standard "${args[@]}" "${BENCH[@]}" --json "$OUT/bench-$slug.json"
done

# Speed of every method above, interleaved round by round in one process (scripts/optimize_speed.py)
[ -s "$OUT/speed.json" ] || "$PY" scripts/optimize_speed.py "$OUT/speed.json" --threads "$THREADS" "${methods[@]}"

# BIG=1: the 1.1B TinyLlama shape (random weights: speed, memory, size; no perplexity), one
# `tinyexport bench --torch` process per method (the models are 4.4 GB each: not interleaved in one process)
if [ "${BIG:-0}" = 1 ]; then
  big=(
    "baseline|"
    "prune-heads-0.25|--transform prune-heads=0.25"
    "prune-heads-0.5|--transform prune-heads=0.5"
    "prune-groups-0.25|--transform prune-heads=0.25:groups"
    "kv-int8|--kv-cache int8"
    "bf16|--transform mixed-precision=bf16"
    "prune-groups-0.25+kv-int8|--transform prune-heads=0.25:groups --kv-cache int8"
  )
  for entry in "${big[@]}"; do
    slug=${entry%%|*}
    read -r -a args <<< "${entry#*|}"
    echo "== 1.1B $slug"
    [ -s "$OUT/bench-1.1b-$slug.json" ] || "$TE" bench --torch=standard --checkpoint tinyllama-1.1b --random-weights \
        "${args[@]}" "${BENCH[@]}" --json "$OUT/bench-1.1b-$slug.json"
  done
fi

# Exported rows (EXPORTED=1; ONNX=1 is the old name): convert each artefact, then ONE eval of all of them
# (one reference), ONE `tinyexport bench` run over all of them (peak RSS, size, wall tok/s, each in its own
# process) and ONE interleaved CPU-clock decode run (scripts/optimize_decode.py: the speed ratios).
# FORMATS="onnx tflite" picks the formats (TFLite conversions take ~10x longer than ONNX here);
# EXPORTED_ONLY="fp32 int8 ..." converts and measures only these rows.
if [ "${EXPORTED:-${ONNX:-0}}" = 1 ]; then
  ARTS=${ARTS:-out/optimize}
  exported=(
    "fp32|fp32|"
    "fp16|fp16|"
    "int8|dynamic_int8|"
    "int4|int4_block32|"
    "int8+prune-heads-0.1|dynamic_int8|--transform prune-heads=0.1:o_proj"
    "int8+prune-heads-0.25|dynamic_int8|--transform prune-heads=0.25:o_proj"
    "int8+prune-heads-0.5|dynamic_int8|--transform prune-heads=0.5:o_proj"
    "int8+prune-heads-0.25-activation|dynamic_int8|--transform prune-heads=0.25:activation"
    "int8+prune-groups-0.25-activation|dynamic_int8|--transform prune-heads=0.25:activation:groups"
    "fp32+kv-int8|fp32|--kv-cache int8"
    "int8+kv-int8|dynamic_int8|--kv-cache int8"
  )
  for fmt in ${FORMATS:-onnx}; do
    arts=()
    for entry in "${exported[@]}"; do
      IFS='|' read -r slug recipe extra <<< "$entry"
      if [ -n "${EXPORTED_ONLY:-}" ] && [[ " $EXPORTED_ONLY " != *" $slug "* ]]; then continue; fi
      read -r -a args <<< "$extra"
      art="$ARTS/smollm2-135m_${fmt}_$slug"
      echo "== $fmt $slug"
      [ -d "$art" ] || "$TE" convert --format "$fmt" --quantize "$recipe" "${args[@]}" --kv-cache-max-len 1024 -o "$art"
      arts+=("$art")
    done
    [ -s "$OUT/eval-exported-$fmt.json" ] || "$TE" eval perplexity "${arts[@]}" --max-tokens "$TOKENS" --window "$WINDOW" --stride "$STRIDE" --json "$OUT/eval-exported-$fmt.json"
    [ -s "$OUT/bench-exported-$fmt.json" ] || "$TE" bench "${arts[@]}" "${BENCH[@]}" --json "$OUT/bench-exported-$fmt.json"
    labelled=()
    for art in "${arts[@]}"; do labelled+=("$(basename "$art")=$art"); done
    [ -s "$OUT/decode-exported-$fmt.json" ] || "$PY" scripts/optimize_decode.py "$OUT/decode-exported-$fmt.json" "${labelled[@]}"
  done
  "$PY" scripts/optimize_plots.py "$OUT"
fi
"$PY" scripts/optimize_table.py "$OUT" > "$OUT/README.md"
cat "$OUT/README.md"
