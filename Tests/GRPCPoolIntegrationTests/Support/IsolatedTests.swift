import Foundation
import Testing

/// Tests that load the whole machine or compare latencies: `make test` runs them after the others,
/// one at a time, so that neither they nor the rest are slowed by each other.
@Suite("Run alone, one at a time", .serialized)
enum IsolatedTests {}

/// Whether the suite runs under a sanitizer (`make tsan`, `make asan` set `GRPC_POOL_SANITIZER`).
let underSanitizer = ProcessInfo.processInfo.environment["GRPC_POOL_SANITIZER"] != nil
