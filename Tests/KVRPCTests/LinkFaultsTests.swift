import NIOCore
import NIOEmbedded
import Testing

@testable import KVRPC

/// `LinkFaults`, the test-only delay and loss on a node's links: the rules file, and the handler that
/// holds writes in order.
struct LinkFaultsTests {
    /// An embedded channel "connected" to 10.0.0.2 whose writes go through a `LinkFaultHandler` of
    /// `faults`, with every peer's rule `rule`.
    func channel(_ faults: LinkFaults = LinkFaults(), rule: LinkFaults.Rule) throws -> EmbeddedChannel {
        faults.set(["*": rule])
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(LinkFaultHandler(faults: faults))
        try channel.connect(to: try SocketAddress(ipAddress: "10.0.0.2", port: 1)).wait()
        return channel
    }

    @Test func rulesFileParsesAddressesDelaysAndLoss() throws {
        let rules = try LinkFaults.parse(
            """
            # host 2 is far away
            10.77.0.12 60 1.5
            * 5   # everyone else

            10.77.0.12 70
            """)
        #expect(rules["10.77.0.12"] == LinkFaults.Rule(delay: .milliseconds(70)))
        #expect(rules["*"] == LinkFaults.Rule(delay: .milliseconds(5)))
        #expect(try LinkFaults.parse("").isEmpty)
    }

    @Test(arguments: ["10.0.0.1", "10.0.0.1 x", "10.0.0.1 -5", "10.0.0.1 60001", "* 5 101", "* 5 nan", "* 5 1 2"])
    func aMalformedRuleIsRefusedWithItsLine(_ line: String) {
        #expect(throws: LinkFaultsError.self) { try LinkFaults.parse("* 1\n\(line)") }
        do {
            _ = try LinkFaults.parse("* 1\n\(line)")
        } catch {
            #expect(error.line == 2)
        }
    }

    @Test func rulesMatchThePeersAddressOrTheWildcard() throws {
        let faults = LinkFaults()
        faults.set([
            "10.0.0.2": LinkFaults.Rule(delay: .milliseconds(9)), "*": LinkFaults.Rule(delay: .milliseconds(1)),
        ])
        #expect(faults.rule(for: try SocketAddress(ipAddress: "10.0.0.2", port: 1))?.delay == .milliseconds(9))
        #expect(faults.rule(for: try SocketAddress(ipAddress: "10.0.0.3", port: 1))?.delay == .milliseconds(1))
        faults.set([:])
        #expect(faults.rule(for: try SocketAddress(ipAddress: "10.0.0.2", port: 1)) == nil)
    }

    @Test func writesAreHeldForTheDelayAndKeepTheirOrder() throws {
        let faults = LinkFaults()
        let channel = try channel(faults, rule: LinkFaults.Rule(delay: .milliseconds(50)))
        let first = channel.writeAndFlush(ByteBuffer(string: "one"))
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(20))
        faults.set([:])
        // No rule any more, but an earlier write is still held: this one waits behind it.
        let second = channel.writeAndFlush(ByteBuffer(string: "two"))
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(29))
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        #expect(try channel.readOutbound(as: ByteBuffer.self) == ByteBuffer(string: "one"))
        #expect(try channel.readOutbound(as: ByteBuffer.self) == ByteBuffer(string: "two"))
        try first.wait()
        try second.wait()
        // Nothing held and no rule: straight through.
        channel.writeAndFlush(ByteBuffer(string: "three"), promise: nil)
        #expect(try channel.readOutbound(as: ByteBuffer.self) == ByteBuffer(string: "three"))
        _ = try channel.finish()
    }

    @Test func heldWritesFailWhenTheChannelCloses() throws {
        let channel = try channel(rule: LinkFaults.Rule(delay: .seconds(5)))
        let held = channel.writeAndFlush(ByteBuffer(string: "late"))
        _ = try channel.finish(acceptAlreadyClosed: true)
        #expect(throws: (any Error).self) { try held.wait() }
    }

    @Test func aLossIsARetransmissionLater() throws {
        let channel = try channel(rule: LinkFaults.Rule(delay: .milliseconds(10), lossPercent: 100))
        channel.writeAndFlush(ByteBuffer(string: "lost"), promise: nil)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(209))
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        #expect(try channel.readOutbound(as: ByteBuffer.self) == ByteBuffer(string: "lost"))
        _ = try channel.finish()
    }
}
