import KVCore
import KVTLS
import KVWire
import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import KVRPC

/// The bounds over all of a server's connections: frames being received (`receivingBytesMax`) and
/// requests in flight (`inFlightBytesServerMax`). Before them, 40 connections each sending all but the
/// last bytes of a 16 MiB `Put` took a node from 97 MB to 848 MB until their deadlines.
@Suite(.timeLimit(.minutes(2)))
struct ServerMemoryTests {
    /// Large frames past the server's receive memory wait their turn, first come first served, and
    /// their connections read nothing more meanwhile; small requests go on.
    @Test func aFramePastTheReceiveMemoryIsNotReadUntilTheFramesAheadOfItEnd() async throws {
        let frameBytes = 700 << 10
        try await withLimitedServer({ $0.receivingBytesMax = 1 << 20 }) { server in
            // Two peers send all but the end of a large Put, and stop: the first has room, the second waits.
            let (first, _) = try await partialPut(to: server, valueBytes: frameBytes, sendingAllBut: 1000)
            defer { first.close(promise: nil) }
            #expect(try await eventually { server.memory.usage.reserved > frameBytes })
            let (second, _) = try await partialPut(to: server, valueBytes: frameBytes, sendingAllBut: 1000)
            defer { second.close(promise: nil) }
            #expect(try await eventually { server.memory.usage.waiting == 1 })
            // A third sends a whole one, behind both.
            let (third, thirdFrames) = try await partialPut(to: server, valueBytes: frameBytes, sendingAllBut: 1000)
            defer { third.close(promise: nil) }
            #expect(try await eventually { server.memory.usage.waiting == 2 })
            try await third.writeAndFlush(lastBytes(valueBytes: frameBytes, last: 1000))

            let good = try await limitsConnect(to: server)
            defer { good.startClosing() }
            try await expectPing(good)

            // The first goes: the second has room, the third still waits, its last bytes unread.
            try await first.close()
            let frameLength = putFrame(valueBytes: frameBytes).readableBytes
            #expect(try await eventually { server.memory.usage == (frameLength, 1) }, "\(server.memory.usage)")
            #expect(try thirdFrames.frames.allSatisfy { try Message(frame: $0).type != .putResponse })
            try await second.close()
            await thirdFrames.waitForFrames(2)
            let answers = try thirdFrames.frames.map { try Message(frame: $0) }
            #expect(answers.count == 2 && answers.last?.type == .putResponse, "\(answers)")
            #expect(server.statistics.refusedCount(.receiveMemory) == 2)
            #expect(try await eventually { server.memory.usage == (0, 0) })
        }
    }

    /// A frame's deadline runs from when it got room: one queued behind two slowloris frames (each
    /// closed at its own deadline) is received and answered, not closed, though it waited for about
    /// twice the deadline (on a machine slow enough to take longer than a deadline to open the three
    /// connections, it waits less, and the test shows less).
    @Test func aWaitingFramesDeadlineStartsWhenItHasRoom() async throws {
        let frameBytes = 700 << 10
        try await withLimitedServer({
            $0.receivingBytesMax = 1 << 20
            $0.frameReadDeadline = .seconds(3)
        }) { server in
            let (first, _) = try await partialPut(to: server, valueBytes: frameBytes, sendingAllBut: 1000)
            defer { first.close(promise: nil) }
            let (second, _) = try await partialPut(to: server, valueBytes: frameBytes, sendingAllBut: 1000)
            defer { second.close(promise: nil) }
            let (third, thirdFrames) = try await partialPut(to: server, valueBytes: frameBytes, sendingAllBut: 1000)
            defer { third.close(promise: nil) }
            try await third.writeAndFlush(lastBytes(valueBytes: frameBytes, last: 1000))

            await thirdFrames.waitForFrames(2)
            let answers = try thirdFrames.frames.map { try Message(frame: $0) }
            #expect(answers.count == 2 && answers.last?.type == .putResponse, "\(answers)")
            #expect(try await closes(first, within: .seconds(30)))
            #expect(try await closes(second, within: .seconds(30)))
            #expect(server.statistics.refusedCount(.frameDeadline) == 2)
            #expect(try await eventually { server.memory.usage == (0, 0) })
        }
    }

    /// A frame larger than the whole receive memory is still received when it is alone.
    @Test func aFrameLargerThanTheReceiveMemoryIsReceivedAlone() async throws {
        try await withLimitedServer({ $0.receivingBytesMax = 256 << 10 }) { server in
            let connection = try await limitsConnect(to: server)
            defer { connection.startClosing() }
            let answer = try await connection.call(.putRequest(put(valueBytes: 1 << 20)), timeout: .seconds(30))
            #expect(answer.type == .putResponse)
            #expect(server.statistics.refusedCount(.receiveMemory) == 0)
            #expect(try await eventually { server.memory.usage == (0, 0) })
        }
    }

