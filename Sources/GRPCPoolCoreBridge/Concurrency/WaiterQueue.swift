public import DequeModule
private import Synchronization

/// Waiters' ids, unique in the process: taken without a lock, so that a waiter knows its id
/// before it registers (its cancellation must find it).
private let waiterIDs = Atomic<UInt64>(0)

@usableFromInline
func nextWaiterID() -> UInt64 {
    waiterIDs.wrappingAdd(1, ordering: .relaxed).oldValue
}

/// Tasks waiting on state behind a ``Locked``, oldest first: the package's one waiter list.
///
/// The idiom it serves: a task that finds what it waits for missing registers here, under the
/// state's lock (``Locked/wait(in:until:cancelled:)``); whoever changes the state takes the
/// waiters out under the same lock and resumes them after releasing it (``Resumption``). Never
/// resume under the lock: a resumed task may run at once and need it.
///
/// Public and inlinable, as ``Locked`` is (see there).
public struct WaiterQueue<Value: Sendable>: Sendable {
    public typealias ID = UInt64

    @usableFromInline
    var entries: Deque<(id: ID, continuation: CheckedContinuation<Value, Never>)> = []

    @inlinable
    public init() {}

    /// Waiters now.
    @inlinable
    public var count: Int { self.entries.count }
    @inlinable
    public var isEmpty: Bool { self.entries.isEmpty }

    /// An id for a waiter about to register (made first, so that its cancellation can find it).
    @inlinable
    public static func makeID() -> ID {
        nextWaiterID()
    }

    @inlinable
    public mutating func enqueue(_ continuation: CheckedContinuation<Value, Never>, id: ID) {
        self.entries.append((id, continuation))
    }

    /// The oldest waiter's id, without taking it out.
    @inlinable
    public var firstID: ID? { self.entries.first?.id }

    /// Takes the oldest waiter out.
    @inlinable
    public mutating func removeFirst() -> Resumption<Value> {
        Resumption(self.entries.popFirst().map { [$0.continuation] } ?? [])
    }

    /// Takes the waiter `id` out, if it is still waiting.
    @inlinable
    public mutating func remove(_ id: ID) -> Resumption<Value> {
        guard let index = self.entries.firstIndex(where: { $0.id == id }) else { return Resumption([]) }
        return Resumption([self.entries.remove(at: index).continuation])
    }

    /// Takes every waiter out.
    ///
    /// A loop, not `map(\.continuation)`: where this runs unspecialized, a key path into the
    /// tuple is built at run time on every call.
    @inlinable
    public mutating func removeAll() -> Resumption<Value> {
        guard !self.entries.isEmpty else { return .none }
        var continuations: [CheckedContinuation<Value, Never>] = []
        continuations.reserveCapacity(self.entries.count)
        for entry in self.entries { continuations.append(entry.continuation) }
        self.entries.removeAll()
        return Resumption(continuations)
    }
}

/// Waiters taken out of a ``WaiterQueue``, to resume once the lock is released.
public struct Resumption<Value: Sendable>: Sendable {
    @usableFromInline
    let continuations: [CheckedContinuation<Value, Never>]

    @inlinable
    init(_ continuations: [CheckedContinuation<Value, Never>]) {
        self.continuations = continuations
    }

    @inlinable
    public var isEmpty: Bool { self.continuations.isEmpty }

    /// No waiter.
    @inlinable
    public static var none: Resumption { Resumption([]) }

    @inlinable
    public func resume(returning value: Value) {
        for continuation in self.continuations { continuation.resume(returning: value) }
    }

    /// Joins two resumptions of the same value.
    @inlinable
    public static func + (lhs: Self, rhs: Self) -> Self {
        Self(lhs.continuations + rhs.continuations)
    }
}

extension Locked where Value: Sendable {
    /// Waits until `ready` finds a result in the state, registering in the state's waiter
    /// queue at `queue` meanwhile; whoever makes the result available resumes the waiter with it.
    ///
    /// `ready` runs under the lock, once, with the id the waiter registers under if it returns
    /// `nil`: the result then comes from the resumer. When the task is cancelled first, the waiter
    /// leaves the queue, `leave` runs under the lock with its id (the state may know the waiter
    /// too), and `cancelled` is returned.
    @inlinable
    public func wait<Result: Sendable>(
        in queue: any WritableKeyPath<Value, WaiterQueue<Result>> & Sendable,
        until ready: (inout Value, WaiterQueue<Result>.ID) -> Result?,
        leave: @escaping @Sendable (inout Value, WaiterQueue<Result>.ID) -> Void = { _, _ in },
        cancelled: Result
    ) async -> Result {
        let id = WaiterQueue<Result>.makeID()
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Result, Never>) in
                let now: Result? = self.withLock { state in
                    // Cancelled before registering: the cancellation handler found nothing to take out.
                    if Task.isCancelled { return cancelled }
                    if let result = ready(&state, id) { return result }
                    state[keyPath: queue].enqueue(continuation, id: id)
                    return nil
                }
                if let now { continuation.resume(returning: now) }
            }
        } onCancel: {
            let waiter = self.withLock { state in
                let waiter = state[keyPath: queue].remove(id)
                if !waiter.isEmpty { leave(&state, id) }
                return waiter
            }
            waiter.resume(returning: cancelled)
        }
    }

    /// ``wait(in:until:leave:cancelled:)`` for a `ready` that needs no id.
    @inlinable
    public func wait<Result: Sendable>(
        in queue: any WritableKeyPath<Value, WaiterQueue<Result>> & Sendable,
        until ready: (inout Value) -> Result?,
        cancelled: Result
    ) async -> Result {
        await self.wait(in: queue, until: { state, _ in ready(&state) }, cancelled: cancelled)
    }
}

/// A value set once and awaited by any number of tasks: a call's status, a stream's end.
package final class OneShot<Value: Sendable>: Sendable {
    private struct State: Sendable {
        var value: Value?
        var waiters = WaiterQueue<Value>()
    }

    private let state = Locked(State())

    package init() {}

    /// The value, if it has been set.
    package var value: Value? { self.state.withLock { $0.value } }

    /// Sets the value and resumes every waiter; `false`, changing nothing, when it was set before.
    @discardableResult
    package func set(_ value: Value) -> Bool {
        let waiters = self.state.withLock { state -> Resumption<Value>? in
            guard state.value == nil else { return nil }
            state.value = value
            return state.waiters.removeAll()
        }
        waiters?.resume(returning: value)
        return waiters != nil
    }

    /// The value, once it is set; `cancelled` when the task is cancelled first.
    package func wait(cancelled: Value) async -> Value {
        await self.state.wait(in: \.waiters, until: { $0.value }, cancelled: cancelled)
    }
}
