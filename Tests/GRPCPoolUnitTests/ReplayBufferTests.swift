import GRPCCore
import Testing

@testable import GRPCPool

@Suite("A streaming RPC's replay buffer (the pool's stream retries)")
struct ReplayBufferTests {
    static let metadata = RPCRequestPart<[UInt8]>.metadata(["k": "v"])
    static func message(_ bytes: Int, _ value: UInt8 = 1) -> RPCRequestPart<[UInt8]> {
        .message([UInt8](repeating: value, count: bytes))
    }

    @Test("Before a response, every part is kept and the writer sends it")
    func keepsUntilCommitted() {
        var buffer = ReplayBuffer()
        let keep15 = buffer.keep(Self.metadata)
        #expect(!keep15)
        let keep17 = buffer.keep(Self.message(3))
        #expect(!keep17)
        #expect(buffer.parts == [Self.metadata, Self.message(3)])
        #expect(buffer.bytes == 3)
        let endRequest21 = buffer.endRequest()
        #expect(!endRequest21, "the writer half-closes the current attempt")
    }

    @Test("The first response part commits: the parts are dropped, later ones not kept, no replay")
    func commitDrops() {
        var buffer = ReplayBuffer()
        _ = buffer.keep(Self.metadata)
        buffer.commit()
        #expect(buffer.parts.isEmpty && buffer.bytes == 0)
        let keep31 = buffer.keep(Self.message(3))
        #expect(!keep31)
        #expect(buffer.parts.isEmpty)
        let startReplay34 = buffer.startReplay()
        #expect(!startReplay34)
    }

    @Test("Past the limit the RPC commits: nothing is kept and no retry follows")
    func overflowCommits() {
        var buffer = ReplayBuffer(limit: 4)
        _ = buffer.keep(Self.metadata)
        let keep42 = buffer.keep(Self.message(4))
        #expect(!keep42)
        #expect(!buffer.committed)
        let keep45 = buffer.keep(Self.message(1))
        #expect(!keep45)
        #expect(buffer.committed)
        #expect(buffer.parts.isEmpty)
        let startReplay49 = buffer.startReplay()
        #expect(!startReplay49)
    }

    @Test("A replay sends the kept parts in order, then those written meanwhile, then hands over")
    func replayInOrder() {
        var buffer = ReplayBuffer()
        _ = buffer.keep(Self.metadata)
        _ = buffer.keep(Self.message(1, 1))
        let startReplay58 = buffer.startReplay()
        #expect(startReplay58)
        let nextReplayStep60 = buffer.nextReplayStep()
        #expect(nextReplayStep60 == .send(Self.metadata))
        let keep62 = buffer.keep(Self.message(1, 2))
        #expect(keep62, "written during the replay: the replay sends it")
        let nextReplayStep64 = buffer.nextReplayStep() == .send(Self.message(1, 1))
        #expect(nextReplayStep64)
        let nextReplayStep66 = buffer.nextReplayStep() == .send(Self.message(1, 2))
        #expect(nextReplayStep66)
        let nextReplayStep68 = buffer.nextReplayStep()
        #expect(nextReplayStep68 == .done)
        #expect(!buffer.replaying)
        let keep71 = buffer.keep(Self.message(1, 3))
        #expect(!keep71, "after the replay the writer sends again")
        #expect(buffer.parts.count == 4, "still kept: a second refusal replays them all")
    }

    @Test("A request that ends during a replay is half-closed by the replay, after its parts")
    func endDuringReplay() {
        var buffer = ReplayBuffer()
        _ = buffer.keep(Self.metadata)
        let startReplay80 = buffer.startReplay()
        #expect(startReplay80)
        let endRequest82 = buffer.endRequest()
        #expect(endRequest82, "the replay half-closes")
        let nextReplayStep84 = buffer.nextReplayStep()
        #expect(nextReplayStep84 == .send(Self.metadata))
        let nextReplayStep86 = buffer.nextReplayStep()
        #expect(nextReplayStep86 == .finish)
    }

    @Test("A request that ended before the refusal is half-closed again on the next attempt")
    func endedBeforeReplay() {
        var buffer = ReplayBuffer()
        _ = buffer.keep(Self.metadata)
        _ = buffer.keep(Self.message(2))
        let endRequest95 = buffer.endRequest()
        #expect(!endRequest95)
        let startReplay97 = buffer.startReplay()
        #expect(startReplay97)
        let nextReplayStep99 = buffer.nextReplayStep()
        #expect(nextReplayStep99 == .send(Self.metadata))
        let nextReplayStep101 = buffer.nextReplayStep()
        #expect(nextReplayStep101 == .send(Self.message(2)))
        let nextReplayStep103 = buffer.nextReplayStep()
        #expect(nextReplayStep103 == .finish)
    }

    @Test("A commit during a replay lets it finish, then drops the parts")
    func commitDuringReplay() {
        var buffer = ReplayBuffer()
        _ = buffer.keep(Self.metadata)
        _ = buffer.keep(Self.message(1))
        let startReplay112 = buffer.startReplay()
        #expect(startReplay112)
        let nextReplayStep114 = buffer.nextReplayStep()
        #expect(nextReplayStep114 == .send(Self.metadata))
        buffer.commit()
        let keep117 = buffer.keep(Self.message(1, 9))
        #expect(keep117, "still the replay's to send, in order")
        let nextReplayStep119 = buffer.nextReplayStep()
        #expect(nextReplayStep119 == .send(Self.message(1)))
        let nextReplayStep121 = buffer.nextReplayStep() == .send(Self.message(1, 9))
        #expect(nextReplayStep121)
        let nextReplayStep123 = buffer.nextReplayStep()
        #expect(nextReplayStep123 == .done)
        #expect(buffer.parts.isEmpty)
    }
}
