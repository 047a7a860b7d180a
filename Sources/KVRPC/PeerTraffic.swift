import KVCore
public import KVTLS
import NIOCore
import Synchronization

/// The bytes this process's RPC connections moved on their sockets (TLS records, handshakes
/// included), by peer: a node's id for a connection with another node, dialled or accepted,
/// ``clientLabel`` for clients and admins, ``unidentifiedLabel`` for connections that closed before
/// the peer was known (a failed handshake).
///
/// The hot path is one relaxed atomic add per socket read or write, on the connection's own
/// ``ConnectionTraffic``; the table's lock is taken only when a connection opens, learns its peer, or
/// closes (its bytes then move to the peer's total), and when the totals are read.
///
/// Labels are bounded: past ``labelsMax`` distinct ones, further peers count as ``otherLabel``.
public final class PeerTraffic: Sendable {
    /// The label of client and admin connections (SDK applications, kvctl, kvbench).
    public static let clientLabel = "client"
    /// The label of connections closed before their peer was known.
    public static let unidentifiedLabel = "unidentified"
    /// The label of peers past ``labelsMax``.
    public static let otherLabel = "other"
    /// The most distinct labels kept.
    public static let labelsMax = 256

    /// Bytes sent and received.
    public struct Totals: Sendable, Hashable {
        public var sent: UInt64 = 0
        public var received: UInt64 = 0

        public init(sent: UInt64 = 0, received: UInt64 = 0) {
            self.sent = sent
            self.received = received
        }
    }

    private struct State {
        /// Open connections and the label each was bound to (nil until its peer is known).
        var open: [ObjectIdentifier: (label: String?, traffic: ConnectionTraffic)] = [:]
        /// The bytes of closed connections, by label.
        var closed: [String: Totals] = [:]
        /// Every label used, to bound them.
        var labels: Set<String> = []
    }

    private let state = Mutex(State())

    public init() {}

    /// The label for a verified peer: its node id, or ``clientLabel``.
    public static func label(for peer: PeerIdentity) -> String {
        peer.role == .node ? peer.name : clientLabel
    }

    /// Starts counting a new connection, not yet bound to a peer.
    func open() -> ConnectionTraffic {
        let traffic = ConnectionTraffic()
        state.withLock { $0.open[ObjectIdentifier(traffic)] = (nil, traffic) }
        return traffic
    }

    /// Binds `traffic` to `peer` (its bytes so far included); nothing once it closed.
    func identify(_ traffic: ConnectionTraffic, as peer: PeerIdentity) {
        let label = Self.label(for: peer)
        state.withLock { state in
            guard state.open[ObjectIdentifier(traffic)] != nil else { return }
            let bounded = Self.bounded(label, in: &state)
            state.open[ObjectIdentifier(traffic)]?.label = bounded
        }
    }

    /// Moves a closed connection's bytes to its label's total.
    func close(_ traffic: ConnectionTraffic) {
        state.withLock { state in
            guard let entry = state.open.removeValue(forKey: ObjectIdentifier(traffic)) else { return }
            let label = entry.label ?? Self.bounded(Self.unidentifiedLabel, in: &state)
            state.closed[label, default: Totals()].add(entry.traffic.totals)
        }
    }

    /// The bytes of every label so far, open connections included (those not yet bound to a peer are
    /// left out until they are, or close).
    public func totals() -> [String: Totals] {
        state.withLock { state in
            var totals = state.closed
            for (label, traffic) in state.open.values {
                guard let label else { continue }
                totals[label, default: Totals()].add(traffic.totals)
            }
            return totals
        }
    }

    /// `label`, or ``otherLabel`` when it is new and the labels are full.
    private static func bounded(_ label: String, in state: inout State) -> String {
        if state.labels.contains(label) { return label }
        if state.labels.count >= labelsMax - 1 && label != otherLabel {
            state.labels.insert(otherLabel)
            return otherLabel
        }
        state.labels.insert(label)
        return label
    }

    /// Counts `channel`'s socket bytes from now on (``attach(_:to:)`` of a new ``open()``).
    ///
    /// - Returns: the connection's counts, to bind to its peer once known (``identify(_:as:)``).
    func install(on channel: any Channel) throws -> ConnectionTraffic {
        let traffic = open()
        try attach(traffic, to: channel)
        return traffic
    }

    /// Puts a ``TrafficCountingHandler`` adding to `traffic` in front of `channel`'s pipeline, and
    /// moves the connection's bytes to its peer's total when it closes. Call on the channel's loop,
    /// after `LinkFaultHandler.install`: in front of it, held writes count when they leave.
    func attach(_ traffic: ConnectionTraffic, to channel: any Channel) throws {
        try channel.pipeline.syncOperations.addHandler(TrafficCountingHandler(traffic: traffic), position: .first)
        channel.closeFuture.whenComplete { _ in self.close(traffic) }
    }
}

extension PeerTraffic.Totals {
    mutating func add(_ other: Self) {
        sent &+= other.sent
        received &+= other.received
    }
}

/// The bytes one connection moved; its handler adds, the table reads.
final class ConnectionTraffic: Sendable {
    let sent = Atomic<UInt64>(0)
    let received = Atomic<UInt64>(0)

    var totals: PeerTraffic.Totals {
        PeerTraffic.Totals(sent: sent.load(ordering: .relaxed), received: received.load(ordering: .relaxed))
    }
}

/// Counts the bytes read from and written to the socket (the first handler of the pipeline, so what
/// it sees is TLS records); passes everything on unchanged.
final class TrafficCountingHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let traffic: ConnectionTraffic

    init(traffic: ConnectionTraffic) {
        self.traffic = traffic
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data).readableBytes
        traffic.received.wrappingAdd(UInt64(bytes), ordering: .relaxed)
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let bytes = unwrapOutboundIn(data).readableBytes
        traffic.sent.wrappingAdd(UInt64(bytes), ordering: .relaxed)
        context.write(data, promise: promise)
    }
}

@available(*, unavailable)
extension TrafficCountingHandler: Sendable {}
