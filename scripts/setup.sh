#!/usr/bin/env bash
# Idempotent system setup for celgrad.
# Installs a software Vulkan driver (Mesa >= 25 lavapipe) only when no WebGPU adapter is found,
# and, with --browser, Debian's Chromium for the report/browser tests. Never touches a machine
# whose adapter already works.
set -euo pipefail
cd "$(dirname "$0")/.."

want_browser=0
for arg in "$@"; do
  case "$arg" in
    --browser) want_browser=1 ;;
    *) echo "setup.sh: unknown option $arg (known: --browser)" >&2; exit 2 ;;
  esac
done

log() { echo "[setup] $*"; }

have_adapter() {
  # Needs node_modules/webgpu; a quick probe that exits 0 only when an adapter is returned.
  [ -d node_modules/webgpu ] || return 1
  node --input-type=module -e "
    import { create, globals } from 'webgpu';
    Object.assign(globalThis, globals);
    const gpu = create([]);
    globalThis.__keep = gpu;
    const a = await gpu.requestAdapter();
    process.exit(a ? 0 : 1);
  " >/dev/null 2>&1
}

is_debian_like() { [ -r /etc/os-release ] && grep -qiE '^(ID|ID_LIKE)=.*(debian|ubuntu)' /etc/os-release; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi
}

apt_updated=0
apt_install() {
  if [ $apt_updated = 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@"
}

if [ ! -d node_modules ]; then
  log "installing npm dependencies (npm ci)"
  ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund
fi

if have_adapter; then
  log "a WebGPU adapter is available; leaving the system as it is"
else
  if ! is_debian_like; then
    cat >&2 <<MSG
[setup] No WebGPU adapter found and this is not Debian/Ubuntu, so nothing was installed.
        Install a Vulkan driver: a GPU driver with Vulkan, or Mesa >= 23 lavapipe
        (Fedora: mesa-vulkan-drivers; Arch: vulkan-swrast; macOS uses Metal and needs nothing).
MSG
    exit 1
  fi
  codename=$(. /etc/os-release; echo "${VERSION_CODENAME:-}")
  if [ "$codename" = bookworm ]; then
    # Bookworm's Mesa 22 lavapipe lacks features Dawn requires; bookworm-backports has Mesa 25.
    if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
      log "adding Debian bookworm-backports"
      echo 'deb http://deb.debian.org/debian bookworm-backports main' | as_root tee /etc/apt/sources.list.d/celgrad-backports.list >/dev/null
    fi
    log "installing mesa-vulkan-drivers from bookworm-backports"
    as_root apt-get update -qq; apt_updated=1
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends -t bookworm-backports mesa-vulkan-drivers libvulkan1
  else
    log "installing mesa-vulkan-drivers"
    apt_install mesa-vulkan-drivers libvulkan1
  fi
  if have_adapter; then log "WebGPU adapter found after install"; else
    echo "[setup] Installed Mesa but Dawn still finds no adapter. Run 'npx celgrad doctor' for details." >&2; exit 1
  fi
fi

# Fonts for chart text (resvg only draws text with a font it can find).
if is_debian_like && [ ! -d /usr/share/fonts/truetype/dejavu ]; then
  log "installing fonts-dejavu-core for chart labels"
  apt_install fonts-dejavu-core || log "could not install fonts-dejavu-core; charts will lack labels"
fi

if [ $want_browser = 1 ] && ! command -v chromium >/dev/null; then
  if is_debian_like; then log "installing chromium for browser tests"; apt_install chromium
  else echo "[setup] install Chromium and set CELGRAD_CHROMIUM=/path/to/chromium" >&2; fi
fi
log "done"
