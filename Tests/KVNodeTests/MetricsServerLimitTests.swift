import KVNode
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// The metrics port holds at most `MetricsServer.connectionsMax` connections: 300 idle sockets from
/// anyone who could reach it were all held (each a descriptor, to its handshake deadline). Past the
/// cap a new connection is closed at once; the closed ones give their room back.
@Suite(.timeLimit(.minutes(3)))
struct MetricsServerLimitTests {
    @Test func connectionsPastTheCapAreClosedAndClosedOnesGiveRoomBack() async throws {
        let server = try await MetricsServer.bind(host: "127.0.0.1", port: 0, tls: nil, render: { "up 1\n" })
        let port = try #require(server.localAddress.port)
        // One more than the cap, twice: the server closes one of them (the last it counts, which its
        // event loops decide), whichever it is; then, once every one is closed, the room is back.
        for round in 0..<2 {
            var opened: [any Channel] = []
            for _ in 0...MetricsServer.connectionsMax {
                opened.append(
                    try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                        .connect(host: "127.0.0.1", port: port).get())
            }
            // The first close the server makes (a task group would wait for every channel's close), or
            // -1 after 20 s.
            let closed: Int = await withCheckedContinuation { continuation in
                let told = Mutex(false)
                let tell = { @Sendable (index: Int) in
                    let first = told.withLock { told in
                        defer { told = true }
                        return !told
                    }
                    if first { continuation.resume(returning: index) }
                }
                for (index, channel) in opened.enumerated() {
                    channel.closeFuture.whenComplete { _ in tell(index) }
                }
                MultiThreadedEventLoopGroup.singleton.next().scheduleTask(in: .seconds(20)) { tell(-1) }
            }
            #expect(closed >= 0, "round \(round): no connection past the cap was closed")
            #expect(closed < 0 || !opened[closed].isActive, "round \(round)")
            #expect(server.connectionsOpen == MetricsServer.connectionsMax, "round \(round)")
            for channel in opened { try? await channel.close() }
            let deadline = ContinuousClock.now + .seconds(20)
            while server.connectionsOpen > 0 && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(server.connectionsOpen == 0, "round \(round): every close gives its room back")
        }
        await server.close()
    }
}
