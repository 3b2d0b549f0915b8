#!/usr/bin/env bash
# make dist: every artifact of a release, into dist/, reproducibly (two
# builds of one commit, from any clone, are the same bytes: -trimpath, no
# build ids, SOURCE_DATE_EPOCH from the last commit, archives with sorted
# entries and fixed times):
#   - devpi-credd and devpi-credd-keyring, static, for linux amd64/arm64,
#     darwin amd64/arm64, windows amd64, in an archive each
#   - a wheel per platform (the binaries as scripts, the keyring backend)
#   - .deb and .rpm for amd64 and arm64 (nfpm), with the user units, and
#     the system unit and its user (sysusers) for system mode
#   - the man pages and shell completions those carry, and packaging/nginx's
#     map for __token__ uploads (in every archive, and the packages' share)
#   - an SBOM (CycloneDX), and SHA256SUMS of everything
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
GO=${GO:-go}
PYTHON=${PYTHON:-python3}
NFPM=github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2
CYCLONEDX=github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod@v1.10.0

version=$(packaging/version.sh)
commit=$(git rev-parse HEAD)
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)
export SOURCE_DATE_EPOCH
export CGO_ENABLED=0 GOFLAGS=-mod=readonly TZ=UTC LC_ALL=C
out=$top/dist
rm -rf "$out"
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ldflags="-s -w -buildid= -X main.version=$version -X main.commit=$commit"
build() { # GOOS GOARCH DIR
  for prog in devpi-credd devpi-credd-keyring; do
    GOOS=$1 GOARCH=$2 $GO build -trimpath -buildvcs=false -ldflags "$ldflags" -o "$3/" "./cmd/$prog"
  done
}

# Man pages and completions, made by one build with the man page renderer
# (-tags gendocs): the shipped binaries carry none. The page of the
# devpi-credd-keyring binary, which users run, replaces the one generated
# for the 'devpi-credd keyring' command of the same name.
$GO build -trimpath -buildvcs=false -tags gendocs -ldflags "$ldflags" -o "$work/gendocs" ./cmd/devpi-credd
"$work/gendocs" man "$work/man" >/dev/null
cp packaging/man/devpi-credd-keyring.1 "$work/man/"
gzip -9n "$work"/man/*.1
mkdir -p "$work/completions"
"$work/gendocs" completion bash >"$work/completions/devpi-credd.bash"
"$work/gendocs" completion zsh >"$work/completions/_devpi-credd"
"$work/gendocs" completion fish >"$work/completions/devpi-credd.fish"

for platform in linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64; do
  os=${platform%/*} arch=${platform#*/}
  name=devpi-credd-$version-$os-$arch
  dir=$work/$name
  build "$os" "$arch" "$dir"
  cp README.md LICENSE "$dir/"
  # The nginx map runs on the proxy in front of devpi, whatever the
  # machine this archive is for, so every archive carries it.
  mkdir -p "$dir/nginx"
  cp packaging/nginx/devpi-credd-token-user.conf "$dir/nginx/"
  if [[ $os == windows ]]; then
    $PYTHON packaging/archive.py "$dir" "$out/$name.zip"
  else
    cp -r "$work/man" "$work/completions" "$dir/"
    $PYTHON packaging/archive.py "$dir" "$out/$name.tar.gz"
  fi
  $PYTHON packaging/wheel/build_wheel.py "$version" "$dir" "$out" "$platform" >/dev/null
  if [[ $os == linux ]]; then
    stage=$work/stage-$arch
    mkdir -p "$stage/doc"
    cp "$dir/devpi-credd" "$dir/devpi-credd-keyring" packaging/systemd/devpi-credd.service internal/svc/devpi-credd.socket \
      packaging/systemd/devpi-credd-system.service packaging/nfpm/lintian-overrides packaging/nginx/devpi-credd-token-user.conf "$stage/"
    cp packaging/sysusers/devpi-credd.conf "$stage/devpi-credd.sysusers"
    cp -r "$work/man" "$work/completions" "$stage/"
    cp README.md LICENSE "$stage/doc/"
    packaging/nfpm/debian-docs.sh "$version" "$stage/doc"
    for packager in deb rpm; do
      if ! log=$(STAGE=$stage ARCH=$arch VERSION=$version $GO run $NFPM package --config packaging/nfpm/nfpm.yaml \
        --packager "$packager" --target "$out/" 2>&1); then
        echo "$log" >&2
        exit 1
      fi
    done
  fi
done

# SBOMs: the modules (and Go's standard library) in each shipped binary,
# with their versions and checksums; no time, no random serial number.
for prog in devpi-credd devpi-credd-keyring; do
  $GO run $CYCLONEDX app -json -std -noserial -notimestamp -main "cmd/$prog" -output "$out/$prog-$version.cdx.json" . 2>/dev/null
done

# The list is taken before the pipeline starts: in `sha256sum -- * | sort
# >SHA256SUMS` the two sides start at once, and the glob could see the
# empty SHA256SUMS that the redirection has just created.
(cd "$out" && files=(*) && sha256sum -- "${files[@]}" | LC_ALL=C sort -k2 >SHA256SUMS)
echo "dist/ for devpi-credd $version ($commit):"
(cd "$out" && ls -1)
