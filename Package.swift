// swift-tools-version:6.2
import PackageDescription

/// One set of settings for every target: Swift 6 with strict concurrency, and warnings are errors so
/// that NIO's `@preconcurrency` imports cannot hide an unsafe capture.
let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
    .treatAllWarnings(as: .error),
]

let package = Package(
    name: "QuorumKV",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "KVClient", targets: ["KVClient"]),
        .library(name: "KVConfig", targets: ["KVConfig"]),
        .executable(name: "kvd", targets: ["kvd"]),
        .executable(name: "kvctl", targets: ["kvctl"]),
        .executable(name: "kvbench", targets: ["kvbench"]),
        .executable(name: "kvwire-gen", targets: ["kvwire-gen"]),
        .executable(name: "kvsim", targets: ["kvsim"]),
        .executable(name: "kvfuzz", targets: ["kvfuzz"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        // `swift package generate-documentation --target KVClient` (the SDK's DocC; scripts/test.sh).
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
    ],
    targets: [
        .systemLibrary(
            name: "COpenSSL",
            providers: [.apt(["libssl-dev"])]
        ),
        .systemLibrary(
            name: "CRocksDB",
            providers: [.apt(["librocksdb-dev"])]
        ),
        .target(name: "KVCore", swiftSettings: swiftSettings),
        .target(
            name: "KVWire",
            dependencies: ["KVCore", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: swiftSettings
        ),
        .target(name: "KVWireGenerator", swiftSettings: swiftSettings),
        .target(name: "KVWorkload", swiftSettings: swiftSettings),
        .target(
            name: "KVConfig",
            dependencies: ["KVCore", .product(name: "Yams", package: "Yams")],
            swiftSettings: swiftSettings
        ),
        .target(name: "KVStorage", dependencies: ["KVCore", "CRocksDB"], swiftSettings: swiftSettings),
        .target(
            name: "KVTLS",
            dependencies: ["KVCore", "COpenSSL", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "KVRPC",
            dependencies: [
                "KVCore", "KVWire", "KVTLS",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "KVCluster",
            dependencies: ["KVCore", "KVWire", "KVRPC", "KVTLS"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "KVClient",
            dependencies: [
                "KVCore", "KVWire", "KVRPC", "KVTLS", "KVConfig", "KVCluster",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "KVBackup",
            dependencies: [
                "KVCore", "KVWire", "KVTLS", "KVClient", "KVStorage", .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "KVNode",
            dependencies: [
                "KVCore", "KVWire", "KVStorage", "KVRPC", "KVTLS", "KVConfig", "KVCluster",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "kvd",
            dependencies: [
                "KVCore", "KVNode", "KVConfig", "KVRPC",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "kvctl",
            dependencies: [
                "KVCore", "KVWire", "KVClient", "KVTLS", "KVRPC", "KVConfig", "KVBackup",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "kvbench",
            dependencies: [
                "KVCore", "KVClient", "KVTLS", "KVConfig", "KVWorkload",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "KVSimulation",
            dependencies: ["KVCore", "KVStorage", "KVNode", "KVCluster"],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "kvsim",
            dependencies: [
                "KVSimulation",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "kvfuzz",
            dependencies: ["KVWire"],
            swiftSettings: swiftSettings
        ),
        // Not a product: the cluster tests run it (TLSExitTests).
        .executableTarget(
            name: "kvtls-probe",
            dependencies: [
                "KVCore", "KVTLS", .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "kvwire-gen",
            dependencies: [
                "KVWireGenerator",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "KVCoreTests", dependencies: ["KVCore"], swiftSettings: swiftSettings),
        .testTarget(name: "KVWorkloadTests", dependencies: ["KVCore", "KVWorkload"], swiftSettings: swiftSettings),
        .testTarget(
            name: "KVWireTests",
            dependencies: [
                "KVCore", "KVWire", "KVWireGenerator",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOTestUtils", package: "swift-nio"),
            ],
            // Fuzz inputs the tests read by path (FuzzRegressionTests), not resources.
            exclude: ["FuzzRegressions"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SimulationTests",
            dependencies: ["KVCore", "KVSimulation"],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "KVClusterTests", dependencies: ["KVCore", "KVCluster"], swiftSettings: swiftSettings),
        .testTarget(
            name: "KVClientTests",
            dependencies: [
                "KVCore", "KVClient", "KVRPC", "KVTLS", "KVWire", .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "KVBackupTests", dependencies: ["KVCore", "KVBackup", "KVTLS", "KVStorage"],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "KVStorageTests", dependencies: ["KVCore", "KVStorage"], swiftSettings: swiftSettings),
        .testTarget(
            name: "KVNodeTests",
            dependencies: [
                "KVCore", "KVWire", "KVStorage", "KVNode", "KVTLS", "KVRPC",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "InMemoryLogging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "KVTLSTests",
            dependencies: [
                "KVCore", "KVTLS",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "KVRPCTests",
            dependencies: [
                "KVCore", "KVWire", "KVTLS", "KVRPC",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ClusterTests",
            dependencies: [
                "KVCore", "KVCluster", "KVClient", "KVTLS", "KVConfig", "KVRPC", "KVWire", "KVStorage", "KVBackup",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
