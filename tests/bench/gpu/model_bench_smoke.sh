#!/bin/bash
# GPU smoke run of dgc-model-bench: builds the model library (flow_model*.cc, weights.cc, model_format.cc) and the bench against
# the machine's PyTorch (its libtorch), with abseil/zstd carried from Debian.
set -o pipefail
G=build-model/gpu
TORCH=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')
python3 -c 'import torch;print("torch", torch.__version__, "cxx11abi", torch.compiled_with_cxx11_abi(), "cuda", torch.cuda.is_available())'
g++ --version | head -1; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; nproc
FLAGS="-O3 -DNDEBUG -D_GLIBCXX_USE_CXX11_ABI=1 -DXXH_INLINE_ALL -I. -I$G/include -isystem $TORCH/include -isystem $TORCH/include/torch/csrc/api/include -w"
build() {
  local std=$1; local pids=()
  for f in common/model/flow_model.cc common/model/flow_model_train.cc common/model/flow_model_sample.cc common/model/weights.cc common/model/model_format.cc common/model/distributed.cc common/base/files.cc common/base/status.cc tests/bench/model_bench.cc; do
    g++ -std=$std $FLAGS -c $f -o $G/$(basename $f).o 2> $G/$(basename $f).err & pids+=($!)
  done
  local ok=0; for p in "${pids[@]}"; do wait $p || ok=1; done; return $ok
}
t0=$(date +%s)
if ! build c++17; then echo "c++17 failed, trying c++20"; head -30 $G/*.err; build c++20 || { head -60 $G/*.err; exit 1; }; fi
g++ -no-pie -o $G/bench $G/*.o -Wl,--start-group $G/lib/*.a -Wl,--end-group -L$TORCH/lib -Wl,-rpath,$TORCH/lib \
  -Wl,--no-as-needed -ltorch -ltorch_cuda -ltorch_cpu -lc10_cuda -lc10 -Wl,--as-needed -lpthread -ldl || exit 1
echo "built in $(( $(date +%s) - t0 )) s"
$G/bench --device=cuda --widths=64,128 --depths=2,3 --extras=1 2>&1 | tee $OUT/gpu_bench.txt
