// swift-tools-version:6.0
import PackageDescription

// Dependencies come only from the machine's package mirror (see ../shared/DESIGN.md).
let package = Package(
    name: "Starling",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "starling", targets: ["starling"]),
        .executable(name: "starling-sim", targets: ["starling-sim"]),
        // For the fuzz targets in Fuzz/ (a package of their own that depends on this one).
        .library(name: "Bencode", targets: ["Bencode"]),
        .library(name: "BitTorrent", targets: ["BitTorrent"]),
        .library(name: "NodeConfig", targets: ["NodeConfig"]),
        .library(name: "Values", targets: ["Values"]),
        .library(name: "StarlingNode", targets: ["StarlingNode"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
    ],
    targets: [
        .systemLibrary(name: "COpenSSL", path: "Sources/COpenSSL"),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib"),
        .systemLibrary(name: "CLinux", path: "Sources/CLinux"),
        .target(name: "Bencode"),
        // The values operators write (IP, CIDR, endpoint, port range, rate, size, site map),
        // each with its one parser, and every default: no NIO, no OpenSSL.
        .target(name: "Values"),
        .target(name: "BitTorrent", dependencies: [
            "Bencode", "COpenSSL", "Values",
            .product(name: "NIOCore", package: "swift-nio"),
        ]),
        .target(name: "Storage", dependencies: [
            "BitTorrent", "Values", "CZlib", "CLinux",
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        ]),
        // The node's YAML configuration: parsing and validation only (Yams stays here);
        // StarlingNode's NodeRuntime maps it onto the engine, tracker, gossip and HTTP.
        .target(name: "NodeConfig", dependencies: [
            "Values",
            .product(name: "Yams", package: "Yams"),
        ]),
        .target(name: "Swarm", dependencies: ["BitTorrent", "Values"]),
        // The fleet simulator: the Swarm rules over a modelled network, in virtual time.
        .target(name: "SwarmSim", dependencies: ["Swarm", "BitTorrent", "Storage", "Values"]),
        .executableTarget(name: "starling-sim", dependencies: [
            "SwarmSim", "BitTorrent", "Storage", "Values",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .target(name: "StarlingNode", dependencies: [
            "BitTorrent", "Storage", "Swarm", "Bencode", "NodeConfig", "Values",
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "UnixSignals", package: "swift-service-lifecycle"),
        ]),
        .executableTarget(name: "starling", dependencies: [
            "Bencode", "BitTorrent", "Storage", "Swarm", "StarlingNode", "NodeConfig", "Values",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // Load generator for scripts/bench-tracker.sh (announces/s against any HTTP tracker).
        .executableTarget(name: "tracker-bench", dependencies: [
            "BitTorrent", "Values",
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ]),
        // What every test target shares: paths, temporary folders, processes, seeded bytes.
        .target(name: "TestSupport", dependencies: [
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        ], path: "Tests/TestSupport"),
        .testTarget(name: "BitTorrentTests", dependencies: [
            "BitTorrent", "Bencode", "Values",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOEmbedded", package: "swift-nio"),
        ]),
        // Also holds the compatibility tests (mktorrent, libtorrent) and the CLI tests, which
        // run the built `starling` binary.
        .testTarget(name: "StorageTests", dependencies: [
            "Storage", "BitTorrent", "Bencode", "Values", "TestSupport",
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        ]),
        .testTarget(name: "SwarmTests", dependencies: ["Swarm", "BitTorrent", "Values"]),
        .testTarget(name: "SwarmSimTests", dependencies: ["SwarmSim", "Swarm", "BitTorrent"]),
        .testTarget(name: "StarlingNodeTests", dependencies: [
            "StarlingNode", "BitTorrent", "Storage", "Swarm", "Bencode", "Values", "NodeConfig", "TestSupport",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOEmbedded", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ]),
        .testTarget(name: "BencodeTests", dependencies: ["Bencode"]),
        .testTarget(name: "ValuesTests", dependencies: ["Values"]),
        .testTarget(name: "NodeConfigTests", dependencies: ["NodeConfig", "Values"]),
    ],
    swiftLanguageModes: [.v6]
)
