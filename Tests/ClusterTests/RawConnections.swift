import KVCore
import KVRPC
import KVTLS
import KVWire

/// A raw RPC connection to a node at `host:port`, holding the certificate `name` of the folder `certs`
/// (what a hostile certificate holder would open).
func rawConnection(
    host: String, port: Int, certs: String, as name: String, role: Role, clusterID: String
) async throws -> RPCConnection {
    let tls = try TLSContext(
        configuration: TLSConfiguration(
            caFile: "\(certs)/ca.pem", certificateFile: "\(certs)/\(name).pem", keyFile: "\(certs)/\(name)-key.pem"),
        side: .client)
    return try await RPCConnection.connect(
        host: host, port: port, tls: tls,
        hello: Hello(protocolVersion: WireProtocol.version, clusterId: clusterID, senderId: name, role: role, epoch: 0),
        timeout: .seconds(10))
}

/// A node's `Admin` stats, asked over a raw connection with the admin certificate.
func adminStats(host: String, port: Int, certs: String, clusterID: String) async throws -> NodeStats {
    let admin = try await rawConnection(
        host: host, port: port, certs: certs, as: "admin", role: .admin, clusterID: clusterID)
    let answer = try await admin.call(
        .adminRequest(AdminRequest(command: .stats, arguments: [])), timeout: .seconds(10))
    await admin.close()
    guard case .nodeStats(let stats) = answer else { throw HarnessError("stats answered \(answer.type)") }
    return stats
}
