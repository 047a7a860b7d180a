import ArgumentParser
import Foundation
import KVCore
import KVTLS

struct Certs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Issue, revoke, bundle and reload the cluster's certificates (ECDSA P-256, through OpenSSL).",
        discussion: """
            Rotating the CA with no failed request (docs/security.md): certs init a new CA in another \
            folder; certs bundle the old and the new CA into every node's and client's CA file and certs \
            reload; certs issue every certificate again from the new CA (--out: where the files go) and \
            certs reload; certs bundle the new CA alone and certs reload. Every certs command takes --json \
            (one JSON document on stdout).
            """,
        subcommands: [Init.self, Issue.self, Reload.self, Revoke.self, Bundle.self, Show.self]
    )

    struct Init: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create the cluster CA: DIR/ca.pem and DIR/ca-key.pem (mode 0600).")

        @Option(help: "Output folder.")
        var dir = "certs/out"

        @Option(help: "The CA's common name.")
        var name = "QuorumKV cluster CA"

        @Option(help: "Validity in days.")
        var days = 3650

        @Flag(help: "Replace an existing CA (every certificate it issued stops being trusted).")
        var force = false

        /// Only `--json` applies; the root command takes it (`KVCtl.global`) and hands it on.
        @OptionGroup(visibility: .hidden) var global: GlobalOptions

        func validate() throws {
            guard days > 0 else { throw ValidationError("--days must be positive") }
        }

        func run() async throws {
            try await reportingFailures(json: global.json) {
                let certificate = "\(dir)/ca.pem"
                let key = "\(dir)/ca-key.pem"
                if !force && FileManager.default.fileExists(atPath: key) {
                    throw CommandFailure("\(key) exists; pass --force to replace the CA")
                }
                let authority = try CertificateIssuer.makeAuthority(commonName: name, validityDays: days)
                try writeFiles(dir: dir, certificate: certificate, key: key, issued: authority)
                if global.json {
                    try printJSON(IssuedDocument(ok: true, certificate: certificate, key: key))
                } else {
                    printError("wrote \(certificate) and \(key)")
                }
            }
        }
    }

    struct Issue: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Issue a certificate signed by the CA in DIR: DIR/NAME.pem and DIR/NAME-key.pem (mode 0600).")

        @Option(help: "Folder holding ca.pem and ca-key.pem; output goes there too unless --out says otherwise.")
        var dir = "certs/out"

        @Option(help: "Folder to write NAME.pem and NAME-key.pem to (default: --dir).")
        var out: String?

        @Option(help: "node, client or admin.")
        var role: String

        @Option(help: "The certificate's name (for a node: its id).")
        var name: String

        @Option(help: "An IP address the node is reached at (repeatable).")
        var ip: [String] = []

        @Option(help: "A DNS name the node is reached at (repeatable).")
        var dns: [String] = []

        @Option(help: "Validity in days (default 90; issue a new one before it ends).")
        var days = CertificateIssuer.leafValidityDaysDefault

        /// Only `--json` applies; the root command takes it (`KVCtl.global`) and hands it on.
        @OptionGroup(visibility: .hidden) var global: GlobalOptions

        func validate() throws {
            guard Role(name: role) != nil else { throw ValidationError("--role must be node, client or admin") }
            guard !name.isEmpty, name.utf8.count <= Limits.nameBytesMax,
                name.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) })
            else {
                throw ValidationError("--name must be 1-256 letters, digits, '-', '_' or '.'")
            }
            guard days > 0 else { throw ValidationError("--days must be positive") }
        }

        func run() async throws {
            try await reportingFailures(json: global.json) {
                guard let role = Role(name: role) else { return }
                let authority: IssuedCertificate
                do {
                    authority = IssuedCertificate(
                        certificatePEM: try String(contentsOfFile: "\(dir)/ca.pem", encoding: .utf8),
                        privateKeyPEM: try String(contentsOfFile: "\(dir)/ca-key.pem", encoding: .utf8))
                } catch {
                    throw CommandFailure("no CA in \(dir): run 'kvctl certs init --dir \(dir)' first")
                }
                let issued = try CertificateIssuer.issue(
                    role: role, name: name, ipAddresses: ip, dnsNames: dns, authority: authority, validityDays: days)
                let folder = out ?? dir
                let certificate = "\(folder)/\(name).pem"
                let key = "\(folder)/\(name)-key.pem"
                try writeFiles(dir: folder, certificate: certificate, key: key, issued: issued)
                if global.json {
                    try printJSON(IssuedDocument(ok: true, certificate: certificate, key: key))
                } else {
                    printError("wrote \(certificate) and \(key) (role \(role))")
                }
            }
        }
    }
}

private struct IssuedDocument: Encodable {
    var ok: Bool
    var certificate: String
    var key: String
}

/// Writes a certificate (0644) and its key (0600, created with that mode so it is never readable by others).
func writeFiles(dir: String, certificate: String, key: String, issued: IssuedCertificate) throws {
    do {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    } catch {
        throw CommandFailure("cannot create \(dir): \(error.localizedDescription)")
    }
    try write(issued.privateKeyPEM, to: key, mode: 0o600)
    try write(issued.certificatePEM, to: certificate, mode: 0o644)
}

func write(_ text: String, to path: String, mode: mode_t) throws {
    let temporary = path + ".tmp"
    unlink(temporary)
    let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL, mode)
    guard descriptor >= 0 else {
        throw CommandFailure("cannot write \(path): \(String(cString: strerror(errno)))")
    }
    let bytes = Array(text.utf8)
    let written = bytes.withUnsafeBytes { Foundation.write(descriptor, $0.baseAddress, $0.count) }
    let synced = fsync(descriptor)
    close(descriptor)
    guard written == bytes.count, synced == 0, rename(temporary, path) == 0 else {
        unlink(temporary)
        throw CommandFailure("cannot write \(path): \(String(cString: strerror(errno)))")
    }
}
