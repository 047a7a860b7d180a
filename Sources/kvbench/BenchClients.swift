import KVClient
import NIOCore
import NIOPosix

/// The SDK clients a run drives: one on the SDK's defaults (NIO's shared event loops, Swift's global
/// executor for the workers), or with `--event-loops N`, N clients with an event loop each, whose
/// workers run on that loop: a request, its answer and the worker that waits for it then stay on one
/// thread (`KVEventLoopExecutor`; docs/sdk.md, "Event loops"). Worker `w` uses client `w % N`.
struct BenchClients: Sendable {
    let clients: [KVClient]
    /// Each client's view of the run's keyspace.
    private let keyspaces: [KVKeyspace]
    /// One per client with `--event-loops`; empty otherwise.
    let executors: [KVEventLoopExecutor]
    private let groups: [MultiThreadedEventLoopGroup]

    /// `eventLoops` clients of `configuration` (0: one, on the SDK's own event loops), for the
    /// keyspace named `keyspace`.
    init(eventLoops: Int, configuration: KVClientConfiguration, keyspace: String) throws {
        guard eventLoops > 0 else {
            let client = try KVClient(configuration: configuration)
            (clients, keyspaces, executors, groups) = ([client], [client.keyspace(keyspace)], [], [])
            return
        }
        let groups = (0..<eventLoops).map { _ in MultiThreadedEventLoopGroup(numberOfThreads: 1) }
        var clients: [KVClient] = []
        do {
            for group in groups {
                var configuration = configuration
                configuration.eventLoopGroup = group
                clients.append(try KVClient(configuration: configuration))
            }
        } catch {
            for group in groups { try? group.syncShutdownGracefully() }
            throw error
        }
        self.clients = clients
        self.groups = groups
        keyspaces = clients.map { $0.keyspace(keyspace) }
        executors = groups.map { KVEventLoopExecutor(eventLoop: $0.next()) }
    }

    /// The keyspace view worker `worker` sends its requests through.
    func client(forWorker worker: Int) -> KVKeyspace {
        keyspaces[worker % keyspaces.count]
    }

    /// The executor worker `worker` prefers (nil: the global one): its client's loop.
    func executor(forWorker worker: Int) -> KVEventLoopExecutor? {
        executors.isEmpty ? nil : executors[worker % executors.count]
    }

    /// Closes every client, then stops their event loops.
    func close() async {
        for client in clients { await client.close() }
        for group in groups { try? await group.shutdownGracefully() }
    }
}
