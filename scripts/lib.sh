# Shared by the scripts: installs the pinned Rust toolchain, and a Debian package when its command is missing.
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
install() { # command, Debian package, why
  command -v "$1" >/dev/null 2>&1 && return
  echo "installing $2 (Debian package) $3" >&2
  $sudo apt-get install -y "$2" >/dev/null 2>&1 || {
    $sudo apt-get update >/dev/null && $sudo apt-get install -y "$2" >/dev/null
  }
}
# rustup installs rust-toolchain.toml's targets and components only with the
# toolchain itself: a machine that already has Rust 1.95.0 without the
# wasm32-wasip2 target fails every plugin build. This adds what is missing
# (and returns at once when nothing is).
toolchain() {
  rustup toolchain install >/dev/null 2>&1 || rustup toolchain install
}
