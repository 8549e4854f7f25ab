#!/usr/bin/env bash
# Builds Intel's QVL sample application (AttestationApp) from the vendored
# tarball, offline, and prints the path of the binary on stdout.
#
# The tarball is extracted into a build directory outside the source tree:
# $CLOISTER_QVL_BUILD_DIR, else $XDG_CACHE_HOME/cloister/intel-qvl, else
# ~/.cache/cloister/intel-qvl, in a subdirectory named by the hash of the
# tarball and of the build inputs kept here (this script, cmake/). A build
# that finished is reused; an interrupted one is redone.
#
# Needs cmake, make, g++ and libssl-dev (.ci/run installs them).
# Usage: CLOISTER_QVL_APP=$(third_party/intel-qvl/build.sh)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tarball="$here/SGX-TDX-DCAP-QuoteVerificationLibrary-7e5b2a1.tar.gz"
base=${CLOISTER_QVL_BUILD_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cloister/intel-qvl}

for tool in cmake make g++; do
	command -v "$tool" >/dev/null || { echo "build.sh: $tool not found (apt-get install cmake make g++ libssl-dev)" >&2; exit 1; }
done

key=$(cat "$tarball" "$here/build.sh" "$here/cmake/HunterGate.cmake" "$here/cmake/spdlog/spdlogConfig.cmake" | sha256sum | cut -c1-16)
dir="$base/$key"
app="$dir/Src/Build/Release/out/bin/AttestationApp"
stamp="$dir/.built"

mkdir -p "$base"
exec 9>"$base/.lock"
flock 9

if [[ -f "$stamp" && -x "$app" ]]; then
	echo "$app"
	exit 0
fi

rm -rf "$dir"
mkdir -p "$dir"
tar -xzf "$tarball" -C "$dir" --strip-components=1
cp "$here/cmake/HunterGate.cmake" "$dir/Src/ThirdParty/hunter/HunterGate.cmake"

log="$dir/build.log"
echo "build.sh: building Intel QVL AttestationApp in $dir (log: $log)" >&2
# HOME points into the build tree: upstream's CMakeLists copies a file into
# $HOME/.cache/hunter, which must not land in the user's home.
if ! (
	cd "$dir/Src" &&
		HOME="$dir/home" cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTS=OFF -DBUILD_LOGS=OFF \
			-DBUILD_DOCS=OFF -DBUILD_ENCLAVE=OFF -Dspdlog_DIR="$here/cmake/spdlog" &&
		HOME="$dir/home" make -C build -j"$(nproc)" AttestationApp
) >"$log" 2>&1; then
	tail -n 40 "$log" >&2
	echo "build.sh: build failed (full log: $log)" >&2
	exit 1
fi
[[ -x "$app" ]] || { echo "build.sh: $app missing after build" >&2; exit 1; }
touch "$stamp"
echo "$app"
