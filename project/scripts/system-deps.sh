#!/usr/bin/env bash
# Make sure the system programs Chorus needs are installed.
#   system-deps.sh run   -> ffmpeg, ffprobe, redis-server
#   system-deps.sh test  -> the above plus chromium (browser tests)
# Installs them with apt-get when running as root (or with password-less sudo);
# otherwise prints the exact command and stops.
set -euo pipefail
mode="${1:-run}"
declare -A package_of=([ffmpeg]=ffmpeg [ffprobe]=ffmpeg [redis-server]=redis-server [redis-cli]=redis-tools [chromium]=chromium)
wanted=(ffmpeg ffprobe redis-server redis-cli)
[ "$mode" = "test" ] && wanted+=(chromium)

missing=()
for program in "${wanted[@]}"; do
  command -v "$program" >/dev/null 2>&1 || missing+=("${package_of[$program]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
packages=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')

if ! command -v apt-get >/dev/null 2>&1; then
  echo "chorus: please install: $packages (with your system's package manager)" >&2
  exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
  sudo=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo="sudo -n"
else
  echo "chorus: missing system packages. Install them with:" >&2
  echo "    sudo apt-get update && sudo apt-get install -y $packages" >&2
  exit 1
fi
echo "chorus: installing $packages with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# shellcheck disable=SC2086
$sudo apt-get install -y -qq --no-install-recommends $packages >/dev/null
