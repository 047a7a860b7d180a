import KVClient
import Logging
import ServiceLifecycle

/// The application's own service: it writes a greeting, and its end shuts the group down.
struct Greeter: Service {
    let client: KVClient

    func run() async throws {
        try await client.put("greeting", value: "hello")
    }
}

/// Runs the client as a service of the application's group: the group closes it at shutdown.
func sdkServiceExample(configuration: KVClientConfiguration) async throws -> KVClient {
    let client = try KVClient(configuration: configuration)
    let group = ServiceGroup(
        configuration: ServiceGroupConfiguration(
            services: [
                .init(service: client),
                .init(service: Greeter(client: client), successTerminationBehavior: .gracefullyShutdownGroup),
            ],
            logger: Logger(label: "example")
        )
    )
    try await group.run()
    return client
}
