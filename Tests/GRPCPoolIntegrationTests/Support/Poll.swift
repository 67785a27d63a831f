import Foundation
import Glibc

/// Waits until `condition` holds, checking every `interval`, for at most `timeLimit`.
///
/// The default bound is generous on purpose: in `make test` some 80 tests share two cores, and a
/// condition that needs a few hundred calls can take many times longer than it does alone. A
/// test that measures a detection window passes its own `timeLimit`.
///
/// - Returns: whether the condition held in time.
@discardableResult
func poll(
    every interval: Duration = .milliseconds(20),
    timeLimit: Duration = .seconds(30),
    until condition: () async throws -> Bool
) async rethrows -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: timeLimit)
    while clock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: interval)
    }
    return try await condition()
}

/// The value of `task`, which must end when cancelled: if it has not ended within `timeLimit`,
/// it is cancelled, so that a test whose condition never came fails instead of hanging.
func value<Success: Sendable>(of task: Task<Success, Never>, timeLimit: Duration) async -> Success {
    let timer = Task {
        try await Task.sleep(for: timeLimit)
        task.cancel()
    }
    defer { timer.cancel() }
    return await task.value
}

/// The number of threads in this process (Linux: entries of /proc/self/task).
func processThreadCount() -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").count) ?? -1
}

/// This process's resident set size (VmRSS of /proc/self/status), in MiB, after glibc has given
/// back the free pages of its arenas (`malloc_trim`): what is still in use, not what the
/// allocator keeps cached from a burst of large messages on several threads.
func residentMiB() -> Double {
    // malloc_trim is glibc's (malloc.h, which Swift's Glibc module does not import).
    if let trim = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") {
        _ = unsafeBitCast(trim, to: (@convention(c) (Int) -> Int32).self)(0)
    }
    let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
    let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
    let kB = line.split(separator: " ").compactMap { Double($0) }.first ?? 0
    return kB / 1024
}
