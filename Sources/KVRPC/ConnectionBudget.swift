import KVCore
import KVWire
import NIOCore
import Synchronization

/// What one server connection has in flight (frames received and not read by its task yet, requests
/// read and not answered yet, and the bytes of their frames; large answers not yet taken by the
/// network), shared by the task that reads requests, the tasks that answer them, the `FrameWriter`
/// that sends the answers, and the `ConnectionGuardHandler` that closes idle connections.
final class ConnectionBudget: OutboundFrameBudget {
    /// Whether a request may go on, and if not, which bound it hit.
    enum Admission: Equatable {
        case admitted
        case tooManyRequests
        case tooManyBytes
        /// Past the bytes the whole server may have in flight (`ServerInFlightBytes`).
        case tooManyServerBytes
    }

    private struct State {
        /// Whole frames the guard passed on, and frames the connection's task read.
        var framesArrived = 0
        var framesTaken = 0
        var requests = 0
        var bytes = 0
        /// Bytes of large answers written and not yet taken by the network.
        var answerBytes = 0
        /// When the last answer was sent (or its request given up); nil: none yet.
        var lastReleased: NIODeadline?
    }

    private let requestsMax: Int
    private let bytesMax: Int
    private let server: ServerInFlightBytes
    private let refused: @Sendable (RPCRefusal) -> Void
    private let state = Mutex(State())

    /// - Parameter refused: counts a large answer refused for the connection's or the server's bytes.
    init(
        requestsMax: Int, bytesMax: Int, server: ServerInFlightBytes,
        refused: @escaping @Sendable (RPCRefusal) -> Void = { _ in }
    ) {
        self.requestsMax = requestsMax
        self.bytesMax = bytesMax
        self.server = server
        self.refused = refused
    }

    /// Counts one more request of `bytes` (its whole frame), unless `requestsMax` requests are in
    /// flight already, or its bytes would take the connection's sum past `bytesMax` or the server's
    /// past its own bound. A request alone (on the connection, or on the server) is always admitted
    /// by bytes, so a frame larger than the budget is still served, one at a time.
    func admit(bytes: Int) -> Admission {
        state.withLock { state in
            guard state.requests < requestsMax else { return .tooManyRequests }
            guard state.requests == 0 || state.bytes + bytes <= bytesMax else { return .tooManyBytes }
            guard server.admit(bytes: bytes) else { return .tooManyServerBytes }
            state.requests += 1
            state.bytes += bytes
            return .admitted
        }
    }

    /// A request admitted with `bytes` was answered (or given up).
    func release(bytes: Int) {
        let now = NIODeadline.now()
        server.release(bytes: bytes)
        state.withLock { state in
            state.requests -= 1
            state.bytes -= bytes
            state.lastReleased = now
        }
    }

    /// Counts a large answer of `bytes` until the network has taken it, unless it would take the
    /// connection's bytes in flight (requests and answers) past `bytesMax` or the server's past its
    /// bound. An answer is always admitted by the connection when it holds no other, and by the server
    /// when nothing else is in flight.
    func admitOutbound(bytes: Int) -> Bool {
        let refusal: RPCRefusal? = state.withLock { state in
            guard state.answerBytes == 0 || state.bytes + state.answerBytes + bytes <= bytesMax else {
                return .inFlightBytes
            }
            guard server.admit(bytes: bytes) else { return .serverInFlightBytes }
            state.answerBytes += bytes
            return nil
        }
        guard let refusal else { return true }
        refused(refusal)
        return false
    }

    func releaseOutbound(bytes: Int) {
        server.release(bytes: bytes)
        state.withLock { $0.answerBytes -= bytes }
    }

    func outboundRefusal(bytes: Int) -> String {
        "an answer of \(bytes) bytes would take this connection past \(bytesMax) bytes in flight, or this node "
            + "past \(server.bytesMax), with the answers its peer has not read yet"
    }

    /// `count` whole frames arrived (the guard, on the event loop).
    func framesArrived(_ count: Int) {
        state.withLock { $0.framesArrived += count }
    }

    /// The connection's task read one frame.
    func frameTaken() {
        state.withLock { $0.framesTaken += 1 }
    }

    /// Whether anything is in flight now (a frame not read yet, or a request not answered), and when
    /// the last request ended.
    var activity: (busy: Bool, lastReleased: NIODeadline?) {
        state.withLock { ($0.requests > 0 || $0.framesTaken < $0.framesArrived, $0.lastReleased) }
    }
}

/// Bytes in flight over all of a server's connections (request frames read and not answered yet, large
/// answers not yet taken by the network: `RPCServerConfiguration.inFlightBytesServerMax`): each
/// connection's own budget bounds one connection, this bounds them all, so that many connections
/// cannot together hold the node's memory.
final class ServerInFlightBytes: Sendable {
    let bytesMax: Int
    private let bytes = Atomic<Int>(0)

    init(bytesMax: Int) {
        self.bytesMax = bytesMax
    }

    /// Counts `bytes` more unless they would take the sum past `bytesMax`; a request is always admitted
    /// when nothing else is in flight.
    func admit(bytes count: Int) -> Bool {
        let total = bytes.wrappingAdd(count, ordering: .relaxed).newValue
        if total - count == 0 || total <= bytesMax { return true }
        bytes.wrappingSubtract(count, ordering: .relaxed)
        return false
    }

    /// Gives back `count` bytes admitted earlier.
    func release(bytes count: Int) {
        bytes.wrappingSubtract(count, ordering: .relaxed)
    }

    /// Bytes in flight now.
    var inFlight: Int { bytes.load(ordering: .relaxed) }
}
