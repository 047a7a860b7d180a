import KVCore
public import NIOCore
import Synchronization

/// Delay and loss on this process's links, for tests of several hosts on one machine, where the
/// kernel has no `sch_netem` (so no `tc netem`) and there is no iptables.
///
/// Off, and absent from every pipeline, unless a test arms it before the first connection: `kvd`
/// does when `QUORUMKV_LINK_FAULTS` names a rules file (`scripts/netns-cluster.sh delay`). Armed,
/// every RPC connection (dialled or accepted) gets a ``LinkFaultHandler`` below TLS, which holds each
/// write for the delay of the rule matching the peer's IP address.
///
/// Loss is emulated as TCP experiences it: a byte stream loses nothing, but a lost segment costs its
/// sender a retransmission timeout. A write "lost" with the rule's probability is held a further
/// ``retransmissionDelay`` (Linux's minimum RTO), and the writes after it wait behind it, in order.
public final class LinkFaults: Sendable {
    /// What happens to writes towards one peer.
    public struct Rule: Sendable, Hashable {
        /// How long each write is held.
        public var delay: Duration
        /// The chance, in percent (0...100), that a write is "lost" and held a retransmission longer.
        public var lossPercent: Double

        public init(delay: Duration, lossPercent: Double = 0) {
            self.delay = delay
            self.lossPercent = lossPercent
        }

        /// Whether the rule changes nothing.
        var isNone: Bool { delay <= .zero && lossPercent <= 0 }
    }

    /// The extra hold of a write that is "lost": Linux's minimum retransmission timeout.
    public static let retransmissionDelay: Duration = .milliseconds(200)
    /// The longest delay a rule may ask for.
    public static let delayMax: Duration = .seconds(60)

    /// The faults of this process.
    public static let process = LinkFaults()

    private struct State {
        var armed = false
        /// Rules by peer IP address; `*` for every peer without its own rule.
        var rules: [String: Rule] = [:]
    }

    private let state = Mutex(State())

    public init() {}

    /// Puts the fault layer in every RPC pipeline made from now on (with no rules, it holds nothing).
    public func arm() {
        state.withLock { $0.armed = true }
    }

    /// Whether pipelines get the fault layer.
    public var isArmed: Bool { state.withLock { $0.armed } }

    /// Replaces the rules.
    public func set(_ rules: [String: Rule]) {
        state.withLock { $0.rules = rules }
    }

    /// The rule for writes to `address`: its IP's own, else `*`'s, else none.
    public func rule(for address: SocketAddress?) -> Rule? {
        let ip = address?.ipAddress
        return state.withLock { state in
            ip.flatMap { state.rules[$0] } ?? state.rules["*"]
        }
    }

    /// Parses a rules file: one rule per line, `ADDRESS DELAY_MS [LOSS_PERCENT]`, where ADDRESS is a
    /// peer's IP address or `*` (every other peer); `#` starts a comment. A later line for the same
    /// address replaces an earlier one.
    ///
    /// - Throws: ``LinkFaultsError`` naming the first line that is not a rule, or whose delay is over
    ///   ``delayMax`` or whose loss is not 0...100.
    public static func parse(_ text: String) throws(LinkFaultsError) -> [String: Rule] {
        var rules: [String: Rule] = [:]
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if fields.isEmpty { continue }
            guard fields.count == 2 || fields.count == 3,
                let millis = UInt64(fields[1]), millis <= UInt64(delayMax.wholeMillisecondsClamped)
            else {
                throw LinkFaultsError(
                    line: index + 1, reason: "expected 'ADDRESS DELAY_MS [LOSS_PERCENT]', the delay at most 60000")
            }
            var loss = 0.0
            if fields.count == 3 {
                guard let value = Double(fields[2]), value.isFinite, (0...100).contains(value) else {
                    throw LinkFaultsError(line: index + 1, reason: "the loss must be a percentage, 0...100")
                }
                loss = value
            }
            rules[String(fields[0])] = Rule(delay: .milliseconds(Int64(millis)), lossPercent: loss)
        }
        return rules
    }
}

/// A rules file that is not one (``LinkFaults/parse(_:)``).
public struct LinkFaultsError: Error, Hashable, CustomStringConvertible {
    public var line: Int
    public var reason: String

    public var description: String { "link faults, line \(line): \(reason)" }
}

/// Holds each outbound write for the delay of ``LinkFaults``' rule for the peer, keeping their order;
/// the first handler of the pipeline, so what it holds is the TLS records as they go to the socket.
final class LinkFaultHandler: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let faults: LinkFaults
    /// Writes held, oldest first, each with its task; a write is released no earlier than the one
    /// before it.
    private var held: [(data: NIOAny, promise: EventLoopPromise<Void>?, task: Scheduled<Void>?)] = []
    private var lastRelease: NIODeadline = .uptimeNanoseconds(0)

    init(faults: LinkFaults) {
        self.faults = faults
    }

    /// Adds the handler at the front of `channel`'s pipeline when the process's faults are armed.
    static func install(on channel: any Channel, faults: LinkFaults = .process) throws {
        guard faults.isArmed else { return }
        try channel.pipeline.syncOperations.addHandler(LinkFaultHandler(faults: faults), position: .first)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let rule = faults.rule(for: context.channel.remoteAddress) ?? LinkFaults.Rule(delay: .zero)
        if rule.isNone && held.isEmpty {
            context.write(data, promise: promise)
            return
        }
        var delay = rule.delay
        if rule.lossPercent > 0, Double.random(in: 0..<100) < rule.lossPercent {
            delay += LinkFaults.retransmissionDelay
        }
        let release = max(context.eventLoop.now + TimeAmount(delay), lastRelease)
        lastRelease = release
        held.append((data, promise, nil))
        let position = held.count - 1
        let loopBound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
        // Release times never decrease, so each task releases the oldest write held (its own, or an
        // earlier one whose task has not run yet): the stream keeps its order whatever order tasks of
        // equal deadlines run in.
        held[position].task = context.eventLoop.scheduleTask(deadline: release) {
            let (handler, context) = loopBound.value
            guard !handler.held.isEmpty else { return }
            let (data, promise, _) = handler.held.removeFirst()
            context.writeAndFlush(data, promise: promise)
        }
    }

    func flush(context: ChannelHandlerContext) {
        // Held writes flush themselves when they are released.
        if held.isEmpty {
            context.flush()
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        let pending = held
        held.removeAll()
        for (_, promise, task) in pending {
            task?.cancel()
            promise?.fail(ChannelError.ioOnClosedChannel)
        }
    }
}
