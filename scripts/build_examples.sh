#!/usr/bin/env bash
# Build reports/examples/training-curves.* and paired-comparison.* from a short real Composer training run:
# a small random MPT trained on LAMBADA passages (scripts/train_curves_example.py) with the ICLEvaluator callback
# writing a run folder every 40 batches, then two of the Trainer's checkpoints evaluated with
# `evalharness run --model composer:...` and compared item by item. CPU only; about 40 minutes on two busy cores.
#
# Environment: PY (default .venv/bin/python), COMPOSER_PY (.venv-composer/bin/python), EX (work folder,
# default /tmp/evalharness-examples), TOKENIZER (the GPT-NeoX-20B tokenizer: a hub id or a local folder),
# EVALHARNESS_DATA_DIR (the data folder). Runs single-threaded.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
COMPOSER_PY="${COMPOSER_PY:-.venv-composer/bin/python}"
EX="${EX:-/tmp/evalharness-examples}"
TOKENIZER="${TOKENIZER:-EleutherAI/gpt-neox-20b}"
OUT=reports/examples
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=1 EVALHARNESS_THREADS=1 TOKENIZERS_PARALLELISM=false

# 1. training, 320 batches of 8 x 128 tokens; piqa, lambada_openai, arc_easy (first 100 items) every 40 batches
if [ ! -f "$EX/train/evals/ep0-ba320/results.json" ]; then
  "$COMPOSER_PY" scripts/train_curves_example.py "$EX/train" --tokenizer "$TOKENIZER" --batches 320 --interval 40 \
      --limit 100
fi

# 2. the curves page (and training-curves.curves.csv beside it); LAMBADA's accuracy stays 0 at this size, its
#    perplexity on the target word is what moves
"$PY" -m evalharness report "$EX/train/evals" --metric lambada_openai=perplexity \
    --title "Training curves: a small MPT learning from LAMBADA passages" -o "$OUT/training-curves.html"
"$PY" scripts/screenshot_leaderboard.py "$OUT/training-curves.html" "$OUT/training-curves.png" --height 1000

# 3. two checkpoints of that run on the first 1000 items of each task (never trained on), item by item
for batch in 80 320; do
  if [ ! -f "$EX/ckpt-ba$batch/results.json" ]; then
    "$PY" -m evalharness run --model "composer:$EX/train/checkpoints/ep0-ba$batch-rank0.pt" \
        --tasks piqa,lambada_openai,arc_easy --limit 1000 --num-fewshot 0 --dtype float32 --threads 1 --output-dir "$EX/ckpt-ba$batch"
  fi
done
"$PY" -m evalharness compare "$EX/ckpt-ba80" "$EX/ckpt-ba320" --metric lambada_openai=perplexity
"$PY" -m evalharness report "$EX/ckpt-ba80" "$EX/ckpt-ba320" --paired --no-curves --metric lambada_openai=perplexity \
    --title "Paired comparison: two checkpoints of the small MPT (batch 80 vs 320)" -o "$OUT/paired-comparison.html"
"$PY" scripts/screenshot_leaderboard.py "$OUT/paired-comparison.html" "$OUT/paired-comparison.png" \
    --selector "#paired" --width 1280

# 4. the results.json files behind the pages (the samples files they quote are not kept)
rm -rf "$OUT/training-run"
for folder in "$EX"/train/evals/ep0-ba* "$EX/ckpt-ba80" "$EX/ckpt-ba320"; do
  name="$(basename "$folder")"
  case "$name" in ckpt-*) dest="$OUT/training-run/checkpoints/$name" ;; *) dest="$OUT/training-run/evals/$name" ;; esac
  mkdir -p "$dest" && cp "$folder/results.json" "$dest/"
done
echo "built $OUT/training-curves.{html,png,curves.csv} and $OUT/paired-comparison.{html,png}"