    /// A peer that sends many reads of a large value and reads none of the answers: a node held every
    /// answer (200 reads of an 8 MB value took a node from 83 MB to 3.1 GB). Large answers now count
    /// in the connection's bytes in flight from the moment they exist until the network took them;
    /// past the bound they are answered `overloaded` instead, and every request is still answered,
    /// whether the service answered it on the event loop or from a task.
    @Test(arguments: [false, true])
    func answersAPeerDoesNotReadAreBoundedAndEveryRequestIsAnswered(onEventLoop: Bool) async throws {
        let connectionBytes = 2 << 20
        let requests = 400
        try await withLimitedServer(
            { $0.inFlightBytesMax = connectionBytes }, service: LargeAnswerService(onEventLoop: onEventLoop)
        ) { server in
            let collector = FrameCollector()
            let channel = try await unreadingConnection(to: server, collector: collector)
            defer { channel.close(promise: nil) }
            try await sendLargeReads(requests, over: channel, collector: collector)
            // 100 MiB of answers: the socket buffers take a few, the node holds at most its bound and
            // one answer more, and refuses the others.
            #expect(try await eventually { server.statistics.refusedCount(.inFlightBytes) > requests / 2 })
            #expect(server.inFlight.inFlight <= connectionBytes + LargeAnswerService.answerBytes)

            try await channel.setOption(.autoRead, value: true).get()
            channel.read()
            await collector.waitForFrames(2 + requests)
            let answers = try collector.frames.dropFirst(2).map { try Message(frame: $0) }
            let refused = answers.filter {
                if case .error(let error) = $0 { return error.code == .overloaded }
                return false
            }
            #expect(answers.count == requests)
            #expect(refused.count + answers.filter { $0.type == .getResponse }.count == requests)
            #expect(refused.count == server.statistics.refusedCount(.inFlightBytes))
            #expect(try await eventually { server.inFlight.inFlight == 0 })
        }
    }

    /// A peer that takes none of its answers for `unreadAnswersDeadline` is closed (`answers_unread`),
    /// and what its answers held is given back: before, a connection whose peer stopped reading kept
    /// its answers in the node until it went idle, which a connection with answers in flight never
    /// does. One that reads them slowly, a little at a time, is not closed.
    @Test func aPeerThatTakesNoAnswersIsClosedAndOneThatReadsSlowlyIsNot() async throws {
        let requests = 200
        try await withLimitedServer(
            { $0.unreadAnswersDeadline = .seconds(3) }, service: LargeAnswerService(onEventLoop: true)
        ) { server in
            let collector = FrameCollector()
            let channel = try await unreadingConnection(to: server, collector: collector)
            defer { channel.close(promise: nil) }
            try await sendLargeReads(requests, over: channel, collector: collector)
            // A socket read every 100 ms for twice the deadline (50 MiB of answers in all).
            let slowlyUntil = ContinuousClock.now + .seconds(6)
            while ContinuousClock.now < slowlyUntil {
                channel.read()
                try await Task.sleep(for: .milliseconds(100))
            }
            let read = collector.frames.count - 2
            #expect(server.statistics.refusedCount(.answersUnread) == 0)
            #expect(read > 0 && read < requests, "\(read) answers read: the peer was still reading them")
            // Then nothing more.
            #expect(try await eventually { server.statistics.refusedCount(.answersUnread) == 1 })
            #expect(try await eventually { server.inFlight.inFlight == 0 })
            try await channel.setOption(.autoRead, value: true).get()
            channel.read()
            #expect(try await closes(channel, within: .seconds(30)))
            #expect(collector.frames.count - 2 < requests)
            let other = try await limitsConnect(to: server)
            defer { other.startClosing() }
            try await expectPing(other)
        }
    }

    /// A connection's requests answered from tasks run at most `requestTasksPerConnectionMax` at once:
    /// the next waits, unread, so that the storage threads cannot produce answers faster than they are
    /// counted (a thousand reads of an 8 MB value in one write took a release node to 3.8 GB; 0.66 GB
    /// with the bound).
    @Test func aConnectionsRequestsRunAFewTasksAtATime() async throws {
        let service = GatedService()
        let slots = Limits.requestTasksPerConnectionMax
        try await withLimitedServer({ _ in }, service: service) { server in
            // Raw frames: the client would carry the writes of one flush in one `PutBatch`.
            let collector = FrameCollector()
            let connection = try await limitsRawConnection(to: server, collector: collector)
            defer { connection.close(promise: nil) }
            var bytes = ByteBuffer()
            bytes.writeFrame(.hello(hello()), requestID: 1)
            for id in 0..<(slots + 8) { bytes.writeFrame(.putRequest(put(valueBytes: 10)), requestID: UInt64(id + 2)) }
            try await connection.writeAndFlush(bytes)
            #expect(try await eventually { service.arrived == slots })
            // Another connection is served meanwhile; the first one's remaining requests still wait.
            let other = try await limitsConnect(to: server)
            defer { other.startClosing() }
            try await expectPing(other)
            #expect(service.arrived == slots)
            service.open()
            await collector.waitForFrames(1 + slots + 8)
            let answers = try collector.frames.dropFirst().map { try Message(frame: $0).type }
            #expect(answers == Array(repeating: .putResponse, count: slots + 8))
            #expect(service.arrived == slots + 8)
        }
    }

