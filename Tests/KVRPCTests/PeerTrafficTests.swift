import KVCore
import KVTLS
import KVWire
import Synchronization
import Testing

@testable import KVRPC

/// `PeerTraffic`: the socket bytes of dialled and accepted connections, by peer.
@Suite(.timeLimit(.minutes(2)))
struct PeerTrafficTests {
    /// What one side sent, the other received: the client counts under the server's node id, the
    /// server under `client`, and the counts stay after the connection closed.
    @Test func bothEndsCountTheSameBytesUnderTheirPeer() async throws {
        let serverTraffic = PeerTraffic()
        let clientTraffic = PeerTraffic()
        try await withTestServer(traffic: serverTraffic) { server in
            let connection = try await connect(to: server, nodeID: "n1", traffic: clientTraffic)
            for clock in 1...20 {
                _ = try await connection.call(
                    .pingRequest(PingRequest(epoch: 0, clock: UInt64(clock))), timeout: .seconds(10))
            }
            let open = clientTraffic.totals()["n1"] ?? PeerTraffic.Totals()
            // 20 pings and their answers, each a TLS record of more than 22 bytes.
            #expect(open.sent > 20 * 22 && open.received > 20 * 22, "\(open)")
            await connection.close()
            // The server sees the close when it reads the end of the stream: wait for it.
            let deadline = ContinuousClock.now + .seconds(30)
            while serverTraffic.totals()[PeerTraffic.clientLabel]?.received != clientTraffic.totals()["n1"]?.sent,
                ContinuousClock.now < deadline
            {
                try await Task.sleep(for: .milliseconds(20))
            }
            let client = try #require(clientTraffic.totals()["n1"])
            let server = try #require(serverTraffic.totals()[PeerTraffic.clientLabel])
            #expect(server.received == client.sent)
            #expect(server.sent >= client.received && client.received >= open.received)
            #expect(Set(clientTraffic.totals().keys) == ["n1"])
        }
    }

    /// A connection that closes before its peer is known counts as `unidentified`; past `labelsMax`
    /// labels, peers count as `other`.
    @Test func unknownPeersAndTooManyLabelsAreBounded() {
        let traffic = PeerTraffic()
        let anonymous = traffic.open()
        anonymous.sent.wrappingAdd(5, ordering: .relaxed)
        #expect(traffic.totals().isEmpty)
        traffic.close(anonymous)
        #expect(traffic.totals() == [PeerTraffic.unidentifiedLabel: PeerTraffic.Totals(sent: 5)])
        for index in 0..<(PeerTraffic.labelsMax + 10) {
            let connection = traffic.open()
            connection.received.wrappingAdd(1, ordering: .relaxed)
            traffic.identify(connection, as: PeerIdentity(name: "n\(index)", role: .node))
            traffic.close(connection)
        }
        let totals = traffic.totals()
        #expect(totals.count == PeerTraffic.labelsMax)
        #expect(totals[PeerTraffic.otherLabel]?.received == 12)
        let client = traffic.open()
        traffic.identify(client, as: PeerIdentity(name: "app-7", role: .client))
        client.sent.wrappingAdd(3, ordering: .relaxed)
        #expect(traffic.totals()[PeerTraffic.otherLabel]?.sent == 3, "a new label past the bound")
    }
}
