import Foundation
import KVCore
import KVTLS
import NIOCore
import NIOEmbedded

// `kvtls-probe`: exits while other threads are inside OpenSSL, as `kvctl` does when its event loops
// still free a closed connection's `SSL` after the command returned. OpenSSL's own clean-up at exit
// (an `atexit` handler, unless KVTLS turns it off) frees what those threads use, and the process dies
// of SIGSEGV after its work was done. The cluster tests run it many times and expect exit status 0.

/// Handshakes two in-memory TLS connections, then drops them (which frees their `SSL`s), forever.
func handshakeForever(client: TLSContext, server: TLSContext) throws -> Never {
    while true {
        let clientChannel = EmbeddedChannel(handler: OpenSSLHandler(context: client))
        let serverChannel = EmbeddedChannel(handler: OpenSSLHandler(context: server))
        _ = try clientChannel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        _ = try serverChannel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        var moved = true
        while moved {
            moved = false
            if let bytes = try clientChannel.readOutbound(as: ByteBuffer.self) {
                try serverChannel.writeInbound(bytes)
                moved = true
            }
            if let bytes = try serverChannel.readOutbound(as: ByteBuffer.self) {
                try clientChannel.writeInbound(bytes)
                moved = true
            }
        }
        _ = try? clientChannel.finish()
        _ = try? serverChannel.finish()
    }
}

@main
struct KVTLSProbe {
    static func main() throws {
        let authority = try CertificateIssuer.makeAuthority(commonName: "kvtls-probe CA")
        func context(_ role: Role, _ name: String, _ side: TLSContext.Side) throws -> TLSContext {
            let certificate = try CertificateIssuer.issue(role: role, name: name, authority: authority)
            return try TLSContext(
                configuration: TLSConfiguration(
                    caPEM: authority.certificatePEM, certificatePEM: certificate.certificatePEM,
                    keyPEM: certificate.privateKeyPEM),
                side: side)
        }
        let client = try context(.client, "probe", .client)
        let server = try context(.node, "n1", .server)
        for _ in 0..<2 {
            Thread.detachNewThread {
                do { try handshakeForever(client: client, server: server) } catch {
                    FileHandle.standardError.write(Data("kvtls-probe: \(error)\n".utf8))
                    exit(1)
                }
            }
        }
        // Long enough for both threads to be amid handshakes (milliseconds, 30 unless given), short
        // enough for many runs.
        let milliseconds = CommandLine.arguments.dropFirst().first.flatMap(UInt32.init) ?? 30
        usleep(milliseconds * 1_000)
        exit(0)
    }
}
