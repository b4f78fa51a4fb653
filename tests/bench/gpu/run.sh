#!/bin/bash
# Step 7 GPU check: builds dgc's model library, the trainer and dgc-model-bench
# against the machine's CUDA libtorch (PyTorch's), checks that CUDA and CPU
# training of the same chunk give the same fidelity (within 0.02), and prints
# tokens/s and seconds per million packets on CPU and GPU side by side, with
# the data-parallel (NCCL) world size used. See README.md here.
#
#   bash tests/bench/gpu/run.sh prepare   # on the dev machine (Debian): carry
#                                         # headers + static libs, CPU row
#   bash tests/bench/gpu/run.sh           # on the GPU machine, repo root;
#                                         # results also in $OUT (or build-cuda/)
set -uo pipefail
cd "$(dirname "$0")/../../.."
CARRY=build-gpu-carry
OUTDIR=${OUT:-build-cuda}
mkdir -p "$OUTDIR"
BENCH_ARGS=${DGC_GPU_BENCH_ARGS:-"--train-steps=400 --finetune-steps=60 --chunk-flows=20000 --check-flows=4096"}

if [ "${1:-run}" = prepare ]; then
  # The GPU machine has PyTorch but not Debian's -dev packages the model code
  # includes: carry their headers and static libraries.
  rm -rf $CARRY && mkdir -p $CARRY/include $CARRY/lib
  cp -r /usr/include/absl /usr/include/nlohmann $CARRY/include/
  cp /usr/include/zstd.h /usr/include/zdict.h /usr/include/zstd_errors.h /usr/include/xxhash.h $CARRY/include/
  [ -f /usr/include/xxh3.h ] && cp /usr/include/xxh3.h $CARRY/include/
  cp /usr/lib/x86_64-linux-gnu/libabsl_*.a /usr/lib/x86_64-linux-gnu/libzstd.a $CARRY/lib/ 2>/dev/null
  cp /usr/lib/x86_64-linux-gnu/libxxhash.a $CARRY/lib/ 2>/dev/null
  # The 2-core CPU reference row, measured here with Debian's libtorch + OpenBLAS.
  B=${DGC_BUILD:-build-gpu}
  cmake -S . -B $B -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build $B -j2 --target dgc-model-bench >/dev/null || exit 1
  $B/tests/bench/dgc-model-bench --compare=cpu $BENCH_ARGS | tee $CARRY/cpu_reference.txt
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
  for f in common/model/flow_model.cc common/model/distributed.cc common/base/files.cc common/base/status.cc tests/bench/model_bench.cc; do
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
log "CPU, 2 cores"
OPENBLAS_NUM_THREADS=2 MKL_NUM_THREADS=2 OMP_NUM_THREADS=2 taskset -c 0,1 $BENCH --compare=cpu $BENCH_ARGS | tee "$OUTDIR/cpu.txt"
log "GPU, $NGPU rank(s)"
$BENCH --compare=cuda --ranks="$NGPU" $BENCH_ARGS | tee "$OUTDIR/gpu.txt"
log "GPU, bf16 vs fp32 on one GPU"
$BENCH --compare=cuda --precision=fp32 $BENCH_ARGS | grep DGC_ROW | tee "$OUTDIR/gpu_fp32.txt"
$BENCH --device=cuda --widths=64 --depths=2 --extras=0 --train-steps=100 2>&1 | grep "^# check" | tee "$OUTDIR/gpu_checks.txt"

python3 - "$OUTDIR" "$CARRY/cpu_reference.txt" <<'PY'
import sys, os
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
print("\n| run | device | precision | ranks (backend) | base tok/s | fine-tune tok/s | sample tok/s | s per Mpkt | fidelity |")
print("|---|---|---|---|---|---|---|---|---|")
for name, rs in table:
    for r in rs:
        print(f"| {name} | {r['device']} | {r['precision']} | {r['ranks']} ({r['backend']}) | {r['base_tok_s']} | {r['finetune_tok_s']} | {r['sample_tok_s']} | {r['s_per_mpkt']} | {r['fidelity']} |")
if cpu and gpu:
    c, g = cpu[0], gpu[0]
    dfid = abs(float(c["fidelity"]) - float(g["fidelity"]))
    base = ref[0] if ref else c
    speed = float(base["s_per_mpkt"]) / float(g["s_per_mpkt"])
    print(f"\nGPU vs 2-core CPU ({'dev machine' if ref else 'pinned here'}): {speed:.1f}x per million packets (goal >= 20x); "
          f"fidelity difference {dfid:.4f} (must be <= 0.02): {'OK' if dfid <= 0.02 else 'FAIL'}; "
          f"data-parallel world size {g['ranks']} ({g['backend']})")
    sys.exit(0 if dfid <= 0.02 else 3)
sys.exit(1)
PY
rc=$?

# 4. End to end with dgcctl where the CMake build made it and it has --device.
if [ -x build-cuda/coordinator/dgcctl/dgcctl ] && build-cuda/coordinator/dgcctl/dgcctl compress --help 2>&1 | grep -q -- --device; then
  CAP=$(ls ../shared/data/*.pcap* 2>/dev/null | head -1)
  if [ -n "$CAP" ]; then
    for dev in cpu cuda; do
      log "dgcctl on $dev: $CAP"
      D=build-cuda/e2e-$dev; rm -rf $D; mkdir -p $D
      /usr/bin/time -f "%e s" build-cuda/coordinator/dgcctl/dgcctl compress "$CAP" --library $D/lib --device $dev 2>&1 | tail -3
      build-cuda/coordinator/dgcctl/dgcctl generate --library $D/lib -o $D/synth.pcap 2>&1 | tail -1
      build-cuda/coordinator/dgcctl/dgcctl eval "$CAP" $D/synth.pcap -o json > "$OUTDIR/eval-$dev.json" 2>/dev/null
    done
  fi
fi
exit $rc