    @Test func receiveMemoryGrantsInOrderAndLetsAFrameAloneIn() {
        let memory = ReceiveMemory(bytesMax: 100)
        let granted = GrantLog()
        #expect(memory.reserve(60, granted: granted.record) == .granted)
        #expect(memory.reserve(60, granted: granted.record) == .waiting(id: 1))
        // A small one behind a waiting one waits too: first come, first served.
        #expect(memory.reserve(10, granted: granted.record) == .waiting(id: 2))
        memory.release(60)
        #expect(granted.ids == [1, 2])
        #expect(memory.usage == (70, 0))
        // Past the bound, but alone: granted once the others leave.
        #expect(memory.reserve(500, granted: granted.record) == .waiting(id: 3))
        #expect(memory.cancel(id: 3))
        #expect(!memory.cancel(id: 3))
        #expect(memory.reserve(500, granted: granted.record) == .waiting(id: 4))
        memory.release(60)
        #expect(granted.ids == [1, 2])
        memory.release(10)
        #expect(granted.ids == [1, 2, 4])
        #expect(!memory.cancel(id: 4), "granted already: its bytes are the caller's to release")
        memory.release(500)
        #expect(memory.usage == (0, 0))
    }
}

private final class GrantLog: Sendable {
    private let state = Mutex<[Int]>([])
    var ids: [Int] { state.withLock { $0 } }
    var record: @Sendable (Int) -> Void { { id in self.state.withLock { $0.append(id) } } }
}

/// A TLS connection that sends `Hello` and a `Put` of `valueBytes` without its last `sendingAllBut`
/// bytes.
private func partialPut(
    to server: RPCServer, valueBytes: Int, sendingAllBut missing: Int
) async throws -> (any Channel, FrameCollector) {
    let collector = FrameCollector()
    let channel = try await limitsRawConnection(to: server, collector: collector)
    var bytes = ByteBuffer()
    bytes.writeFrame(.hello(hello()), requestID: 1)
    let frame = putFrame(valueBytes: valueBytes)
    bytes.writeImmutableBuffer(frame.getSlice(at: 0, length: frame.readableBytes - missing) ?? ByteBuffer())
    try await channel.writeAndFlush(bytes)
    return (channel, collector)
}

/// The last `last` bytes of the frame `partialPut` sends.
private func lastBytes(valueBytes: Int, last: Int) -> ByteBuffer {
    let frame = putFrame(valueBytes: valueBytes)
    return frame.getSlice(at: frame.readableBytes - last, length: last) ?? ByteBuffer()
}

private func putFrame(valueBytes: Int) -> ByteBuffer {
    var frame = ByteBuffer()
    frame.writeFrame(.putRequest(put(valueBytes: valueBytes)), requestID: 2)
    return frame
}

/// A TLS connection that reads nothing until told to, collecting what it reads.
private func unreadingConnection(to server: RPCServer, collector: FrameCollector) async throws -> any Channel {
    let channel = try await limitsRawConnection(to: server, collector: collector, autoRead: false)
    // Reads the handshake's bytes, then stops.
    channel.read()
    return channel
}

/// Sends `Hello` and a `Ping` and reads their answers, then `count` reads of `LargeAnswerService`'s
/// value, reading nothing more.
private func sendLargeReads(_ count: Int, over channel: any Channel, collector: FrameCollector) async throws {
    var opening = ByteBuffer()
    opening.writeFrame(.hello(hello()), requestID: 1)
    opening.writeFrame(.pingRequest(PingRequest(epoch: 0, clock: 1)), requestID: 2)
    try await channel.setOption(.autoRead, value: true).get()
    try await channel.writeAndFlush(opening)
    await collector.waitForFrames(2)
    try await channel.setOption(.autoRead, value: false).get()
    var bytes = ByteBuffer()
    for id in 0..<count {
        bytes.writeFrame(
            .getRequest(GetRequest(key: ByteBuffer(string: "large"), keyspace: 0)), requestID: UInt64(id + 3))
    }
    try await channel.writeAndFlush(bytes)
}

/// Answers every `Get` with a record of `answerBytes`, on the event loop or from a task.
private struct LargeAnswerService: RPCService {
    static let answerBytes = 256 << 10
    let onEventLoop: Bool

    private var answer: Message {
        .getResponse(
            GetResponse(
                record: Record(
                    key: ByteBuffer(string: "large"), version: Version(hlc: 1, writer: 1), tombstone: false,
                    value: ByteBuffer(repeating: 7, count: Self.answerBytes), expiresAtMillis: nil),
                clock: 1))
    }

    func handshakeState() -> (epoch: UInt64, clock: UInt64) { (7, 42) }

    func mayAnswerWithoutTask(_ type: MessageType) -> Bool { onEventLoop && type == .getRequest }

    func answerWithoutTask(
        _ request: Message, from peer: PeerIdentity, reply: @escaping @Sendable (Result<Message, any Error>) -> Void
    ) -> Bool {
        reply(.success(answer))
        return true
    }

    func handle(_ request: Message, from peer: PeerIdentity) async throws -> Message {
        guard case .getRequest = request else { return try await EchoService().handle(request, from: peer) }
        return answer
    }
}
