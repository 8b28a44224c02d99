#!/usr/bin/env bash
# Installs the Debian packages Graft uses:
#   native engine: libtorch-dev + libopenblas0-pthread (libtorch and its headers), libgloo-dev
#                  (gloo's headers, for data-parallel training on c10d's ProcessGroupGloo) and
#                  g++, which `npm ci` needs to build build/graft_native.node;
#   tests:         chromium (the web page's browser tests) and python3-torch (the independent
#                  reference the small-data e2e test compares graft train with), and
#                  python3-torchvision (the torchvision CNNs the ONNX bodies are checked on), and
#                  qemu-user (runs graft on an emulated AVX2-only CPU, so the kernels that
#                  libraries pick by CPU flags are tested for both kinds on either).
# `install-system-deps.sh native` installs the native engine's packages only (README line 1);
# without an argument, both (README line 2, CI).
# Uses apt-get directly as root, or through sudo. Without either, the native engine is left
# out with a one-line notice (Graft then runs on the wasm fallback); the browser tests cannot
# run without chromium, so that is an error.
set -euo pipefail
what="${1:-all}"
native=()
tests=()
[ -d /usr/include/torch/csrc/api/include ] || native+=(libtorch-dev)
dpkg -s libopenblas0-pthread >/dev/null 2>&1 || native+=(libopenblas0-pthread)
[ -f /usr/include/gloo/config.h ] || native+=(libgloo-dev)
command -v g++ >/dev/null 2>&1 || native+=(g++)
if [ "$what" = all ]; then
  command -v chromium >/dev/null 2>&1 || tests+=(chromium)
  /usr/bin/python3 -c 'import torch' >/dev/null 2>&1 || tests+=(python3-torch)
  /usr/bin/python3 -c 'import torchvision' >/dev/null 2>&1 || tests+=(python3-torchvision)
  command -v qemu-x86_64 >/dev/null 2>&1 || tests+=(qemu-user)
fi
need=("${native[@]}" "${tests[@]}")
if [ ${#need[@]} -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  apt=(apt-get)
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  apt=(sudo apt-get)
else
  if [ ${#native[@]} -gt 0 ]; then
    echo "Graft's native engine needs: ${native[*]} (not root, no sudo): it will not be built and Graft runs on wasm. Install with: apt-get install --no-install-recommends ${native[*]}" >&2
  fi
  if [ ${#tests[@]} -gt 0 ]; then
    echo "Graft's browser tests need: ${tests[*]}. Install them with: apt-get install --no-install-recommends ${tests[*]}" >&2
    exit 1
  fi
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
echo "system packages: installing ${need[*]}"
"${apt[@]}" update -qq
"${apt[@]}" install -y -qq --no-install-recommends "${need[@]}"
