#!/usr/bin/env bash
# Installs the Debian 12 packages vitc needs that are missing. Safe to run again: it installs
# nothing when everything is present. Pass --bench to add the peers the benchmarks compare against
# (--fuzz is accepted for scripts/fuzz.sh, whose clang runtimes are now always installed).
set -euo pipefail

packages=(
  build-essential cmake ninja-build git pkg-config   # compiler and build
  llvm-19-dev llvm-19 clang-19 libzstd-dev zlib1g-dev # LLVM 19: the JIT and object-file backend
  libclang-rt-19-dev                                  # clang-19's sanitizer runtimes (CI's second build)
  libboost-program-options-dev libfmt-dev             # the command line and formatting
  nlohmann-json3-dev                                  # config.json, safetensors headers, layouts
  libtomlplusplus-dev                                 # vitc spec files (TOML)
  libzip-dev                                          # big_vision .npz checkpoints (zip)
  libonnx-dev libprotobuf-dev                         # ONNX models (ONNX's protobuf classes, checker)
  libonnx-testdata                                    # ONNX's node tests, run by the test suite
  libgtest-dev libgmock-dev                           # tests
  libopenmpi-dev openmpi-bin                          # the MPI runtime
  dataset-fashion-mnist                               # the Fashion-MNIST example and its test
)
if [[ "${1:-}" == "--bench" ]]; then
  packages+=(libbenchmark-dev libopenblas-dev libdnnl-dev python3-torch python3-torchvision)
  # ONNX Runtime comes from npm. A machine whose nodejs already brings npm (NodeSource's does)
  # cannot take Debian's npm, which conflicts with it.
  if ! command -v npm >/dev/null; then
    packages+=(nodejs npm)
  fi
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "installing: ${missing[*]}"
sudo=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "error: need root or sudo to install ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
