import ArgumentParser
import Foundation
import KVClient
import KVRPC
import KVTLS

/// Options every command that talks to a cluster shares. Each falls back to an environment variable,
/// so `source .cluster/env` sets up a shell.
struct GlobalOptions: ParsableArguments {
    @Option(help: "Comma-separated node addresses HOST:PORT (env QUORUMKV_ENDPOINTS).")
    var endpoints: String?

    @Option(help: "Cluster CA certificate (env QUORUMKV_CA).")
    var ca: String?

    @Option(help: "This client's certificate (env QUORUMKV_CERT).")
    var cert: String?

    @Option(help: "This client's private key (env QUORUMKV_KEY).")
    var key: String?

    @Option(name: .customLong("cluster-id"), help: "The cluster id the nodes must have (env QUORUMKV_CLUSTER_ID).")
    var clusterID: String?

    @Option(help: "Seconds to wait for a node's answer.")
    var timeout: Double = 5

    @Flag(help: "Print one JSON document on stdout.")
    var json = false

    private static func environment(_ name: String) -> String? {
        let value = ProcessInfo.processInfo.environment[name]
        return value?.isEmpty == false ? value : nil
    }

    func clientConfiguration() throws -> KVClientConfiguration {
        guard let endpoints = endpoints ?? Self.environment("QUORUMKV_ENDPOINTS") else {
            throw ValidationError("no endpoints: pass --endpoints HOST:PORT or set QUORUMKV_ENDPOINTS")
        }
        guard let ca = ca ?? Self.environment("QUORUMKV_CA"),
            let cert = cert ?? Self.environment("QUORUMKV_CERT"),
            let key = key ?? Self.environment("QUORUMKV_KEY")
        else {
            throw ValidationError(
                "no client certificate: pass --ca, --cert and --key or set QUORUMKV_CA, QUORUMKV_CERT, QUORUMKV_KEY")
        }
        guard timeout > 0, timeout <= 3600 else {
            throw ValidationError("--timeout must be between 0 and 3600 seconds")
        }
        var configuration = KVClientConfiguration(
            endpoints: endpoints.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
                .filter { !$0.isEmpty },
            tls: TLSConfiguration(caFile: ca, certificateFile: cert, keyFile: key)
        )
        configuration.clusterID = clusterID ?? Self.environment("QUORUMKV_CLUSTER_ID") ?? "quorumkv"
        configuration.requestTimeout = .milliseconds(Int(timeout * 1000))
        configuration.reconnect.connectTimeout = configuration.requestTimeout
        return configuration
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
