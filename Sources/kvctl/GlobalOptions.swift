import ArgumentParser
import Foundation
import KVClient
import KVConfig
import KVCore
import KVRPC
import KVTLS
import KVWire

/// Options every command that talks to a cluster shares. Each falls back to an environment variable,
/// so `source .cluster/env` sets up a shell.
struct GlobalOptions: ParsableArguments {
    @Option(help: "Comma-separated node addresses HOST:PORT to fetch the cluster map from (env QUORUMKV_ENDPOINTS).")
    var endpoints: String?

    @Option(help: "The cluster file, cluster.yaml (env QUORUMKV_CLUSTER); used instead of --endpoints.")
    var cluster: String?

    @Option(help: "Cluster CA certificate (env QUORUMKV_CA).")
    var ca: String?

    @Option(help: "This client's certificate (env QUORUMKV_CERT).")
    var cert: String?

    @Option(help: "This client's private key (env QUORUMKV_KEY).")
    var key: String?

    @Option(name: .customLong("cluster-id"), help: "The cluster id the nodes must have (env QUORUMKV_CLUSTER_ID).")
    var clusterID: String?

    @Option(
        name: .customLong("client-zone"),
        help: "This client's zone, for --consistency local_quorum (env QUORUMKV_ZONE).")
    var clientZone: String?

    @Option(
        help: "The keyspace of put, get, delete and ring (env QUORUMKV_KEYSPACE; default: the default keyspace).")
    var keyspace: String?

    @Option(help: "Seconds to wait for a node's answer.")
    var timeout: Double = 5

    @Option(
        name: .customLong("protocol-max"),
        help: "The highest wire-protocol version to speak (default: this build's highest), as kvd's flag.")
    var protocolMax: Int?

    @Flag(help: "Print one JSON document on stdout.")
    var json = false

    /// The keyspace the data commands use: `--keyspace`, else `QUORUMKV_KEYSPACE`, else `default`.
    var keyspaceName: String {
        if let keyspace { return keyspace }
        let environment = ProcessInfo.processInfo.environment["QUORUMKV_KEYSPACE"] ?? ""
        return environment.isEmpty ? Keyspace.defaultName : environment
    }

    func clientConfiguration() throws -> KVClientConfiguration {
        guard timeout > 0, timeout <= 3600 else {
            throw ValidationError("--timeout must be between 0 and 3600 seconds")
        }
        var configuration: KVClientConfiguration
        do {
            configuration = try KVClientConfiguration(
                clusterFile: cluster, endpoints: endpoints, clusterID: clusterID, caFile: ca, certificateFile: cert,
                keyFile: key, zone: clientZone, environment: ProcessInfo.processInfo.environment)
        } catch let error as KVClientError where error.isInvalidArgument {
            throw ValidationError(error.message)
        } catch {
            throw CommandFailure("\(error)")
        }
        configuration.requestTimeout = .milliseconds(Int(timeout * 1000))
        configuration.reconnect.connectTimeout = configuration.requestTimeout
        if let protocolMax {
            guard let versions = WireProtocol.versions(highestMax: protocolMax) else {
                throw ValidationError(
                    "--protocol-max must be a version this build speaks (\(WireProtocol.versions)), not \(protocolMax)")
            }
            configuration.protocolVersions = versions
        }
        return configuration
    }

    /// The cluster file this command reads, as `clientConfiguration()` chooses it; nil when it asks
    /// endpoints.
    var clusterFilePath: String? {
        KVClientConfiguration.clusterFilePath(
            clusterFile: cluster, endpoints: endpoints, environment: ProcessInfo.processInfo.environment)
    }

