#!/usr/bin/env bash
# Regenerates ../Generated/*.pb.swift from the .proto files here. Needs protoc (Debian protobuf-compiler) and
# protoc-gen-swift of the swift-protobuf version Package.swift names, e.g. built once with
#   git clone -b 1.39.0 https://github.com/apple/swift-protobuf && cd swift-protobuf && swift build -c release --product protoc-gen-swift
# and passed as PROTOC_GEN_SWIFT=/path/to/.build/release/protoc-gen-swift. The generated code is committed,
# so that builds never run the plugin.
set -euo pipefail
cd "$(dirname "$0")"
plugin="${PROTOC_GEN_SWIFT:-$(command -v protoc-gen-swift)}"
protoc --plugin=protoc-gen-swift="$plugin" --swift_opt=Visibility=Internal --swift_out=../Generated onnx.proto tensorboard.proto
