#!/bin/sh
# The PyTorch reference for Graft's benchmarks: Debian's python3-torch and torchvision (and
# the OpenBLAS they run on), installed as root or through sudo.
set -e
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
$SUDO apt-get install -y --no-install-recommends python3-torch python3-torchvision python3-onnx libopenblas0-pthread
