import Foundation
public import KVCore
public import KVRPC
public import KVTLS
import KVWire
import NIOCore
import NIOPosix
import Synchronization

/// What a client needs to reach the cluster.
public struct KVClientConfiguration: Sendable {
    /// Node addresses, `host:port`.
    public var endpoints: [String]
    /// The cluster the nodes must belong to; a node of another cluster refuses the connection.
    public var clusterID: String = "quorumkv"
    public var tls: TLSConfiguration
    /// How long one request may wait for a replica's answer.
    public var requestTimeout: Duration = .seconds(5)
    public var reconnect = ReconnectPolicy()
    /// How often a write that a replica finds older than what it holds is re-stamped and retried.
    public var supersededRetriesMax = 8

    public init(endpoints: [String], tls: TLSConfiguration) {
        self.endpoints = endpoints
        self.tls = tls
    }
}

/// A value read from the store, with the version that wrote it.
public struct KVValue: Sendable, Hashable {
    public var value: [UInt8]
    public var version: Version

    public init(value: [UInt8], version: Version) {
        self.value = value
        self.version = version
    }
}

/// How one node answered a ping.
public struct NodeStatus: Sendable, Hashable {
    public var address: String
    /// The node's id, from its certificate; nil when it could not be reached.
    public var nodeID: String?
    public var isUp: Bool
    public var latency: Duration?
    public var keys: UInt64?
    /// Why the node is down.
    public var error: String?
}

/// The QuorumKV SDK: reads and writes keys over mutual TLS.
///
/// The client stamps every write with a hybrid-logical-clock version, moves its clock past every clock
/// a replica reports, and re-stamps and retries a write that a replica finds older than what it holds,
/// so a client whose clock runs behind cannot hide its write behind an older one.
///
/// This version talks to one replica at a time: the first endpoint that answers. Quorum coordination
/// over a ring of replicas builds on the same calls.
public final class KVClient: Sendable {
    public let configuration: KVClientConfiguration
    private let tls: TLSContext
    private let nodes: [RPCClient]
    private let clock = Mutex(HybridLogicalClock())
    /// The id that breaks ties between equal timestamps of different writers.
    public let writerID: UInt64

    /// The identity in this client's certificate.
    public var identity: PeerIdentity { tls.localIdentity }

    public init(configuration: KVClientConfiguration) throws {
        guard !configuration.endpoints.isEmpty else {
            throw KVClientError.invalidArgument("no endpoints: give at least one node address (host:port)")
        }
        self.configuration = configuration
        self.tls = try TLSContext(configuration: configuration.tls, side: .client)
        self.writerID = UInt64.random(in: 1...UInt64.max)
        let identity = tls.localIdentity
        let hello = Hello(
            protocolVersion: WireProtocol.version,
            clusterId: configuration.clusterID,
            senderId: identity.name,
            role: identity.role,
            epoch: 0
        )
        var nodes: [RPCClient] = []
        for endpoint in configuration.endpoints {
            let (host, port) = try Self.parse(endpoint)
            nodes.append(RPCClient(host: host, port: port, tls: tls, hello: hello, policy: configuration.reconnect))
        }
        self.nodes = nodes
    }

    /// Writes `value` under `key`.
    ///
    /// - Returns: the version the write was stored with.
    @discardableResult
    public func put(_ key: [UInt8], value: [UInt8]) async throws -> Version {
        try validate(key: key)
        guard value.count <= Limits.valueBytesMax else {
            throw KVClientError.invalidArgument(
                "value is \(value.count) bytes; the limit is \(Limits.valueBytesMax)")
        }
        return try await write(key: key, value: value, tombstone: false)
    }

    /// Deletes `key` by writing a tombstone.
    ///
    /// - Returns: the version of the tombstone.
    @discardableResult
    public func delete(_ key: [UInt8]) async throws -> Version {
        try validate(key: key)
        return try await write(key: key, value: [], tombstone: true)
    }

    /// Reads `key`.
    ///
    /// - Returns: the value and its version, or nil when the key does not exist or was deleted.
    public func get(_ key: [UInt8]) async throws -> KVValue? {
        try validate(key: key)
        let request = Message.getRequest(GetRequest(key: ByteBuffer(bytes: key)))
        let answer = try await call(request)
        guard case .getResponse(let response) = answer else {
            throw KVClientError.protocolViolation("a replica answered Get with \(answer.type)")
        }
        observe(response.clock)
        guard let record = response.record, !record.tombstone else { return nil }
        observe(record.version.hlc)
        return KVValue(value: Array(record.value.readableBytesView), version: record.version)
    }

