#if canImport(Glibc)
private import Glibc
#elseif canImport(Musl)
private import Musl
#endif

/// The package's lock acquisitions (`Locked.withLock`), in total and by the line that takes
/// them: counted only in a build with `GRPC_POOL_COUNT_LOCKS` (`make bench-allocs`), where the
/// allocation benchmarks report locks per call and `grpc-pool bench --count-calls` lists them by
/// site. In every other build it counts nothing and costs nothing.
package enum LockCount {
    /// A line that takes a lock, kept without allocating: its file's static string and its line.
    private struct Site: Hashable {
        let file: UInt
        let line: UInt
    }

    private struct Counts {
        var total = 0
        var sites: [Site: Int] = [:]
        var names: [UInt: StaticString] = [:]
    }

    /// Its own mutex, not a `Locked`, so that counting is not counted.
    private final class Storage: @unchecked Sendable {
        var mutex = pthread_mutex_t()
        var counts = Counts()

        init() { pthread_mutex_init(&self.mutex, nil) }

        func with<T>(_ body: (inout Counts) -> T) -> T {
            pthread_mutex_lock(&self.mutex)
            defer { pthread_mutex_unlock(&self.mutex) }
            return body(&self.counts)
        }
    }

    private static let storage = Storage()

    /// Whether this build counts.
    package static var isCounting: Bool {
        #if GRPC_POOL_COUNT_LOCKS
        true
        #else
        false
        #endif
    }

    /// The acquisitions so far.
    package static var total: Int { self.storage.with { $0.total } }

    /// The acquisitions since the last ``reset()``, by `file:line`.
    package static func bySite() -> [(site: String, count: Int)] {
        self.storage.with { counts in
            counts.sites.map { site, count in
                let file = counts.names[site.file].map { "\($0)" } ?? "?"
                return ("\(file):\(site.line)", count)
            }
        }
    }

    /// Starts the counts by site over.
    package static func reset() {
        self.storage.with { $0.sites.removeAll(keepingCapacity: true) }
    }

    static func record(_ file: StaticString, _ line: UInt) {
        let key = UInt(bitPattern: file.utf8Start)
        self.storage.with { counts in
            counts.total += 1
            counts.sites[Site(file: key, line: line), default: 0] += 1
            if counts.names[key] == nil { counts.names[key] = file }
        }
    }
}

/// ``LockCount/record(_:_:)`` for `Locked.withLock`, whose inlinable body can reach an internal
/// function marked `@usableFromInline` but not a `package` type.
@usableFromInline
func recordLock(_ file: StaticString, _ line: UInt) {
    LockCount.record(file, line)
}
