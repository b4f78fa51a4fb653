#!/bin/bash
# Step 7 GPU check: builds dgc (CMake) or at least dgc's model library, the
# trainer and dgc-model-bench (g++) against the machine's CUDA libtorch
# (PyTorch's), then
#  - the real job: `dgcctl compress` of one 60 s chunk (a dgcctl synth-trace,
#    fine-tuned from a base with a fixed step budget: parsing, chunking,
#    tokenizing, skeleton, fine-tune, delta, fidelity check and commit) on
#    --device cpu (pinned to 2 cores) and --device cuda: wall and CPU seconds of
#    each, their ratio, and the ">= 20x on a GPU" judgement on it (needs the
#    CMake build, which makes dgcctl);
#  - the model alone: dgc-model-bench's toy grammar and packets (training and
#    sampling only), tokens/s and seconds per million packets on CPU and GPU,
#    and that CUDA and CPU training give the same fidelity (within 0.02), with
#    the data-parallel (NCCL) world size used.
# See README.md here.
#
#   bash tests/bench/gpu/run.sh prepare   # on the dev machine (Debian): carry
#                                         # headers + static libs, CPU rows
#   bash tests/bench/gpu/run.sh           # on the GPU machine, repo root;
#                                         # results also in $OUT (or build-cuda/)
set -uo pipefail
cd "$(dirname "$0")/../../.."
CARRY=build-gpu-carry
OUTDIR=${OUT:-build-cuda}
mkdir -p "$OUTDIR"
BENCH_ARGS=${DGC_GPU_BENCH_ARGS:-"--train-steps=400 --finetune-steps=60 --chunk-flows=20000 --check-flows=4096"}
# The real job's sizes: synth-trace sessions per second, fine-tune steps of the
# chunk (the step budget; the time budget is set out of reach), base steps.
REAL_SESSIONS=${DGC_GPU_REAL_SESSIONS:-50}
REAL_STEPS=${DGC_GPU_REAL_STEPS:-60}
REAL_BASE_STEPS=${DGC_GPU_REAL_BASE_STEPS:-200}
CPU2=(env OPENBLAS_NUM_THREADS=2 MKL_NUM_THREADS=2 OMP_NUM_THREADS=2 taskset -c 0,1)

# real_inputs CTL DIR BASE_DEVICE: the one-chunk trace DIR/chunk.pcap (60 s,
# seed 1), and a base model DIR/base.dgcm trained on another trace (600 s,
# seed 2) with a fixed step budget. The same options give the same traces.
real_inputs() {
  local ctl=$1 dir=$2 bdev=$3
  rm -rf "$dir" && mkdir -p "$dir" || return 1
  "$ctl" synth-trace -o "$dir/chunk.pcap" --seconds 60 --sessions-per-second "$REAL_SESSIONS" --seed 1 >/dev/null &&
    "$ctl" synth-trace -o "$dir/base.pcap" --seconds 600 --sessions-per-second "$REAL_SESSIONS" --seed 2 >/dev/null &&
    "$ctl" warmup "$dir/base.pcap" -o "$dir/base.dgcm" --chunk-seconds 60 --warmup-steps "$REAL_BASE_STEPS" \
      --warmup-seconds 100000 --device "$bdev" > "$dir/base.txt" 2>&1 || { tail -5 "$dir/base.txt"; return 1; }
}

# real_job CTL DIR NAME DEVICE [WRAPPER...]: times the real job, `dgcctl
# compress` of DIR/chunk.pcap (one chunk: --chunk-seconds 60) fine-tuned from
# DIR/base.dgcm on DEVICE, run under WRAPPER. The step budget is fixed:
# --steps REAL_STEPS with --seconds out of reach, --min-flows 1 (the chunk
# fine-tunes whatever its size) and --target 1 (the check runs but never asks
# for a second attempt, so both devices do the same work). Writes DIR/NAME.json
# (compress -o json: seconds, cpu_seconds, ...), DIR/NAME.log (its stderr) and
# DIR/NAME.time ("wall user sys" seconds of the whole process, start-up too).
real_job() {
  local ctl=$1 dir=$2 name=$3 dev=$4 rc; shift 4
  local TIMEFORMAT='%R %U %S'
  rm -rf "$dir/lib-$name"
  { time "$@" "$ctl" compress "$dir/chunk.pcap" --library "$dir/lib-$name" --base "$dir/base.dgcm" \
      --chunk-seconds 60 --steps "$REAL_STEPS" --seconds 100000 --min-flows 1 --target 1 \
      --device "$dev" -o json > "$dir/$name.json" 2> "$dir/$name.log"; } 2> "$dir/$name.time"
  rc=$?
  if [ $rc != 0 ]; then echo "dgcctl compress --device $dev failed ($rc):"; tail -5 "$dir/$name.log"; rm -f "$dir/$name.json"; fi
  return $rc
}

