import KVCore
import KVRPC
import KVTLS
import KVWire
import Logging
import NIOCore
import NIOPosix

/// A service that echoes writes back and can be told to be slow, for exercising the RPC layer alone.
struct EchoService: RPCService {
    func handshakeState() -> (epoch: UInt64, clock: UInt64) { (7, 42) }

    /// Everything goes to `handle`.
    func mayAnswerWithoutTask(_ type: MessageType) -> Bool { false }

    func answerWithoutTask(
        _ request: Message, from peer: PeerIdentity, reply: @escaping @Sendable (Result<Message, any Error>) -> Void
    ) -> Bool { false }

    func handle(_ request: Message, from peer: PeerIdentity) async throws -> Message {
        switch request {
        case .putRequest(let put):
            // Answer in a scrambled order: later requests may finish first.
            let delay = Int(put.version.hlc % 7)
            if delay > 0 { try await Task.sleep(for: .milliseconds(delay)) }
            return .putResponse(PutResponse(outcome: .applied, current: put.version, clock: put.version.hlc))
        case .putBatchRequest(let batch):
            // Each write as its `Put` would be answered; a key named `refused` is refused alone.
            return .putBatchResponse(
                PutBatchResponse(
                    items: batch.puts.map { put in
                        String(buffer: put.key) == "refused"
                            ? PutBatchItem(
                                outcome: nil, current: Version(hlc: 0, writer: 0),
                                error: BatchItemError(code: .notReplica, message: "not kept here"))
                            : PutBatchItem(outcome: .applied, current: put.version, error: nil)
                    },
                    clock: batch.puts.map(\.version.hlc).max() ?? 0))
        case .getRequest(let get):
            if String(buffer: get.key) == "slow" {
                try await Task.sleep(for: .seconds(3))
            }
            return .getResponse(GetResponse(record: nil, clock: 1))
        case .pingRequest(let ping):
            return .pingResponse(
                PingResponse(epoch: 7, clock: ping.clock, keys: 0, hintsQueued: 0, requestsInFlight: 0))
        case .heartbeatRequest(let beat):
            return .heartbeatResponse(HeartbeatResponse(epoch: 7, clock: beat.clock))
        case .hintRequest:
            return .hintResponse(HintResponse(outcome: .stored, clock: 1))
        case .streamRequest:
            return .streamResponse(StreamResponse(records: [], next: nil, done: true))
        default:
            throw RPCError.remote(.invalidRequest, message: "not served")
        }
    }
}

/// Runs an `RPCServer` on 127.0.0.1 for the duration of `body`, and stops it afterwards.
@discardableResult
func withTestServer<T: Sendable>(
    clusterID: String = "test",
    port: Int = 0,
    traffic: PeerTraffic? = nil,
    protocolVersions: ProtocolRange = WireProtocol.versions,
    peerVersions: PeerVersions? = nil,
    _ body: @Sendable (RPCServer) async throws -> T
) async throws -> T {
    var configuration = RPCServerConfiguration(host: "127.0.0.1", port: port, clusterID: clusterID, nodeID: "n1")
    configuration.protocolVersions = protocolVersions
    configuration.peerVersions = peerVersions
    // On a busy CI machine, with every suite handshaking at once, TLS can take longer than the 10 s a
    // node allows (a CI run lost a connection that way): these tests are not about that deadline.
    configuration.handshakeTimeout = .seconds(300)
    let server = try await RPCServer.bind(
        configuration: configuration,
        tls: try TestPKI.shared.serverContext(),
        service: EchoService(),
        traffic: traffic,
        logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
    )
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await server.run() }
        defer {
            server.stopAccepting()
            group.cancelAll()
        }
        return try await body(server)
    }
}

/// A `Hello`; a node's names the node of `TestPKI`'s node certificate unless `senderID` says otherwise.
func hello(
    role: Role = .client, senderID: String? = nil, clusterID: String = "test", version: UInt16 = WireProtocol.version
) -> Hello {
    Hello(
        protocolVersion: version, clusterId: clusterID, senderId: senderID ?? (role == .node ? "n1" : "tester"),
        role: role, epoch: 0)
}

func connect(
    to server: RPCServer,
    identity: IssuedCertificate? = nil,
    hello: Hello = hello(),
    nodeID: String? = nil,
    traffic: PeerTraffic? = nil
) async throws -> RPCConnection {
    try await RPCConnection.connect(
        host: "127.0.0.1",
        port: server.localAddress.port ?? 0,
        tls: try TestPKI.shared.clientContext(identity),
        hello: hello,
        nodeID: nodeID,
        timeout: .seconds(10),
        traffic: traffic
    )
}
