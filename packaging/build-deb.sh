#!/usr/bin/env bash
# Builds the Debian package of callmetrics into target/debian/ and prints its path last.
#
#   packaging/build-deb.sh                                           # amd64 (this machine)
#   packaging/build-deb.sh --target aarch64-unknown-linux-gnu        # arm64
#   packaging/build-deb.sh --target armv7-unknown-linux-gnueabihf    # armhf
#   packaging/build-deb.sh --target … --profile cross-test           # a quicker build (CI)
#
# Needs cargo-deb (`cargo install cargo-deb --locked`), gzip, and dpkg-dev (dpkg-shlibdeps, for the
# `$auto` dependencies). The assets are listed in Cargo.toml under [package.metadata.deb].
# A cross build needs the target's standard library (`rustup target add TRIPLE`) and Debian's
# cross toolchain: gcc-aarch64-linux-gnu and libc6-dev-arm64-cross for arm64,
# gcc-arm-linux-gnueabihf and libc6-dev-armhf-cross for armhf (.cargo/config.toml names the
# linkers and C compilers). packaging/README.md has the measurements behind the release profile.
set -euo pipefail
cd "$(dirname "$0")/.."

target=""
profile="release"
while [ $# -gt 0 ]; do
  case "$1" in
    --target) target="${2:?--target needs a target triple}"; shift 2 ;;
    --profile) profile="${2:?--profile needs a Cargo profile name}"; shift 2 ;;
    -h | --help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument $1 (see packaging/build-deb.sh --help)" >&2; exit 2 ;;
  esac
done

if ! cargo deb --version >/dev/null 2>&1; then
  echo "error: cargo-deb is missing; install it with: cargo install cargo-deb --locked" >&2
  exit 1
fi

host="$(rustc -vV | sed -n 's/^host: //p')"
[ "$target" = "$host" ] && target=""
if [ -n "$target" ]; then
  case "$target" in
    aarch64-unknown-linux-gnu) cc=aarch64-linux-gnu-gcc debs="gcc-aarch64-linux-gnu libc6-dev-arm64-cross" ;;
    armv7-unknown-linux-gnueabihf) cc=arm-linux-gnueabihf-gcc debs="gcc-arm-linux-gnueabihf libc6-dev-armhf-cross" ;;
    *) echo "error: no cross toolchain is set up for $target (aarch64-unknown-linux-gnu and armv7-unknown-linux-gnueabihf are)" >&2; exit 2 ;;
  esac
  if ! command -v "$cc" >/dev/null; then
    echo "error: $cc is missing; install the Debian packages: apt-get install $debs" >&2
    exit 1
  fi
  if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    echo "error: the Rust standard library for $target is missing; install it with: rustup target add $target" >&2
    exit 1
  fi
fi

# Run from `cargo test`, the caller's package variables are in the environment. Build scripts
# (ring's) ask to rerun when CARGO_PKG_NAME or CARGO_MANIFEST_DIR change, and cargo compares them
# with its own environment: left in, they would rebuild a release build made from a shell.
while IFS= read -r var; do
  case "$var" in
    CARGO_PKG_* | CARGO_MANIFEST_* | CARGO_BIN_EXE_* | CARGO_CRATE_NAME | CARGO_PRIMARY_PACKAGE | CARGO_TARGET_TMPDIR)
      unset "$var" ;;
  esac
done < <(compgen -e)

# The binary. An up-to-date build is reused as is (cargo only checks its fingerprints); a stale
# one is rebuilt, so the package never holds an old binary.
out="${CARGO_TARGET_DIR:-target}"
case "$profile" in
  dev) profile_dir=debug ;;
  *) profile_dir="$profile" ;;
esac
if [ -n "$target" ]; then
  cargo build --profile "$profile" --locked --bin callmetrics --target "$target" >&2
  bin="$out/$target/$profile_dir/callmetrics"
  # The man page and the completions come from the command-line grammar, the same on every
  # architecture: a build for this machine (the quick dev profile) writes them.
  cargo build --locked --bin callmetrics >&2
  generator="$out/debug/callmetrics"
else
  cargo build --profile "$profile" --locked --bin callmetrics >&2
  bin="$out/$profile_dir/callmetrics"
  generator="$bin"
fi
test -x "$bin" || { echo "error: the build left no binary at $bin" >&2; exit 1; }

# The man page and the completions, generated from the grammar of this very source. Cargo.toml's
# assets take them from target/assets/.
assets=target/assets
rm -rf "$assets"
"$generator" generate --out "$assets" >&2
gzip -9n "$assets/callmetrics.1"
for f in callmetrics.1.gz callmetrics.bash _callmetrics callmetrics.fish; do
  test -s "$assets/$f" || { echo "error: $assets/$f was not generated" >&2; exit 1; }
done

# cargo deb takes the binary from target/[TRIPLE/]PROFILE/ (it rewrites the assets' target/release/
# for --target and --profile), sets the Debian architecture from the triple, and prints the path
# of the package on stdout.
args=(--no-build --locked --profile "$profile")
[ -n "$target" ] && args+=(--target "$target")
cargo deb "${args[@]}"
