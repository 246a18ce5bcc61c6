// swift-tools-version:5.4
// 5.4 on purpose: from 5.5 on, SwiftPM renames an executable's entry point to `<target>_main`
// (testable executables), and a fuzz target has no entry point of its own: libFuzzer's `main`
// drives `LLVMFuzzerTestOneInput`, so the link fails. Build and run with scripts/fuzz.sh.
import PackageDescription

func starling(_ name: String) -> Target.Dependency { .product(name: name, package: "Starling") }
let nioCore = Target.Dependency.product(name: "NIOCore", package: "swift-nio")

/// One libFuzzer executable per parser of outside bytes (Sources/NAME/NAME.swift).
let fuzzTargets: [(name: String, dependencies: [Target.Dependency])] = [
    ("fuzz-bencode", [starling("Bencode")]),
    ("fuzz-metainfo", [starling("BitTorrent"), starling("Bencode")]),
    ("fuzz-handshake", [starling("BitTorrent"), nioCore]),
    ("fuzz-peer-wire", [starling("BitTorrent"), nioCore]),
    ("fuzz-tracker-http", [starling("StarlingNode"), starling("BitTorrent"), nioCore]),
    ("fuzz-tracker-query", [starling("BitTorrent")]),
    ("fuzz-tracker-response", [starling("BitTorrent")]),
    ("fuzz-gossip", [starling("BitTorrent")]),
    ("fuzz-node-config", [starling("NodeConfig")]),
    ("fuzz-admin", [
        starling("StarlingNode"), starling("BitTorrent"), starling("Values"), nioCore,
        .product(name: "NIOEmbedded", package: "swift-nio"),
        .product(name: "Logging", package: "swift-log"),
    ]),
]

let package = Package(
    name: "StarlingFuzz",
    dependencies: [
        .package(name: "Starling", path: ".."),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
    ],
    targets: [.target(name: "FuzzSupport")] + fuzzTargets.map {
        .executableTarget(name: $0.name, dependencies: ["FuzzSupport"] + $0.dependencies,
                          swiftSettings: [.unsafeFlags(["-parse-as-library"])])
    }
)
