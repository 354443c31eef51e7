#!/usr/bin/env bash
# One-shot GPU training of the diffusion stage (issue 23), for a lent GPU machine with no network:
#
#   bash training/gpu_train.sh          # from the repository root, .whl/ beside it (see benchmarks/gpu_check.sh)
#
# Stages, each under `timeout` and logging to $OUT (default ./out), inside one call's DEADLINE (570 s):
#   1. install the travelling wheels (.whl/) into /tmp/site                          -> build.log
#   2. train: the targeted-v fine-tune (LDM_PRESET; the recipe that moved the CPU runs) of the UNet +
#      grounding from the embedded checkpoint, on the GPU, TRAIN_MINUTES of wall clock (default 4.5, building the SynthScenes cache included)   -> train.log
#   3. evaluate the new checkpoint with training.evaluate --device cuda on EVAL_RANGES, unseen
#      test-split scenes (default 20000:60,21000:60: about 790 selections)           -> eval_new.json/.log
#   4. evaluate the embedded checkpoint on the same scenes and seeds (paired), if time is left -> eval_base.json/.log
#   5. the new checkpoint split into files of at most 15 MiB (python -m training.shard; the machine
#      returns files of at most 16 MiB)                                              -> ckpt/ (+ shards.json)
#   6. summary.txt, printed last
# Back here: `python -m training.shard join out/ckpt NEW_CKPT`, then compare the two JSONs (every bar on
# the same selections) before the new checkpoint may replace objaudio_rt/assets/tiny-synth.
# Knobs (environment): OUT, DEVICE (cuda; cpu for a dry run here), TRAIN_MINUTES, SCENES (training scenes,
# 3000), BATCH_SCALE (batch multiple of the CPU recipe, 8), LDM_PRESET (targeted-v), EVAL_RANGES, MAX_STEPS
# (cap, dry runs), DEADLINE, SETUP_SECONDS (what the train stage may take beyond TRAIN_MINUTES: loading, the
# cache, calibration; 120).
# A failing stage is logged and the next one runs; exits 1 when any stage failed or timed out.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/out}"
mkdir -p "$OUT"
DEADLINE="${DEADLINE:-570}"   # seconds: one call of the device tool runs at most 600
START=$SECONDS
SUMMARY="$OUT/summary.txt"
FAILED=0
: > "$SUMMARY"
TAG=gpu_train
source benchmarks/gpu_common.sh   # note, left, cap, stage, install_wheels
DEVICE="${DEVICE:-cuda}"
TRAIN_MINUTES="${TRAIN_MINUTES:-4.5}"
SCENES="${SCENES:-3000}"
BATCH_SCALE="${BATCH_SCALE:-8}"
LDM_PRESET="${LDM_PRESET:-targeted-v}"
EVAL_RANGES="${EVAL_RANGES:-20000:60,21000:60}"
RUN="${RUN:-/tmp/objaudio-gpu-train}"
BASE=objaudio_rt/assets/tiny-synth
WORKERS=$(( $(nproc) > 16 ? 16 : $(nproc) ))
STEPS_CAP=()
[ -n "${MAX_STEPS:-}" ] && STEPS_CAP=(--max-steps "$MAX_STEPS")

# ---- 1. wheels (training needs none of them; evaluate imports only the runtime) ------------------
if [ "$DEVICE" = cuda ]; then install_wheels "$OUT/build.log"; fi

# ---- 2. train ------------------------------------------------------------------------------------
rm -rf "$RUN"
stage "train ($TRAIN_MINUTES min on $DEVICE)" "$(cap "$(awk "BEGIN { print int($TRAIN_MINUTES * 60 + ${SETUP_SECONDS:-120}) }")" 200)" \
    "$OUT/train.log" python3 -m training.train --preset tiny-synth --out "$RUN" --stage ldm --ldm-preset "$LDM_PRESET" \
        --init-from "$BASE" --device "$DEVICE" --scenes "$SCENES" --workers "$WORKERS" --batch-scale "$BATCH_SCALE" \
        --budget-minutes "$TRAIN_MINUTES" --seed 5 "${STEPS_CAP[@]}"
NEW="$RUN/model"

# ---- 3-4. evaluate, new then base, the same scenes and seeds ----------------------------------------
EVAL=(--device "$DEVICE" --ranges "$EVAL_RANGES" --union-mode both)
if [ -f "$NEW/config.json" ]; then
    stage "evaluate new" "$(cap 200 60)" "$OUT/eval_new.log" \
        python3 -m training.evaluate --checkpoint "$NEW" "${EVAL[@]}" --json "$OUT/eval_new.json"
else
    note "no checkpoint at $NEW: evaluation and split skipped (see train.log)"; FAILED=$((FAILED + 1))
fi
if (( $(left) > 100 )); then
    stage "evaluate base" "$(cap 200 30)" "$OUT/eval_base.log" \
        python3 -m training.evaluate --checkpoint "$BASE" "${EVAL[@]}" --json "$OUT/eval_base.json"
else
    note "base evaluation skipped: $(left)s left (run it on the CPU with the same --ranges)"
fi

# ---- 5. the checkpoint in files the machine can return ----------------------------------------------
if [ -f "$NEW/config.json" ]; then
    rm -rf "$OUT/ckpt"
    stage "split checkpoint" 60 "$OUT/train.log" python3 -m training.shard split "$NEW" "$OUT/ckpt" --max-mib 15
fi

# ---- 6. summary ------------------------------------------------------------------------------------
python3 - "$OUT" >> "$SUMMARY" 2>&1 <<'PY'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
keys = ("object_accuracy", "leakage", "union_recall", "union_recall_mask", "silent_accuracy", "text_vs_mask_gap")
rows = {n: json.loads((out / f"eval_{n}.json").read_text()) for n in ("base", "new") if (out / f"eval_{n}.json").is_file()}
print("== evaluation (" + ", ".join(f"{n}: {r['selections']} selections" for n, r in rows.items()) + ")")
for k in keys:
    print(f"{k:<20}" + "".join(f"{n:>6} {'n/a' if r.get(k) is None else format(r[k], '.3f'):>5}  "
                                for n, r in rows.items()))
PY
grep -a -o "ldm: [0-9]*step" "$OUT/train.log" | tail -1 >> "$SUMMARY"
note "done in $((SECONDS - START))s; $FAILED stage(s) failed; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
cat "$SUMMARY"
(( FAILED == 0 ))
