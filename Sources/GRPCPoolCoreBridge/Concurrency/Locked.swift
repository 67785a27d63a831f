// Public and inlinable, with the waiter list beside it (not `package`: Swift serializes the bodies
// of public inlinable code only, and the bridge is no product, so no user imports it): each module
// that takes a lock specializes it for its own state. Called unspecialized across modules, every
// `withLock` looks up the metadata of its value, result and error types at run time.
#if canImport(Glibc)
public import Glibc
#elseif canImport(Musl)
public import Musl
#elseif canImport(Darwin)
public import Darwin
#endif

/// A value behind a `pthread_mutex_t`: the lock this package uses for its shared state.
///
/// `Synchronization.Mutex` has the same shape and would do, except that on Linux it locks with
/// the `FUTEX_LOCK_PI` system call directly, which ThreadSanitizer does not intercept: under
/// `make tsan`, every access a `Mutex` guards is reported as a data race, and real races drown in
/// the noise. A pthread mutex is intercepted, so the sanitizer sees the happens-before edges and
/// checks what it should. The value and the mutex share one allocation.
public struct Locked<Value> {
    @usableFromInline
    let storage: LockedStorage<Value>

    /// Puts `value` behind a new lock.
    @inlinable
    public init(_ value: sending Value) {
        self.storage = LockedStorage.make(value)
    }

    /// Runs `body` with exclusive access to the value, and returns what it returns.
    ///
    /// `body` must not call `withLock` on the same lock (the mutex is not recursive) and must not
    /// wait: everything else that needs this lock waits for it.
    #if GRPC_POOL_COUNT_LOCKS
    @inlinable
    public func withLock<Result, Failure: Error>(
        fileID: StaticString = #fileID,
        line: UInt = #line,
        _ body: (inout Value) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        recordLock(fileID, line)
        return try self.storage.withLock(body)
    }
    #else
    @inlinable
    public func withLock<Result, Failure: Error>(
        _ body: (inout Value) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        try self.storage.withLock(body)
    }
    #endif
}

extension Locked {
    /// The value behind the lock, made by `make` on first use.
    @inlinable
    public func value<Wrapped>(orMake make: () -> Wrapped) -> Wrapped where Value == Wrapped? {
        self.withLock { value in
            if let value { return value }
            let new = make()
            value = new
            return new
        }
    }
}

@usableFromInline
final class LockedStorage<Value>: ManagedBuffer<Value, pthread_mutex_t> {
    @inlinable
    static func make(_ value: sending Value) -> LockedStorage<Value> {
        let buffer = self.create(minimumCapacity: 1) { _ in value }
        let storage = unsafeDowncast(buffer, to: LockedStorage<Value>.self)
        storage.withUnsafeMutablePointerToElements { mutex in
            mutex.initialize(to: pthread_mutex_t())
            let result = pthread_mutex_init(mutex, nil)
            precondition(result == 0, "pthread_mutex_init failed: \(result)")
        }
        return storage
    }

    deinit {
        self.withUnsafeMutablePointerToElements { mutex in
            _ = pthread_mutex_destroy(mutex)
        }
    }

    @inlinable
    func withLock<Result, Failure: Error>(
        _ body: (inout Value) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        // The mutex's address is fixed while `self` is alive (the caller keeps it alive). The
        // value is touched only while the mutex is held.
        let mutex = self.withUnsafeMutablePointerToElements { $0 }
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&self.header)
    }
}

// The lock makes every access to the value exclusive; the value itself must be safe to hand from
// one thread to another.
extension Locked: @unchecked Sendable where Value: Sendable {}
