import Foundation
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#endif

/// A child process whose end and output are awaited without holding a thread of Swift's
/// cooperative pool.
///
/// Foundation's `Process` learns of a child's end through a SIGCHLD handler, and
/// `waitUntilExit()` spins a run loop on the calling thread until it does; in a process whose
/// threads block signals (the C core's, the test runner's), that wait can last forever. Here one
/// dedicated thread blocks in `waitpid` for this child alone, and another reads its output.
///
/// The child starts with every signal unblocked and at its default action, whatever the
/// starting thread blocks or ignores, and inherits no descriptor but its standard three.
public final class ChildProcess: Sendable {
    /// Where the child's standard output and error go.
    public enum Output: Sendable {
        /// `/dev/null`.
        case discard
        /// A pipe this object reads: ``lines()`` and ``output(timeLimit:)``.
        case capture
    }

    /// How a child ended.
    public enum Termination: Sendable, Equatable, CustomStringConvertible {
        case exited(Int32)
        case signaled(Int32)

        public var description: String {
            switch self {
            case .exited(let code): "exit code \(code)"
            case .signaled(let signal): "signal \(signal)"
            }
        }
    }

    public struct SpawnError: Error, CustomStringConvertible {
        public let executable: String
        public let errno: Int32
        public var description: String { "cannot start \(self.executable): \(String(cString: strerror(self.errno)))" }
    }

    private struct State {
        var termination: Termination?
        var endWaiters: [Int: CheckedContinuation<Termination?, Never>] = [:]
        var output = Data()
        var outputEnded = false
        var outputWaiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var nextWaiter = 0
    }

    private final class Shared: Sendable {
        let state = NIOLockedValueBox(State())
    }

    public let pid: Int32
    private let shared = Shared()
    private let input: NIOLockedValueBox<Int32?>
    private let lineStream: AsyncStream<String>

    /// Starts `executable` with `arguments`.
    ///
    /// - Parameters:
    ///   - output: where standard output goes.
    ///   - errors: where standard error goes (`.capture` shares standard output's pipe).
    ///   - input: whether standard input is a pipe (``closeInput()`` ends it) or `/dev/null`.
    public init(
        _ executable: String,
        _ arguments: [String],
        output: Output = .discard,
        errors: Output = .discard,
        input: Bool = false
    ) throws {
        var outputPipe: [Int32] = [-1, -1]
        var inputPipe: [Int32] = [-1, -1]
        let capture = output == .capture || errors == .capture
        // Socket pairs rather than pipes: they are created close-on-exec in one call, so that a
        // child another thread starts meanwhile cannot inherit them (and hold an end open).
        let kind = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        if capture, socketpair(AF_UNIX, kind, 0, &outputPipe) != 0 {
            throw SpawnError(executable: executable, errno: errno)
        }
        if input, socketpair(AF_UNIX, kind, 0, &inputPipe) != 0 {
            throw SpawnError(executable: executable, errno: errno)
        }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if input {
            posix_spawn_file_actions_adddup2(&actions, inputPipe[0], 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        for (fd, destination) in [(Int32(1), output), (Int32(2), errors)] {
            switch destination {
            case .capture: posix_spawn_file_actions_adddup2(&actions, outputPipe[1], fd)
            case .discard: posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", O_WRONLY, 0)
            }
        }
        // Nothing else of this process goes to the child: a listening socket it inherited would
        // keep this process's port bound after this process closed it (a server restarted on its
        // port then finds it in use for as long as the child runs).
        Self.closeFrom(3, in: &actions)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attributes, &none)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for argument in argv { free(argument) } }
        var spawned = pid_t()
        let result = posix_spawn(&spawned, executable, &actions, &attributes, argv, environ)
        for fd in [outputPipe[1], inputPipe[0]] where fd >= 0 { close(fd) }
        guard result == 0 else {
            for fd in [outputPipe[0], inputPipe[1]] where fd >= 0 { close(fd) }
            throw SpawnError(executable: executable, errno: result)
        }
        let pid = spawned
        self.pid = pid
        self.input = NIOLockedValueBox(input ? inputPipe[1] : nil)
        let (lines, continuation) = AsyncStream.makeStream(of: String.self)
        self.lineStream = lines

        if capture {
            let readEnd = outputPipe[0]
            Thread { [shared] in Self.read(readEnd, into: shared, lines: continuation) }.start()
        } else {
            continuation.finish()
            self.shared.state.withLockedValue { $0.outputEnded = true }
        }
        Thread { [shared] in Self.reap(pid, into: shared) }.start()
    }

    deinit {
        self.closeInput()
    }

    /// Sends `signal` to the child, unless it has been reaped (its pid may then be reused).
    public func send(_ signal: Int32) {
        self.shared.state.withLockedValue { state in
            if state.termination == nil { kill(self.pid, signal) }
        }
    }

