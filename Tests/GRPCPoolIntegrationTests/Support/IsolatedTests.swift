import Foundation
import Testing

/// Tests that need the machine to themselves: they load both cores, compare latencies, bound a
/// window of the C core's real-time timers, or count the whole process's core objects. `make
/// test` runs them after the others, one at a time, so that neither they nor the rest are slowed
/// by each other. (The pool's own timers run on a manual clock in the tests that need them, so
/// those tests need not be here.)
@Suite("Run alone, one at a time", .serialized)
enum IsolatedTests {}

/// Whether the suite runs under a sanitizer (`make tsan`, `make asan` set `GRPC_POOL_SANITIZER`).
let underSanitizer = ProcessInfo.processInfo.environment["GRPC_POOL_SANITIZER"] != nil
