#!/usr/bin/env bash
# Builds evserve's wheels for CPython 3.10, 3.11, 3.12 and 3.13 into dist/, tagged manylinux
# (linked against an old glibc with zig, so they install on any current Linux), and checks
# each wheel's tag. Needs Rust; maturin and zig come from PyPI into a tool venv.
#
#   scripts/build_wheels.sh
#
# Environment (optional): EVSERVE_TOOLS  the tool venv (default .venv-tools)
#                         PYENV_VERSIONS where python3.X is looked for (default /root/.pyenv/versions)
set -euo pipefail
cd "$(dirname "$0")/.."

VERSIONS=(3.10 3.11 3.12 3.13)
TOOLS=${EVSERVE_TOOLS:-.venv-tools}
PYENV_VERSIONS=${PYENV_VERSIONS:-/root/.pyenv/versions}
COMPATIBILITY=manylinux_2_17
unset VIRTUAL_ENV PYTHONHOME
started=$SECONDS

find_python() {
    local found
    found=$(ls -d "$PYENV_VERSIONS/$1".*/bin/"python$1" 2>/dev/null | sort -V | tail -n 1)
    [ -n "$found" ] || found=$(command -v "python$1" || true)
    [ -n "$found" ] || { echo "build_wheels.sh: no python$1 found" >&2; return 1; }
    echo "$found"
}

interpreters=()
for version in "${VERSIONS[@]}"; do
    interpreters+=(-i "$(find_python "$version")")
done

if [ ! -x "$TOOLS/bin/maturin" ] || ! "$TOOLS/bin/python" -c 'import ziglang' 2>/dev/null; then
    "$(find_python 3.11 || command -v python3)" -m venv "$TOOLS"
    printf '*\n' > "$TOOLS/.gitignore"
    "$TOOLS/bin/pip" install --quiet --disable-pip-version-check "maturin>=1.16,<2" ziglang
fi

mkdir -p dist
rm -f dist/evserve-*.whl
PATH="$PWD/$TOOLS/bin:$PATH" maturin build --release --zig --compatibility "$COMPATIBILITY" \
    "${interpreters[@]}" --out dist

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
status=0
for v in "${VERSIONS[@]}"; do
    tag="cp${v/./}-cp${v/./}"
    wheels=(dist/evserve-"$version"-"$tag"-manylinux*_x86_64*.whl)
    if [ ! -e "${wheels[0]}" ]; then
        echo "build_wheels.sh: no $tag manylinux wheel in dist/: $(ls dist)" >&2
        status=1
        continue
    fi
    # The tag inside the wheel (dist-info/WHEEL) must say the same as its name.
    if ! "$TOOLS/bin/python" - "${wheels[0]}" "$tag" <<'PY'
import sys, zipfile
path, tag = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(path) as z:
    wheel = next(n for n in z.namelist() if n.endswith(".dist-info/WHEEL"))
    tags = [l.split(":", 1)[1].strip() for l in z.read(wheel).decode().splitlines() if l.startswith("Tag:")]
bad = [t for t in tags if not (t.startswith(tag + "-manylinux_") or t.startswith(tag + "-manylinux2014_"))]
sys.exit(f"{path}: unexpected tags {bad}" if bad or not tags else 0)
PY
    then
        status=1
        continue
    fi
    echo "build_wheels.sh: ok ${wheels[0]}"
done
echo "build_wheels.sh: done in $((SECONDS - started))s"
exit "$status"