    /// Closes the write end of the child's standard input.
    public func closeInput() {
        let fd = self.input.withLockedValue { fd in
            defer { fd = nil }
            return fd
        }
        if let fd { close(fd) }
    }

    /// How the child ended, or `nil` while it runs.
    public var termination: Termination? { self.shared.state.withLockedValue { $0.termination } }

    public var hasExited: Bool { self.termination != nil }

    /// Waits until the child has ended, for at most `timeLimit`; `nil` if it still runs.
    @discardableResult
    public func exit(timeLimit: Duration = .seconds(30)) async -> Termination? {
        await Self.wait(self.shared, timeLimit: timeLimit) { state in
            state.termination.map { .some($0) }
        } register: { state, id, continuation in
            state.endWaiters[id] = continuation
        } remove: { state, id in
            state.endWaiters.removeValue(forKey: id)
        } timedOut: {
            nil
        }
    }

    /// The lines of the captured output as they arrive (one consumer), until end of file.
    public func lines() -> AsyncStream<String> { self.lineStream }

    /// The captured output so far.
    public var outputSoFar: String {
        self.shared.state.withLockedValue { String(decoding: $0.output, as: UTF8.self) }
    }

    /// All of the captured output, once the child has closed it (or `timeLimit` has passed).
    public func output(timeLimit: Duration = .seconds(30)) async -> String {
        await Self.wait(self.shared, timeLimit: timeLimit) { state in
            state.outputEnded ? () : nil
        } register: { state, id, continuation in
            state.outputWaiters[id] = continuation
        } remove: { state, id in
            state.outputWaiters.removeValue(forKey: id)
        } timedOut: {
            ()
        }
        return self.shared.state.withLockedValue { String(decoding: $0.output, as: UTF8.self) }
    }

    /// Sends SIGTERM, then SIGKILL if the child is still running after `grace`, and waits.
    @discardableResult
    public func terminate(grace: Duration = .seconds(5)) async -> Termination? {
        self.send(SIGTERM)
        if let termination = await self.exit(timeLimit: grace) { return termination }
        self.send(SIGKILL)
        return await self.exit(timeLimit: .seconds(10))
    }

    private static func wait<Value: Sendable>(
        _ shared: Shared,
        timeLimit: Duration,
        ready: @escaping @Sendable (inout State) -> Value?,
        register: @escaping @Sendable (inout State, Int, CheckedContinuation<Value, Never>) -> Void,
        remove: @escaping @Sendable (inout State, Int) -> CheckedContinuation<Value, Never>?,
        timedOut: @escaping @Sendable () -> Value
    ) async -> Value {
        let id = shared.state.withLockedValue { state in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        return await withCheckedContinuation { continuation in
            let now = shared.state.withLockedValue { state -> Value? in
                if let value = ready(&state) { return value }
                register(&state, id, continuation)
                return nil
            }
            if let now { return continuation.resume(returning: now) }
            Task {
                try? await Task.sleep(for: timeLimit)
                shared.state.withLockedValue { remove(&$0, id) }?.resume(returning: timedOut())
            }
        }
    }

    private static func reap(_ pid: pid_t, into shared: Shared) {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else {
                status = 0x7f00  // not ours to reap (someone else did): report exit code 127
                break
            }
        }
        let signal = status & 0x7f
        let termination: Termination = signal == 0 ? .exited((status >> 8) & 0xff) : .signaled(signal)
        let waiters = shared.state.withLockedValue { state in
            state.termination = termination
            defer { state.endWaiters = [:] }
            return Array(state.endWaiters.values)
        }
        for waiter in waiters { waiter.resume(returning: termination) }
    }

    private static func read(_ fd: Int32, into shared: Shared, lines: AsyncStream<String>.Continuation) {
        var pending = Data()
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { break }
            let bytes = chunk[..<count]
            shared.state.withLockedValue { $0.output.append(contentsOf: bytes) }
            pending.append(contentsOf: bytes)
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                lines.yield(String(decoding: pending[pending.startIndex..<newline], as: UTF8.self))
                pending.removeSubrange(pending.startIndex...newline)
            }
        }
        close(fd)
        if !pending.isEmpty { lines.yield(String(decoding: pending, as: UTF8.self)) }
        lines.finish()
        let waiters = shared.state.withLockedValue { state in
            state.outputEnded = true
            defer { state.outputWaiters = [:] }
            return Array(state.outputWaiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34 and later; Glibc's Swift module
    /// does not declare it), looked up once.
    private static let addCloseFrom:
        (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? = {
            guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np")
            else {
                return nil
            }
            return unsafeBitCast(
                symbol,
                to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self
            )
        }()

    /// Closes every descriptor from `lowest` up in the child (nothing, on a glibc without it).
    private static func closeFrom(_ lowest: Int32, in actions: inout posix_spawn_file_actions_t) {
        if let addCloseFrom = Self.addCloseFrom {
            _ = addCloseFrom(&actions, lowest)
        }
    }
}