if [ "${1:-run}" = prepare ]; then
  # The GPU machine has PyTorch but not Debian's -dev packages the model code
  # includes: carry their headers and static libraries.
  rm -rf $CARRY && mkdir -p $CARRY/include $CARRY/lib
  cp -r /usr/include/absl /usr/include/nlohmann $CARRY/include/
  cp /usr/include/zstd.h /usr/include/zdict.h /usr/include/zstd_errors.h /usr/include/xxhash.h $CARRY/include/
  [ -f /usr/include/xxh3.h ] && cp /usr/include/xxh3.h $CARRY/include/
  cp /usr/lib/x86_64-linux-gnu/libabsl_*.a /usr/lib/x86_64-linux-gnu/libzstd.a $CARRY/lib/ 2>/dev/null
  cp /usr/lib/x86_64-linux-gnu/libxxhash.a $CARRY/lib/ 2>/dev/null
  # The 2-core CPU reference rows, measured here with Debian's libtorch + OpenBLAS:
  # the model alone (dgc-model-bench) and the real job (dgcctl compress).
  B=${DGC_BUILD:-build-gpu}
  cmake -S . -B $B -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build $B -j2 --target dgc-model-bench dgcctl >/dev/null || exit 1
  $B/tests/bench/dgc-model-bench --compare=cpu $BENCH_ARGS | tee $CARRY/cpu_reference.txt
  R=$CARRY/real; W=$B/gpu-real
  real_inputs $B/coordinator/dgcctl/dgcctl $W cpu && real_job $B/coordinator/dgcctl/dgcctl $W cpu cpu "${CPU2[@]}" || exit 1
  mkdir -p $R && cp $W/cpu.json $W/cpu.log $W/cpu.time $R/
  echo "real job on this CPU, 2 cores: $(cat $R/cpu.time) (wall user sys s of dgcctl compress)"
  du -sh $CARRY
  exit 0
fi

log() { echo "== $*"; }
TORCH_PREFIX=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)') || { echo "no PyTorch"; exit 1; }
TORCH=$(python3 -c 'import torch,os; print(os.path.dirname(torch.__file__))')
SITE=$(dirname "$TORCH")
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(), "gpus", torch.cuda.device_count(), "cxx11abi", torch.compiled_with_cxx11_abi())'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
NGPU=$(python3 -c 'import torch; print(torch.cuda.device_count())')
echo "cpus $(nproc)"
ABI=$(python3 -c 'import torch; print(int(torch.compiled_with_cxx11_abi()))')

BENCH=""
# 1. CMake, as the project builds (needs the Debian -dev packages; works on a
#    GPU machine set up with deploy/install-deps.sh plus PyTorch).
if command -v cmake >/dev/null && cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" \
     -DDGC_BUILD_TESTS=ON > "$OUTDIR/cmake.txt" 2>&1; then
  grep -i "cuda\|nccl\|gloo" "$OUTDIR/cmake.txt"
  if cmake --build build-cuda -j"$(nproc)" --target dgc-model-bench dgcctl flow_model_test distributed_test > "$OUTDIR/build.txt" 2>&1; then
    BENCH=build-cuda/tests/bench/dgc-model-bench
    log "cmake build: ok"
    # The model's and data-parallel unit tests with this CUDA libtorch (the
    # device tests run on the GPU here; the Gloo tests need libgloo-dev).
    for t in build-cuda/tests/model/flow_model_test build-cuda/tests/model/distributed_test; do
      [ -x "$t" ] || continue
      timeout 300 "$t" > "$OUTDIR/$(basename "$t").txt" 2>&1
      log "$(basename "$t"): exit $? ($(grep -E '^\[  (PASSED|FAILED) ' "$OUTDIR/$(basename "$t").txt" | tr '\n' ' '))"
    done
  else
    tail -20 "$OUTDIR/build.txt"
  fi
else
  log "cmake configure failed or no cmake (see $OUTDIR/cmake.txt); building the model + bench with g++"
fi

