// swift-tools-version: 6.2
import PackageDescription

import class Foundation.ProcessInfo

/// Settings every target shares, as grpc-swift-2 sets them for its own: Swift 6 mode, `any`, imports that are internal unless marked.
let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "GRPCPool",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "GRPCPool", targets: ["GRPCPool"]),
        .executable(name: "grpc-pool", targets: ["grpc-pool"]),
        .executable(name: "example-app", targets: ["ExampleApp"]),
    ],
    dependencies: [
        .package(url: "https://github.com/grpc/grpc-swift-2", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport", from: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
        .package(url: "https://github.com/apple/swift-distributed-tracing", from: "1.7.3"),
        .package(url: "https://github.com/swift-otel/swift-w3c-trace-context", from: "1.0.0"),
    ],
    targets: [
        .systemLibrary(name: "CGRPCCore", path: "Modules/CGRPCCore"),
        .systemLibrary(name: "CAres", path: "Modules/CAres"),
        .target(
            name: "GRPCPoolCoreBridge",
            dependencies: [
                "CGRPCCore",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "GRPCPool",
            dependencies: [
                "GRPCPoolCoreBridge",
                "CAres",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "DemoServices",
            dependencies: [
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "InteropCases",
            dependencies: [
                "DemoServices",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "grpc-pool",
            dependencies: [
                "GRPCPool",
                "DemoServices",
                "InteropCases",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "ExampleApp",
            dependencies: [
                "GRPCPool",
                "DemoServices",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "GRPCPoolUnitTests",
            dependencies: [
                "GRPCPool",
                "GRPCPoolCoreBridge",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "GRPCPoolIntegrationTests",
            dependencies: [
                "GRPCPool",
                "GRPCPoolCoreBridge",
                "DemoServices",
                "InteropCases",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "InMemoryLogging", package: "swift-log"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "InMemoryTracing", package: "swift-distributed-tracing"),
                .product(name: "W3CTraceContext", package: "swift-w3c-trace-context"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)

// OpenTelemetry for the example app and the benchmark's traced rows; OTLP over gRPC only (the
// HTTP exporter would bring async-http-client). Left out of the sanitizer builds (`make tsan` and
// `make asan` set GRPC_POOL_SANITIZER): swift-otel 1.6.0 does not compile with -sanitize=thread (a
// `sending` error in its OTelBatchLogRecordProcessor that the plain build does not raise). The code
// that uses it is under `#if GRPC_POOL_OTEL` (not `canImport`, which a module left in the build
// folder by an earlier build would satisfy).
if ProcessInfo.processInfo.environment["GRPC_POOL_SANITIZER"] == nil {
    package.dependencies.append(
        .package(url: "https://github.com/swift-otel/swift-otel", from: "1.6.0", traits: ["OTLPGRPC"])
    )
    for target in package.targets where target.name == "grpc-pool" || target.name == "ExampleApp" {
        target.dependencies.append(.product(name: "OTel", package: "swift-otel"))
        target.swiftSettings = (target.swiftSettings ?? []) + [.define("GRPC_POOL_OTEL")]
    }
}

// The allocation benchmarks (`make bench-allocs`): ordo-one/benchmark with its malloc interposer,
// in the package only when GRPC_POOL_BENCHMARKS is set, so that `swift build` and `make test`
// never build the harness.
if ProcessInfo.processInfo.environment["GRPC_POOL_BENCHMARKS"] != nil {
    // The benchmarks count the package's lock acquisitions per call too.
    for target in package.targets where target.name == "GRPCPoolCoreBridge" {
        target.swiftSettings = (target.swiftSettings ?? []) + [.define("GRPC_POOL_COUNT_LOCKS")]
    }
    package.dependencies.append(
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"])
    )
    package.targets.append(
        .executableTarget(
            name: "CallCost",
            dependencies: [
                "GRPCPool",
                "DemoServices",
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
            ],
            path: "Benchmarks/CallCost",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        )
    )
}
