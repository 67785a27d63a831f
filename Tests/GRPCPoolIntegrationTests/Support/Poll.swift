import Foundation

/// Waits until `condition` holds, checking every `interval`, for at most `timeLimit`.
///
/// - Returns: whether the condition held in time.
@discardableResult
func poll(
    every interval: Duration = .milliseconds(20),
    timeLimit: Duration = .seconds(10),
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

/// The number of threads in this process (Linux: entries of /proc/self/task).
func processThreadCount() -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").count) ?? -1
}