# 2. Fallback: g++ against PyTorch's libtorch with the carried headers/libs
#    (run 'prepare' on the dev machine first; carry build-gpu-carry).
if [ -z "$BENCH" ]; then
  [ -d $CARRY/include ] || { echo "missing $CARRY: run 'bash tests/bench/gpu/run.sh prepare' on the dev machine and carry it"; exit 1; }
  G=build-cuda/gxx; mkdir -p $G
  DEFS="-DDGC_TORCH_CUDA=1"
  NCCL_INC=""
  for d in "$SITE/nvidia/nccl/include" /usr/include /usr/local/cuda/include; do
    if [ -f "$d/nccl.h" ] && [ -f "$TORCH/include/torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp" ]; then
      NCCL_INC="-isystem $d"; DEFS="$DEFS -DDGC_HAVE_NCCL=1"; break
    fi
  done
  CUDA_INC=""
  for d in "$SITE"/nvidia/*/include /usr/local/cuda/include; do [ -d "$d" ] && CUDA_INC="$CUDA_INC -isystem $d"; done
  [ -d "$TORCH/include/gloo" ] && DEFS="$DEFS -DDGC_HAVE_GLOO=1"
  echo "defines: $DEFS"
  FLAGS="-std=c++17 -O3 -DNDEBUG -D_GLIBCXX_USE_CXX11_ABI=$ABI -DXXH_INLINE_ALL -I. -I$CARRY/include -isystem $TORCH/include -isystem $TORCH/include/torch/csrc/api/include $CUDA_INC $NCCL_INC -w"
  pids=()
  for f in common/model/flow_model.cc common/model/flow_model_train.cc common/model/flow_model_sample.cc common/model/weights.cc common/model/model_format.cc common/model/distributed.cc common/base/files.cc common/base/status.cc tests/bench/model_bench.cc; do
    g++ $FLAGS $DEFS -c $f -o $G/$(basename $f).o 2> $G/$(basename $f).err & pids+=($!)
  done
  ok=0; for p in "${pids[@]}"; do wait $p || ok=1; done
  if [ $ok != 0 ]; then head -40 $G/*.err; exit 1; fi
  g++ -no-pie -o $G/dgc-model-bench $G/*.o -Wl,--start-group $CARRY/lib/*.a -Wl,--end-group -L$TORCH/lib -Wl,-rpath,$TORCH/lib \
    -Wl,--no-as-needed -ltorch -ltorch_cuda -ltorch_cpu -lc10_cuda -lc10 -Wl,--as-needed -lpthread -ldl || exit 1
  BENCH=$G/dgc-model-bench
  log "g++ build: ok"
fi

# 3. Same chunk, CPU (pinned to 2 cores, like the dev machine) and GPU (every
#    GPU of the machine as data-parallel ranks: NCCL world size = GPU count).
# The model alone (dgc-model-bench): toy grammar and toy packets, training and
# sampling only.
log "model alone: CPU, 2 cores"
"${CPU2[@]}" $BENCH --compare=cpu $BENCH_ARGS | tee "$OUTDIR/cpu.txt"
log "model alone: GPU, $NGPU rank(s)"
$BENCH --compare=cuda --ranks="$NGPU" $BENCH_ARGS | tee "$OUTDIR/gpu.txt"
log "model alone: GPU, bf16 vs fp32 on one GPU"
$BENCH --compare=cuda --precision=fp32 $BENCH_ARGS | grep DGC_ROW | tee "$OUTDIR/gpu_fp32.txt"
$BENCH --device=cuda --widths=64 --depths=2 --extras=0 --train-steps=100 2>&1 | grep "^# check" | tee "$OUTDIR/gpu_checks.txt"

# 4. The real job: dgcctl compress of one chunk on --device cpu (2 cores) and
#    --device cuda (every GPU of the machine), only where the CMake build made
#    dgcctl with --device.
CTL=build-cuda/coordinator/dgcctl/dgcctl
REAL=$OUTDIR/real
if [ -x $CTL ] && $CTL compress --help 2>&1 | grep -- --device >/dev/null; then
  log "real job: inputs (one 60 s chunk at $REAL_SESSIONS sessions/s; base: $REAL_BASE_STEPS steps on cuda)"
  if real_inputs $CTL "$REAL" cuda; then
    log "real job: dgcctl compress --device cpu, 2 cores"
    real_job $CTL "$REAL" cpu cpu "${CPU2[@]}"
    log "real job: dgcctl compress --device cuda ($NGPU GPU(s))"
    real_job $CTL "$REAL" cuda cuda
  fi
else
  log "real job: not run: no dgcctl from the CMake build (the g++ fallback builds only the model bench)"
fi

python3 - "$OUTDIR" "$CARRY/cpu_reference.txt" "$REAL" "$CARRY/real" "$REAL_STEPS" "$NGPU" <<'PY'
import json, os, re, sys
def rows(path):
    out = []
    if os.path.exists(path):
        for l in open(path):
            if l.startswith("DGC_ROW"):
                out.append(dict(kv.split("=", 1) for kv in l.split()[1:]))
    return out
d = sys.argv[1]
cpu, gpu, ref = rows(f"{d}/cpu.txt"), rows(f"{d}/gpu.txt"), rows(sys.argv[2])
table = [("CPU here, 2 cores", cpu)] + ([("dev machine CPU, 2 cores (prepare)", ref)] if ref else []) + [("GPU", gpu), ("GPU fp32", rows(f"{d}/gpu_fp32.txt"))]
print("\nmodel alone: dgc-model-bench (toy grammar and toy packets; no parsing, tokenizing of real packets, skeletons, check or commit)")
print("| run | device | precision | ranks (backend) | base tok/s | fine-tune tok/s | sample tok/s | s per Mpkt | fidelity |")
print("|---|---|---|---|---|---|---|---|---|")
for name, rs in table:
    for r in rs:
        print(f"| {name} | {r['device']} | {r['precision']} | {r['ranks']} ({r['backend']}) | {r['base_tok_s']} | {r['finetune_tok_s']} | {r['sample_tok_s']} | {r['s_per_mpkt']} | {r['fidelity']} |")
rc = 0
if cpu and gpu:
    c, g = cpu[0], gpu[0]
    dfid = abs(float(c["fidelity"]) - float(g["fidelity"]))
    base = ref[0] if ref else c
    speed = float(base["s_per_mpkt"]) / float(g["s_per_mpkt"])
    print(f"\nmodel alone (dgc-model-bench: toy grammar and packets, training and sampling only; not the goal's measure): "
          f"GPU vs 2-core CPU ({'dev machine' if ref else 'pinned here'}): {speed:.1f}x per million packets; "
          f"fidelity difference {dfid:.4f} (must be <= 0.02): {'OK' if dfid <= 0.02 else 'FAIL'}; "
          f"data-parallel world size {g['ranks']} ({g['backend']})")
    if dfid > 0.02:
        rc = 3
else:
    print("\nmodel alone: no CPU or GPU row from dgc-model-bench")
    rc = 1

# The real job: dgcctl compress of one chunk.
real, real_ref, steps, ngpu = sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
def job(d, name):
    j = f"{d}/{name}.json"
    if not os.path.exists(j):
        return None
    r = json.load(open(j))
    wall, user, sys_ = map(float, open(f"{d}/{name}.time").read().split()[-3:])
    r["process_wall"], r["process_cpu"] = wall, user + sys_
    m = re.search(r"^chunk \S+\s+\d+ packets\s+\d+ flows\s+([\d.]+) s", open(f"{d}/{name}.log").read(), re.M)
    r["chunk_s"] = float(m.group(1)) if m else float("nan")
    return r
jc, jg, jr = job(real, "cpu"), job(real, "cuda"), job(real_ref, "cpu")
jobs = [("CPU here, 2 cores", "cpu", jc)] + ([("dev machine CPU, 2 cores (prepare)", "cpu", jr)] if jr else []) + [(f"GPU ({ngpu})", "cuda", jg)]
any_job = next((r for _, _, r in jobs if r), None)
if any_job:
    print(f"\nreal job: dgcctl compress of one 60 s chunk ({any_job['packets']} packets, {any_job['flows']} flows), "
          f"fine-tuned for {steps} steps from a base, fidelity check, commit")
    print("| run | device | chunks | process wall s | compress wall s | chunk s | process CPU s | compress CPU s | fidelity | retried |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, dev, r in jobs:
        if r:
            print(f"| {name} | {dev} | {r['chunks']} | {r['process_wall']:.2f} | {r['seconds']:.2f} | {r['chunk_s']:.1f} | "
                  f"{r['process_cpu']:.2f} | {r['cpu_seconds']:.2f} | {r['fidelity_mean']:.4f} | {r['chunks_retried']} |")
        else:
            print(f"| {name} | {dev} | failed or not run | | | | | | | |")
if jg and (jr or jc):
    b = jr or jc
    speed = b["seconds"] / jg["seconds"]
    print(f"\nreal job, GPU vs 2-core CPU ({'dev machine' if jr else 'pinned here'}): {speed:.1f}x compress wall "
          f"({b['seconds']:.2f} s vs {jg['seconds']:.2f} s; goal >= 20x: {'MET' if speed >= 20 else 'NOT MET'}); "
          f"{b['process_wall'] / jg['process_wall']:.1f}x process wall (start-up included); "
          f"CPU seconds {b['cpu_seconds']:.2f} vs {jg['cpu_seconds']:.2f} ({b['cpu_seconds'] / max(jg['cpu_seconds'], 1e-9):.1f}x); "
          f"fidelity {b['fidelity_mean']:.4f} vs {jg['fidelity_mean']:.4f}")
    print("(compress wall: dgcctl's own 'seconds', from its start to the commit, CUDA start-up included; "
          "a long-running worker pays that once)")
else:
    print("\nreal job: the >= 20x goal is NOT JUDGED: no CPU and GPU timing of dgcctl compress (see above)")
    if rc == 0:
        rc = 4
sys.exit(rc)
PY
rc=$?

exit $rc
