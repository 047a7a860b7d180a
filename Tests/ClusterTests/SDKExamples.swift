import KVClient

/// Writes, reads and deletes one key; returns what the read saw.
func sdkExample(clusterFile: String, certificates: String) async throws -> String? {
    let tls = KVTLSConfiguration(
        caFile: "\(certificates)/ca.pem",
        certificateFile: "\(certificates)/client.pem",
        keyFile: "\(certificates)/client-key.pem"
    )
    var configuration = try KVClientConfiguration(clusterFile: clusterFile, tls: tls)
    configuration.requestTimeout = .seconds(5)

    return try await withKVClient(configuration: configuration) { client in
        let version = try await client.put("user:42", value: "Ada Lovelace")
        let found = try await client.get("user:42", consistency: .quorum)
        precondition(found?.version == version)
        try await client.delete("user:42", consistency: .all)
        return found?.value(as: String.self)
    }
}

/// A user, stored as JSON.
struct User: Codable, Equatable {
    var name: String
    var languages: [String]
}

/// Stores a user as JSON and reads it back, and a value as bytes.
func sdkJSONExample(client: KVClient) async throws -> User? {
    let ada = User(name: "Ada Lovelace", languages: ["en", "fr"])
    try await client.put("user:ada", json: ada, timeToLive: .seconds(3600))
    let user = try await client.get("user:ada", as: User.self)

    let avatar: [UInt8] = [0x89, 0x50, 0x4E, 0x47]
    try await client.put("avatar:ada", value: avatar, consistency: .all)
    let bytes = try await client.get("avatar:ada", as: [UInt8].self, consistency: .one)
    precondition(bytes == avatar)
    return user
}

/// Keeps a session in the `sessions` keyspace (`kvctl keyspace create sessions --rf 3 --read one
/// --write one --ttl 1h`), where it expires after the keyspace's time to live unless the write names
/// its own. A read at `one` after a write at `one` (1 + 1, not above N = 3) may miss that write: the
/// session is read back from all three replicas.
func sdkKeyspaceExample(client: KVClient, token: String) async throws -> String? {
    let sessions = client.keyspace("sessions")
    try await sessions.put(token, value: "user:42")
    try await sessions.put("\(token):short", value: "user:42", consistency: .quorum, timeToLive: .seconds(60))
    return try await sessions.get(token, as: String.self, consistency: .all)
}

/// Writes a user's settings in one batch and reads them back in another: each key has its own
/// quorum and version, and the requests to each replica go together.
func sdkBatchExample(client: KVClient) async throws -> [String?] {
    let settings = [(key: "settings:42:theme", value: "dark"), (key: "settings:42:language", value: "fr")]
    let versions = try await client.put(settings, consistency: .quorum)
    precondition(versions.count == settings.count)
    let values = try await client.get(keys: settings.map(\.key))
    return values.map { $0?.value(as: String.self) }
}
