#!/usr/bin/env bash
# Run HERE, before a device run: builds the CUDA engine for Hopper (sm_90) with cuBLAS and cuDNN
# required (-DCNNCERT_REQUIRE_CUDA_LIBS=ON) into build-gpu/, and collects in .gpu/run/ (git-ignored,
# to be carried) what the device machine then only has to run: the GPU test binary, cnncert,
# cnncert-bench, libcnncert, the CUDA engine plugin beside it (libcnncert_cuda.so, which libcnncert
# loads from its own folder) and the CUDA runtime the plugin was linked with, plus the real networks and
# images. cuBLAS and cuDNN are too large to carry: tools/gpu-run.sh takes them from the device's
# Python wheels (nvidia-cublas, nvidia-cudnn-cu13) or its CUDA toolkit. Ends with a dry run of
# tools/gpu-run.sh (everything up to the first step that needs a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v xz >/dev/null || { echo "xz is needed to pack the large libraries (apt-get install xz-utils)" >&2; exit 2; }
jobs="${CNNCERT_JOBS:-2}"
# No MPI: the device machine has no Open MPI libraries to load (one process runs there).
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DCNNCERT_CUDA=ON -DCNNCERT_REQUIRE_CUDA_LIBS=ON \
  -DCNNCERT_MPI=OFF -DCMAKE_CUDA_ARCHITECTURES=90 "$@" >/dev/null
cmake --build build-gpu -j"$jobs" --target cnncert_cli cnncert_bench cnncert_gpu_tests
run=.gpu/run
rm -rf "$run"
mkdir -p "$run/bin" "$run/lib" "$run/data"
cp build-gpu/cnncert build-gpu/cnncert-bench build-gpu/tests/cnncert_gpu_tests "$run/bin/"
cp -L build-gpu/libcnncert.so.0 build-gpu/libcnncert_cuda.so "$run/lib/"
# Every shared library the binaries load except glibc's, the C++ runtime's and cuBLAS/cuDNN: the
# CUDA runtime they were linked with (small; the device's may be another minor version) and the
# Debian libraries the device image lacks (OpenBLAS, GLPK and what they need).
for b in "$run"/bin/* "$run"/lib/libcnncert_cuda.so; do ldd "$b"; done | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | sort -u |
  while read -r name path; do
    case "$name" in
      libc.so* | libm.so* | libdl.so* | librt.so* | libpthread.so* | libstdc++.so* | libgcc_s.so* | ld-linux* | libz.so*) ;;
      libcublas* | libcudnn* | libcnncert*) ;;
      *) cp -L "$path" "$run/lib/$name" ;;
    esac
  done
# what was linked, for the device script to check against
ldd build-gpu/libcnncert_cuda.so | awk '{print $1}' | grep -E 'libcublas|libcudnn|libcudart' >"$run/needed-libs.txt" || true
if [ -d ../shared/data ]; then
  cp -r ../shared/data/nets ../shared/data/images "$run/data/"
  rm -f "$run/data/nets/gtsrb_bnn_48_bn_maxpool_sign.onnx"  # large and unsupported
fi
# large libraries (OpenBLAS, 36 MB) travel compressed; tools/gpu-run.sh unpacks them
find "$run/lib" -type f -size +8M -exec xz -T2 -f {} \;
strip --strip-unneeded "$run"/bin/* "$run"/lib/libcnncert.so.0 "$run"/lib/libcnncert_cuda.so 2>/dev/null || true
du -sh "$run"
status=0
# the dry run finds cuBLAS/cuDNN where this build found them
lib_dir() { dirname "$(grep "^CNNCERT_$1_LIB:" build-gpu/CMakeCache.txt | cut -d= -f2)"; }
CUBLAS_LIB_DIR="$(lib_dir CUBLAS)" CUDNN_LIB_DIR="$(lib_dir CUDNN)" DRY_RUN=1 tools/gpu-run.sh /tmp/cnncert-gpu-dry-run || status=$?
for f in "$run"/lib/*.xz; do rm -f "${f%.xz}"; done  # the dry run unpacked them: carry them packed
du -sh "$run"
exit $status
