#!/usr/bin/env bash
# Build the Go example with Debian's packages, in GOPATH mode, no module proxy:
#
#   apt-get install golang-go golang-google-grpc-dev golang-google-protobuf-dev \
#     protoc-gen-go protoc-gen-go-grpc protobuf-compiler libprotobuf-dev
#   examples/go/build.sh OUT_BINARY [WORK_DIR]
#
# The Go stubs are generated from protos/ into WORK_DIR (default: a fresh temp
# dir, removed afterwards) on every build, so they are never checked in and
# never stale. protos/ has no go_package options: the import paths are given
# here with protoc's M flags (consulgrpc.example/gen/consul/<area>/v1).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
protos=$(cd "$here/../../protos" && pwd)
out=${1:?usage: build.sh OUT_BINARY [WORK_DIR]}
case $out in /*) ;; *) out=$PWD/$out ;; esac

if [ -n "${2:-}" ]; then
  work=$2
  mkdir -p "$work"
else
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
fi

for tool in go protoc protoc-gen-go protoc-gen-go-grpc; do
  command -v "$tool" >/dev/null || { echo "build.sh: $tool not found (run scripts/bootstrap)" >&2; exit 1; }
done

prefix=consulgrpc.example/gen
gopath=$work/gopath
rm -rf "$gopath/src/consulgrpc.example"
mkdir -p "$gopath/src/consulgrpc.example/cmd/example"

# The files the example uses, with what they import.
files=(
  consul/common/v1/query.proto
  consul/common/v1/types.proto
  consul/coordinate/v1/coordinate.proto
  consul/membership/v1/membership.proto
  consul/agent/v1/agent.proto
  consul/catalog/v1/catalog.proto
  consul/health/v1/health.proto
  consul/kv/v1/kv.proto
)
mflags=()
for f in "${files[@]}"; do
  dir=$(dirname "$f")                      # consul/agent/v1
  area=$(basename "$(dirname "$dir")")     # agent
  mflags+=("M$f=$prefix/$dir;${area}v1")
done
go_opt=$(IFS=,; echo "${mflags[*]}")
# Debian's well-known types live in /usr/include (libprotobuf-dev).
protoc -I "$protos" -I /usr/include \
  --go_out="$gopath/src" --go_opt="$go_opt" \
  --go-grpc_out="$gopath/src" --go-grpc_opt="$go_opt" \
  "${files[@]}"

cp "$here/main.go" "$gopath/src/consulgrpc.example/cmd/example/"
export GO111MODULE=off GOFLAGS= GOPATH="$gopath:/usr/share/gocode"
cd "$gopath/src/consulgrpc.example/cmd/example"
go vet .
go build -o "$out" .