    /// Pings every endpoint and reports which answer, how fast, and how many keys they hold.
    public func status() async -> [NodeStatus] {
        await withTaskGroup(of: (Int, NodeStatus).self) { group in
            for (index, node) in nodes.enumerated() {
                group.addTask {
                    let started = ContinuousClock.now
                    do {
                        let connection = try await node.connection()
                        let answer = try await connection.call(
                            .pingRequest(PingRequest(epoch: 0, clock: self.now())),
                            timeout: self.configuration.requestTimeout)
                        guard case .pingResponse(let ping) = answer else {
                            throw KVClientError.protocolViolation("a node answered Ping with \(answer.type)")
                        }
                        self.observe(ping.clock)
                        return (
                            index,
                            NodeStatus(
                                address: node.address, nodeID: connection.helloAck.nodeId, isUp: true,
                                latency: ContinuousClock.now - started, keys: ping.keys, error: nil)
                        )
                    } catch {
                        return (
                            index,
                            NodeStatus(
                                address: node.address, nodeID: nil, isUp: false, latency: nil, keys: nil,
                                error: "\(error)")
                        )
                    }
                }
            }
            var results = [NodeStatus?](repeating: nil, count: nodes.count)
            for await (index, status) in group {
                results[index] = status
            }
            return results.compactMap { $0 }
        }
    }

    /// Closes every connection.
    public func close() async {
        for node in nodes {
            await node.close()
        }
    }

    private func write(key: [UInt8], value: [UInt8], tombstone: Bool) async throws -> Version {
        var attempts = 0
        while true {
            let version = Version(hlc: now(), writer: writerID)
            let request = Message.putRequest(
                PutRequest(
                    key: ByteBuffer(bytes: key), value: ByteBuffer(bytes: value), version: version,
                    tombstone: tombstone))
            let answer = try await call(request)
            guard case .putResponse(let response) = answer else {
                throw KVClientError.protocolViolation("a replica answered Put with \(answer.type)")
            }
            observe(response.clock)
            switch response.outcome {
            case .applied:
                return version
            case .superseded:
                // The replica holds a newer version: move the clock past it and write again, so that
                // this write, acknowledged after that one, is also ordered after it.
                observe(response.current.hlc)
                attempts += 1
                if attempts > configuration.supersededRetriesMax {
                    throw KVClientError.conflict(
                        "the write was superseded \(attempts) times by newer writes of the same key; giving up")
                }
            }
        }
    }

    /// Sends a request to the first endpoint that answers.
    private func call(_ request: Message) async throws -> Message {
        var failures: [String] = []
        for node in nodes {
            do {
                return try await node.call(request, timeout: configuration.requestTimeout)
            } catch let error as RPCError {
                if let code = error.remoteCode, code != .overloaded, code != .shuttingDown {
                    throw KVClientError.refused(
                        code, "\(node.address) refused the request: \(error.remoteMessage ?? "")")
                }
                failures.append("\(node.address): \(error)")
            }
        }
        throw KVClientError.unavailable(
            "no node answered (\(failures.count) of \(nodes.count) tried): " + failures.joined(separator: "; "))
    }

    private func validate(key: [UInt8]) throws {
        guard !key.isEmpty else { throw KVClientError.invalidArgument("the key is empty") }
        guard key.count <= Limits.keyBytesMax else {
            throw KVClientError.invalidArgument("key is \(key.count) bytes; the limit is \(Limits.keyBytesMax)")
        }
    }

    private func now() -> UInt64 {
        let millis = UInt64(max(0, Date().timeIntervalSince1970 * 1000))
        return clock.withLock { $0.now(physicalMillis: millis) }
    }

    private func observe(_ remote: UInt64) {
        clock.withLock { $0.observe(remote) }
    }

    private static func parse(_ endpoint: String) throws -> (String, Int) {
        var host = endpoint
        var port = 7411
        if endpoint.hasPrefix("["), let close = endpoint.firstIndex(of: "]") {
            host = String(endpoint[endpoint.index(after: endpoint.startIndex)..<close])
            let rest = endpoint[endpoint.index(after: close)...]
            if rest.hasPrefix(":") {
                guard let parsed = Int(rest.dropFirst()) else {
                    throw KVClientError.invalidArgument("endpoint '\(endpoint)' has an invalid port")
                }
                port = parsed
            }
        } else if let colon = endpoint.lastIndex(of: ":") {
            host = String(endpoint[..<colon])
            guard let parsed = Int(endpoint[endpoint.index(after: colon)...]), (1...65535).contains(parsed) else {
                throw KVClientError.invalidArgument("endpoint '\(endpoint)' has an invalid port")
            }
            port = parsed
        }
        guard !host.isEmpty else { throw KVClientError.invalidArgument("endpoint '\(endpoint)' has no host") }
        return (host, port)
    }
}
