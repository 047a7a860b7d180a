import Foundation
import KVCluster
import KVCore
import KVRPC
import KVTLS
import KVWire
import Metrics
import NIOCore
import NIOPosix
import Synchronization

extension KVClient {
    // MARK: - Plumbing

    func currentTopology() async throws -> Topology {
        if let topology = topology.withLock({ $0 }) {
            if let check = startChecking(topology) {
                await check.wait()
                let checked = self.topology.withLock { $0 } ?? topology
                startPinger(checked)
                return checked
            }
            startPinger(topology)
            return topology
        }
        var failures: [String] = []
        for seed in seeds {
            do {
                let answer = try await seed.call(
                    .clusterMapRequest(ClusterMapRequest(knownEpoch: 0, epoch: 0)),
                    timeout: configuration.requestTimeout)
                guard case .clusterMapResponse(let response) = answer else {
                    throw KVClientError.protocolViolation("\(seed.address) answered ClusterMap with \(answer.type)")
                }
                return try install(response.map)
            } catch let error as KVClientError {
                failures.append("\(seed.address): \(error)")
            } catch let error as RPCError {
                if let code = error.remoteCode, code != .overloaded, code != .shuttingDown {
                    throw KVClientError.refused(
                        code, "\(seed.address) refused the connection: \(error.remoteMessage ?? "")")
                }
                failures.append("\(seed.address): \(error)")
            }
        }
        throw KVClientError.unavailable(
            "no node answered with the cluster map (\(failures.count) of \(seeds.count) tried): "
                + failures.joined(separator: "; "))
    }

    /// The start check of a client made from a cluster file, begun by the first caller; nil when done.
    func startChecking(_ topology: Topology) -> BackgroundWork.Handle? {
        startCheck.withLock { check in
            switch check {
            case nil: return nil
            case .running(let task): return task
            case .due:
                guard
                    let task = background.spawn({
                        await self.fetchCurrentMap(topology)
                        self.startCheck.withLock { $0 = nil }
                    })
                else { return nil }
                check = .running(task)
                return task
            }
        }
    }

    /// Asks every node of `topology` for its map at once and installs the first answer if it is
    /// newer: a cluster file may be older than the cluster (nodes joined or left since), and the first
    /// request should not pay a refused round to learn it. Unanswered (every node down), the file's
    /// map stays in use; later maps still arrive by gossip and refusals.
    func fetchCurrentMap(_ topology: Topology) async {
        // The file's voters, and its seeds (`ClusterFile.seeds`): the members when kvctl last changed
        // them, which may be all that is left of the cluster.
        let voters = topology.map.voters.compactMap { topology.nodes[$0] }
        let asked = Set(voters.map(\.address))
        let clients = voters + seeds.filter { !asked.contains($0.address) }
        guard !clients.isEmpty else { return }
        let request = Message.clusterMapRequest(ClusterMapRequest(knownEpoch: topology.map.epoch, epoch: 0))
        let clusterID = topology.map.clusterID
        let first: ClusterMap? = await withCheckedContinuation { continuation in
            let waiting = Guarded((answered: false, pending: clients.count))
            for client in clients {
                client.send(request, timeout: configuration.requestTimeout).whenComplete { result in
                    var map: ClusterMap?
                    if case .success(.clusterMapResponse(let response)) = result, response.clusterId == clusterID {
                        map = response.map
                    }
                    let answer = waiting.withLock { waiting in
                        waiting.pending -= 1
                        guard !waiting.answered, map != nil || waiting.pending == 0 else { return false }
                        waiting.answered = true
                        return true
                    }
                    if answer { continuation.resume(returning: map) }
                }
            }
        }
        if let first {
            _ = try? install(first)
        }
    }

    /// Installs `map` unless the one in use is as new: connections of nodes whose address did not
    /// change are kept, the others retired.
    ///
    /// - Returns: the topology in use afterwards.
    @discardableResult
    func install(_ map: ClusterMap) throws -> Topology {
        let routes: [UInt32: Result<KeyspaceRoute, KVClientError>]
        do {
            routes = try KeyspaceRoute.routes(of: map)
        } catch {
            throw KVClientError.invalidArgument("the cluster map is not a valid ring: \(error)")
        }
        let hello = Hello(
            protocolVersion: protocols.versions.highest, clusterId: map.clusterID, senderId: self.hello.senderId,
            role: self.hello.role, epoch: map.epoch)
        var addresses: [String: (host: String, port: Int)] = [:]
        for node in map.nodes where node.state != .removed {
            addresses[node.id] = try Self.parse(node.address)
        }
        let (topology, dropped) = topology.withLock { current -> (Topology, [RPCClient]) in
            if let current, current.map.epoch >= map.epoch { return (current, []) }
            var nodes: [String: RPCClient] = [:]
            for node in map.nodes where node.state != .removed {
                if let current, let client = current.nodes[node.id], current.map.node(node.id)?.address == node.address
                {
                    nodes[node.id] = client
                } else if let (host, port) = addresses[node.id] {
                    nodes[node.id] = connection(to: node.id, host: host, port: port, hello: hello)
                }
            }
            let dropped = (current?.nodes ?? [:]).filter { nodes[$0.key] !== $0.value }.map(\.value)
            let installed = Topology(map: map, routes: routes, nodes: nodes)
            current = installed
            return (installed, dropped)
        }
        if !dropped.isEmpty {
            retired.withLock { $0.append(contentsOf: dropped) }
            let timeout = configuration.requestTimeout
            background.spawn {
                // Cancelled by `close()`, which closes every retired connection itself.
                guard (try? await Task.sleep(for: timeout)) != nil else { return }
                for client in dropped { await client.close() }
            }
        }
        return topology
    }

