# Shared by the scripts: installs a Debian package when its command is missing.
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
install() { # command, Debian package, why
  command -v "$1" >/dev/null 2>&1 && return
  echo "installing $2 (Debian package) $3" >&2
  $sudo apt-get install -y "$2" >/dev/null 2>&1 || {
    $sudo apt-get update >/dev/null && $sudo apt-get install -y "$2" >/dev/null
  }
}
