# Shared by the one-shot GPU scripts (benchmarks/gpu_check.sh, training/gpu_train.sh); sourced, not run.
# Expects OUT, DEADLINE, START (=$SECONDS at the start), SUMMARY, FAILED and TAG to be set.
note() { echo "[$TAG +$((SECONDS - START))s] $*" | tee -a "$SUMMARY" >&2; }
left() { echo $((DEADLINE - (SECONDS - START))); }
cap() {  # cap <max seconds> <seconds to keep for later stages>: this stage's timeout, at least 20 s
    local t=$(( $(left) - $2 )); (( t > $1 )) && t=$1; (( t < 20 )) && t=20; echo "$t"
}
stage() {  # stage <name> <timeout> <log> <command...>: logged, timed out, counted in FAILED; never aborts
    local name=$1 t=$2 log=$3; shift 3
    note "$name: start (timeout ${t}s)"
    timeout --kill-after=10 "$t" "$@" >> "$log" 2>&1
    local rc=$?
    if (( rc == 124 || rc == 137 )); then note "$name: TIMED OUT after ${t}s (rc $rc)"; else note "$name: rc $rc"; fi
    (( rc != 0 )) && FAILED=$((FAILED + 1))
    return 0
}
install_wheels() {  # install_wheels <log>: the travelling wheels (.whl/) into /tmp/site, then check the imports
    local log=$1
    { echo "== environment"; date -u; python3 --version
      nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv 2>&1
      python3 -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)" 2>&1
    } >> "$log"
    if ls .whl/*.whl > /dev/null 2>&1; then
        mkdir -p /tmp/site
        local PIP="python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site"
        # Pure-Python wheels in one call; any wheel with a CPython tag alone, so a tag mismatch costs only that wheel.
        stage "install pure wheels" "$(cap 60 280)" "$log" $PIP $(ls .whl/*-py3-none-any.whl .whl/*-py2.py3-none-any.whl 2>/dev/null)
        for w in $(ls .whl/*.whl | grep -v -e '-py3-none-any.whl$' -e '-py2.py3-none-any.whl$'); do
            stage "install $(basename "$w")" 30 "$log" $PIP "$w"
        done
    else
        note "no .whl/ folder: diffusers, open_clip_torch and segment-anything must already be installed"
    fi
    export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
    python3 -c "import diffusers, open_clip, segment_anything; print('imports ok: diffusers', diffusers.__version__)" >> "$log" 2>&1 \
        && note "python imports ok" || { note "IMPORT FAILURE (see $(basename "$log")): later stages will fail"; FAILED=$((FAILED + 1)); }
}
