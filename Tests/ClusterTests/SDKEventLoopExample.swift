import KVClient
import NIOCore
import NIOPosix

/// Runs a client's connections and the tasks that call it on one event loop of the application's
/// own: no thread is woken to send a request or to resume the task that awaits its answer.
func sdkEventLoopExample(configuration: KVClientConfiguration) async throws -> String? {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    var configuration = configuration
    configuration.eventLoopGroup = group
    let executor = KVEventLoopExecutor(eventLoop: group.next())
    let greeting = try await withKVClient(configuration: configuration) { client in
        try await withTaskExecutorPreference(executor) {
            try await client.put("greeting:loop", value: "one thread")
            return try await client.get("greeting:loop", as: String.self)
        }
    }
    try await group.shutdownGracefully()
    return greeting
}
