#!/usr/bin/env bash
# GPU recipe check (docs/backends.md, "GPU recipe"): one command, under 10 minutes on one GPU.
# Starts a vLLM server with a small model, runs `selfteach elicit`, one short `improve` round
# (labels from the server, DPO on the GPU) and `judge eval` against it, and prints throughput.
#
#   scripts/gpu_check.sh                         # vLLM, Qwen/Qwen2.5-0.5B-Instruct
#   scripts/gpu_check.sh --model /models/qwen    # a local model directory
#   scripts/gpu_check.sh --engine llamacpp       # no GPU: llama.cpp on CPU (what our tests run)
#   scripts/gpu_check.sh --dry-run               # print the commands, run nothing
#
# Needs: selfteach installed (`make setup`), and for --engine vllm `pip install vllm` and a
# CUDA GPU. Exit status: 0 when every step ran, 2 on bad arguments, else the failing step's.
set -euo pipefail

usage() {
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
    cat <<'EOF'
Options:
  --engine vllm|llamacpp   server to start (default vllm)
  --model SPEC             vllm: HF id or directory (default Qwen/Qwen2.5-0.5B-Instruct);
                           llamacpp: a selfteach alias or .gguf (default smollm2-135m)
  --train-model SPEC       model improve trains (default: --model; llamacpp: tiny-random)
  --port N                 server port (default 8000)
  --out DIR                run directories and server log (default runs/gpu_check)
  --size small|tiny        workload (default small: ~10 min budget; tiny: smoke test)
  --python PATH            python with selfteach (default .venv/bin/python, else python3)
  --dry-run                print the commands and exit
  -h, --help               this help
EOF
}

die() { echo "gpu_check: $*" >&2; exit 2; }

engine=vllm model="" train_model="" port=8000 out=runs/gpu_check size=small dry_run=0 python=""
while (($#)); do
    case "$1" in
        --engine) engine=${2:-}; shift 2 || die "--engine needs a value" ;;
        --model) model=${2:-}; shift 2 || die "--model needs a value" ;;
        --train-model) train_model=${2:-}; shift 2 || die "--train-model needs a value" ;;
        --port) port=${2:-}; shift 2 || die "--port needs a value" ;;
        --out) out=${2:-}; shift 2 || die "--out needs a value" ;;
        --size) size=${2:-}; shift 2 || die "--size needs a value" ;;
        --python) python=${2:-}; shift 2 || die "--python needs a value" ;;
        --dry-run) dry_run=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done

case "$engine" in
    vllm) model=${model:-Qwen/Qwen2.5-0.5B-Instruct}; train_model=${train_model:-$model} ;;
    llamacpp) model=${model:-smollm2-135m}; train_model=${train_model:-tiny-random} ;;
    *) die "--engine '$engine': choose vllm or llamacpp" ;;
esac
if ! [[ "$port" =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
    die "--port '$port': expected 1-65535"
fi
case "$size" in
    small) claims=64 iters=64 judge=16 evaln=64 train=16 ;;
    tiny) claims=8 iters=6 judge=2 evaln=4 train=4 ;;
    *) die "--size '$size': choose small or tiny" ;;
esac
if [[ -z "$python" ]]; then
    if [[ -x .venv/bin/python ]]; then python=.venv/bin/python; else python=python3; fi
fi
url="http://127.0.0.1:$port/v1"
st=("$python" -m selfteach)

server_cmd() {
    if [[ "$engine" == vllm ]]; then
        # raw log-probs (score() needs them) are vLLM V1's default; 20 top log-probs for labels
        echo vllm serve "$model" --host 127.0.0.1 --port "$port" --max-logprobs 20 \
            --gpu-memory-utilization 0.5 --seed 0
    else
        echo "$python" -m selfteach.backends.llama_server "$model" --port "$port"
    fi
}

# the server's model needs a tokenizer for chat templates: vLLM has no /apply-template
spec="$url"
[[ "$engine" == vllm ]] && spec="$url?tokenizer=$model"

steps=(
    "elicit|${st[*]} elicit --model $spec --claims builtin:capitals --limit $claims --iters $iters --no-progress --out $out/elicit"
    "improve|${st[*]} improve --model $train_model --label-model $spec --problems builtin:arithmetic --train-size $train --eval-size $evaln --samples 4 --rounds 1 --baselines none --max-new-tokens 64 --no-progress --out $out/improve"
    "judge|${st[*]} judge eval --model $spec --limit $judge --k 1,2 --max-new-tokens 256 --out $out/judge"
    "throughput|${st[*]} eval accuracy --model $spec --data builtin:arithmetic --limit $evaln --samples 4 --max-new-tokens 128 --out $out/throughput"
)

if ((dry_run)); then
    echo "server: $(server_cmd)"
    for s in "${steps[@]}"; do echo "${s%%|*}: ${s#*|}"; done
    exit 0
fi

if [[ -e "$out" ]]; then die "--out $out exists: remove it or choose another"; fi
mkdir -p "$out"
log="$out/server.log"
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM -- "-$server_pid" 2>/dev/null || kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL -- "-$server_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r -a server <<<"$(server_cmd)"
if [[ "$engine" == vllm ]] && ! command -v vllm >/dev/null; then
    die "vllm not found: pip install vllm (needs a CUDA GPU), or use --engine llamacpp"
fi
t0=$SECONDS
setsid "${server[@]}" >"$log" 2>&1 &
server_pid=$!
echo "server: ${server[*]} (pid $server_pid, log $log)"
for _ in $(seq 1 600); do
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "gpu_check: the server exited at start; last lines of $log:" >&2
        tail -n 5 "$log" >&2
        exit 1
    fi
    if "$python" - "$url" <<'EOF' 2>/dev/null; then break; fi
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/models", timeout=2) as r:
    sys.exit(0 if r.status == 200 else 1)
EOF
    sleep 1
done
"$python" - "$url" <<'EOF' 2>/dev/null || { echo "gpu_check: server not ready after 10 min" >&2; exit 1; }
import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/models", timeout=5)
EOF
echo "server ready after $((SECONDS - t0)) s"

declare -A took
for s in "${steps[@]}"; do
    name=${s%%|*}
    read -r -a cmd <<<"${s#*|}"
    echo "== $name: ${cmd[*]}"
    t=$SECONDS
    "${cmd[@]}" >"$out/$name.log" 2>&1 || {
        code=$?
        echo "gpu_check: step $name failed (exit $code); last lines of $out/$name.log:" >&2
        tail -n 5 "$out/$name.log" >&2
        exit "$code"
    }
    took[$name]=$((SECONDS - t))
    echo "   done in ${took[$name]} s"
done

"$python" - "$out" "${took[throughput]}" "$((SECONDS - t0))" <<'EOF'
import json, sys
from pathlib import Path
out, seconds, total = Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
usage = json.loads((out / "throughput" / "metrics.json").read_text()).get("usage", {})
gen = usage.get("generated_tokens", 0)
print(f"throughput: {gen} generated tokens in {seconds:.0f} s = {gen / max(seconds, 1):.1f} tok/s "
      f"(eval accuracy, {usage.get('calls', 0)} requests, wall time incl. answer checking)")
print(f"total: {total} s (server start included)")
EOF
