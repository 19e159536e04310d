#!/usr/bin/env bash
# Set up papernets on a fresh machine: Fashion-MNIST and Chromium (Debian packages), a virtual environment, the
# package.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  $SUDO apt-get update -qq || true
  $SUDO apt-get install -y -qq dataset-fashion-mnist
fi
# Headless Chromium: the tests open the bench's HTML report in a real browser.
if ! command -v chromium >/dev/null 2>&1; then
  $SUDO apt-get update -qq || true
  $SUDO apt-get install -y -qq chromium
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q -e '.[dev,reference]'
echo "papernets is set up: $(.venv/bin/papernets --version)"