    /// Fetches the map of a node that answered with a later epoch than the one in use, and installs
    /// it (`MapFollower`: one fetch at a time, failures ignored: the next answer tries again).
    func noticeEpoch(_ epoch: UInt64, from node: String, in topology: Topology) {
        follower.notice(epoch, from: node, currentEpoch: { self.topology.withLock { $0?.map.epoch ?? 0 } }) {
            await self.fetchMap(from: $0)
        }
    }

    /// Fetches `node`'s map and installs it if it is newer; failures ignored (the next answer with a
    /// newer epoch tries again).
    func fetchMap(from node: String) async {
        guard let topology = try? await currentTopology(),
            case .clusterMapResponse(let response)? = try? await call(
                .clusterMapRequest(ClusterMapRequest(knownEpoch: topology.map.epoch, epoch: 0)), node: node,
                in: topology),
            response.clusterId == topology.map.clusterID
        else { return }
        _ = try? install(response.map)
    }

    /// The client's connection to node `node` at `host:port` (its certificate must name the node),
    /// announcing `hello` (the map's epoch; by default the client's first one).
    func connection(to node: String, host: String, port: Int, hello: Hello? = nil) -> RPCClient {
        RPCClient(
            host: host, port: port, tls: tls, hello: hello ?? self.hello, nodeID: node,
            policy: configuration.reconnect, versions: protocols.versions, peerVersions: protocols.peers, group: group)
    }

    /// Sends `request` to `node`; a `probe` (the pinger's) dials a node in its backoff window.
    func send(_ request: Message, to node: String, in topology: Topology, probe: Bool = false)
        -> EventLoopFuture<Result<Message, any Error>>
    {
        send(to: node, in: topology, probe: probe) { _ in request }
    }

    /// Sends `request` to `node` and hands its answer, observed (`observe`), to `deliver`: the path of
    /// every request of an operation, with no future of its own after the RPC's.
    func send(
        _ request: Message, to node: String, in topology: Topology,
        then deliver: @escaping @Sendable (Result<Message, any Error>) -> Void
    ) {
        send(to: node, in: topology, probe: false, then: deliver) { client, complete in
            client.send(request, timeout: configuration.requestTimeout, then: complete)
        }
    }

    /// Sends the request `build` makes for the connection to `node` (which may depend on the version
    /// it negotiated), as `send(_:to:in:probe:)` does.
    func send(
        to node: String, in topology: Topology, probe: Bool = false,
        _ build: @escaping @Sendable (RPCConnection) -> Message
    ) -> EventLoopFuture<Result<Message, any Error>> {
        let answered = group.next().makePromise(of: Result<Message, any Error>.self)
        send(to: node, in: topology, probe: probe, then: { answered.succeed($0) }) { client, complete in
            client.send(timeout: configuration.requestTimeout, probe: probe, build, then: complete)
        }
        return answered.futureResult
    }

    /// The one way a request goes to a node: `dispatch` sends it with the node's RPC client, and its
    /// answer, observed (`observe`), goes to `deliver`.
    private func send(
        to node: String, in topology: Topology, probe: Bool,
        then deliver: @escaping @Sendable (Result<Message, any Error>) -> Void,
        _ dispatch: (RPCClient, _ complete: @escaping RPCCompletion) -> Void
    ) {
        guard let client = topology.nodes[node] else {
            deliver(.failure(KVClientError.invalidArgument("unknown node \(node)")))
            return
        }
        if !probe { requestsSent.add(1, ordering: .relaxed) }
        dispatch(client) { deliver(self.observe($0, from: node, in: topology)) }
    }

    /// Sends to `node` the requests `build` makes for its connection (`RPCClient.send(timeout:all:)`),
    /// each with `timeout` to answer, and hands back each answer as `send(_:to:in:probe:)` would;
    /// when no connection can be made, each of the `count` answers is that failure.
    func send(
        count: Int, to node: String, in topology: Topology, timeout: Duration,
        _ build: @escaping @Sendable (RPCConnection) -> [Message]
    ) -> EventLoopFuture<[Result<Message, any Error>]> {
        let eventLoop = group.next()
        guard let client = topology.nodes[node] else {
            let failure = Result<Message, any Error>.failure(KVClientError.invalidArgument("unknown node \(node)"))
            return eventLoop.makeSucceededFuture(Array(repeating: failure, count: count))
        }
        return client.send(
            timeout: timeout,
            all: { connection in
                let requests = build(connection)
                self.requestsSent.add(requests.count, ordering: .relaxed)
                return requests
            }
        )
        .map { answers in answers.map { self.observe($0, from: node, in: topology) } }
        .flatMapErrorThrowing { error in
            Array(repeating: self.observe(.failure(error), from: node, in: topology), count: count)
        }
    }

    /// What every answer from `node` tells the client: the node is up; its map is newer than ours (a
    /// pong's epoch, or a `notReplica` refusal: fetch it).
    func observe(_ answer: Result<Message, any Error>, from node: String, in topology: Topology)
        -> Result<Message, any Error>
    {
        switch answer {
        case .success(let message):
            heartbeat(node)
            switch message {
            case .pingResponse(let pong) where pong.epoch > topology.map.epoch:
                noticeEpoch(pong.epoch, from: node, in: topology)
            case .heartbeatResponse(let beat) where beat.epoch > topology.map.epoch:
                noticeEpoch(beat.epoch, from: node, in: topology)
            default:
                break
            }
        case .failure(let error):
            // A replica that does not keep the key in its (newer) map: fetch that map.
            if (error as? RPCError)?.remoteCode == .notReplica {
                noticeEpoch(.max, from: node, in: topology)
            }
        }
        return answer
    }
}