    /// Sets the `seeds` of the cluster file this command reads to the addresses of `map`'s members
    /// (`ClusterFile.replacingSeeds`), after a change to the membership: a client started from the file
    /// then finds the cluster once every node the file lists has left. Says so on stderr; a file that
    /// cannot be written is a warning, not a failure of the change.
    func keepSeeds(of map: ClusterMap) {
        guard let path = clusterFilePath, let text = try? String(contentsOfFile: path, encoding: .utf8) else { return }
        let seeds = map.nodes.filter { $0.state != .removed }.map(\.address)
        guard (try? ClusterFile.seeds(in: text)) != seeds else { return }
        let updated = ClusterFile.replacingSeeds(in: text, with: seeds)
        do {
            try updated.write(toFile: path, atomically: true, encoding: .utf8)
            printError("\(path): seeds set to the members' addresses (\(seeds.joined(separator: ", ")))")
        } catch {
            printError(
                "kvctl: warning: cannot write the seeds of \(path) (\(error.localizedDescription)): a client "
                    + "started from it may find no member once the nodes it lists have left")
        }
    }

    /// Runs `body` with a connected client, and closes it afterwards whatever happens.
    func withClient<T>(_ body: (KVClient) async throws -> T) async throws -> T {
        let configuration = try clientConfiguration()
        let client: KVClient
        do {
            client = try KVClient(configuration: configuration)
        } catch {
            throw CommandFailure("cannot load client certificate: \(error)")
        }
        do {
            let result = try await body(client)
            await client.close()
            return result
        } catch {
            await client.close()
            throw error
        }
    }
}

/// A failure to report in one line on stderr, with exit code 1 (or the code given).
struct CommandFailure: Error, CustomStringConvertible {
    var description: String
    var exitCode: Int32

    init(_ description: String, exitCode: Int32 = 1) {
        self.description = description
        self.exitCode = exitCode
    }
}

/// Writes text to stderr.
func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// Writes one JSON document to stdout.
func printJSON(_ value: some Encodable) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    var data = try encoder.encode(value)
    data.append(UInt8(ascii: "\n"))
    FileHandle.standardOutput.write(data)
}

/// Runs a command body, turning failures into a one-line message and an exit code.
func reportingFailures(json: Bool, _ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let error as ValidationError {
        throw error
    } catch let error as ExitCode {
        throw error
    } catch let error as CommandFailure {
        report(error.description, json: json)
        throw ExitCode(error.exitCode)
    } catch {
        report("\(error)", json: json)
        throw ExitCode(1)
    }
}

private struct ErrorDocument: Encodable {
    var ok = false
    var error: String
}

private func report(_ message: String, json: Bool) {
    if json {
        try? printJSON(ErrorDocument(error: message))
    }
    printError("kvctl: \(message)")
}

/// `--consistency`, `--r` and `--w`, shared by the data commands.
struct ConsistencyOptions: ParsableArguments {
    @Option(help: "one, quorum (default), all, local_quorum, each_quorum, or a number of replicas.")
    var consistency: String?

    @Option(name: .customLong("r"), help: "Replicas that must answer a read (overrides --consistency).")
    var readReplicas: Int?

    @Option(name: .customLong("w"), help: "Replicas that must acknowledge a write (overrides --consistency).")
    var writeReplicas: Int?

    func validate() throws {
        if let consistency {
            switch KVConsistency(parsing: consistency) {
            case nil:
                throw ValidationError("--consistency must be one, quorum, all, local_quorum, each_quorum or a number")
            case .count(let count) where count < 1:
                // As --r 0 and --w 0 are: a usage error, not a failed request.
                throw ValidationError("--consistency must count at least 1 replica")
            default:
                break
            }
        }
        if let readReplicas, readReplicas < 1 { throw ValidationError("--r must be at least 1") }
        if let writeReplicas, writeReplicas < 1 { throw ValidationError("--w must be at least 1") }
    }

    var read: KVConsistency? {
        readReplicas.map { .count($0) } ?? consistency.flatMap(KVConsistency.init(parsing:))
    }

    var write: KVConsistency? {
        writeReplicas.map { .count($0) } ?? consistency.flatMap(KVConsistency.init(parsing:))
    }
}
