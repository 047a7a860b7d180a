public import ServiceLifecycle

extension KVClient: Service {
    /// Runs the client as a service of a `ServiceGroup`: waits for the group's graceful shutdown (or
    /// the task's cancellation), then closes the client (``close()``).
    ///
    /// The client serves requests from the moment it is made; `run()` only ties its end to the
    /// application's lifecycle. ``close()`` may also be called directly.
    public func run() async throws {
        // Returns at graceful shutdown, throws at cancellation: the client closes either way.
        try? await gracefulShutdown()
        await close()
    }
}

/// Makes a client of the cluster `configuration` names, runs `body` with it, and closes it when
/// `body` returns or throws (<doc:GettingStarted> has an example).
///
/// - Returns: what `body` returns.
/// - Throws: what ``KVClient/init(configuration:)`` or `body` throws.
public func withKVClient<Result>(
    configuration: KVClientConfiguration, isolation: isolated (any Actor)? = #isolation,
    _ body: (KVClient) async throws -> Result
) async throws -> Result {
    let client = try KVClient(configuration: configuration)
    let result: Result
    do {
        result = try await body(client)
    } catch {
        await client.close()
        throw error
    }
    await client.close()
    return result
}
