#!/usr/bin/env bash
# make optimize: every optimisation transform on SmolLM2 (real weights) -- perplexity / KL / top-1
# against the untransformed transformers reference, and speed / memory / size from `tinyexport bench`.
# Short on purpose (the machine is shared): the first TOKENS tokens of Macbeth, a short bench. ONNX=1 adds exported rows.
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
  "prune-heads-0.1|--transform prune-heads=0.1"
  "prune-heads-0.25|--transform prune-heads=0.25"
  "prune-heads-0.5|--transform prune-heads=0.5"
  "prune-heads-0.25-activation|--transform prune-heads=0.25:activation"
  "kv-int8|--kv-cache int8"
  "bf16|--transform mixed-precision=bf16"
  "prune-heads-0.25+kv-int8|--transform prune-heads=0.25 --kv-cache int8"
)
for entry in "${methods[@]}"; do
  slug=${entry%%|*}
  read -r -a args <<< "${entry#*|}"
  echo "== $slug"
  [ -s "$OUT/eval-$slug.json" ] || "$TE" eval perplexity "${args[@]}" --max-tokens "$TOKENS" --window "$WINDOW" --stride "$STRIDE" --json "$OUT/eval-$slug.json"
  if [ -n "$BENCH_ONLY" ] && [[ " $BENCH_ONLY " != *" $slug "* ]]; then continue; fi
  [ -s "$OUT/bench-$slug.json" ] || "$TE" bench --torch=standard "${args[@]}" "${BENCH[@]}" --json "$OUT/bench-$slug.json"
done

if [ "${ONNX:-0}" = 1 ]; then
  onnx=(
    "onnx|"
    "onnx+prune-heads-0.25|--transform prune-heads=0.25"
    "onnx+kv-int8|--kv-cache int8"
  )
  for entry in "${onnx[@]}"; do
    slug=${entry%%|*}
    read -r -a args <<< "${entry#*|}"
    art="out/optimize/smollm2-135m_$slug"
    [ -d "$art" ] || "$TE" convert --format onnx "${args[@]}" --kv-cache-max-len 1024 -o "$art"
    [ -s "$OUT/eval-$slug.json" ] || "$TE" eval perplexity "$art" --max-tokens "$TOKENS" --window "$WINDOW" --stride "$STRIDE" --json "$OUT/eval-$slug.json"
    [ -s "$OUT/bench-$slug.json" ] || "$TE" bench "$art" "${BENCH[@]}" --json "$OUT/bench-$slug.json"
  done
fi
"$PY" scripts/optimize_table.py "$OUT" > "$OUT/README.md"
cat "$OUT/README.md"
