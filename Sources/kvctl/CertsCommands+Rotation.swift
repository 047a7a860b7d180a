import ArgumentParser
import Foundation
import KVClient
import KVCore
import KVTLS

extension Certs {
    /// `kvctl certs reload [--node ID]`: `Admin` reloadCertificates on one node or every node.
    struct Reload: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make nodes read their certificate, key, CA file and CRL file again (admin certificate).",
            discussion: """
                As kill -HUP does: new connections use the new files, established ones go on. A node that \
                refuses them (a file missing or broken, a key that does not match, a certificate that does \
                not verify against its new CA file) keeps what it had and says why. Without --node every \
                node of the cluster map is asked, one after the other. Exit code 1 when a node refused or \
                could not be asked.
                """
        )

        @OptionGroup var global: GlobalOptions

        @Option(help: "Reload this node only (default: every node).")
        var node: String?

        func run() async throws {
            try await reportingFailures(json: global.json) {
                let results: [ReloadDocument] = try await global.withClient { client in
                    let nodes: [String]
                    if let node {
                        nodes = [node]
                    } else {
                        nodes = try await client.latestClusterMap().nodes.filter { $0.state != .removed }.map(\.id)
                    }
                    var results: [ReloadDocument] = []
                    for id in nodes {
                        do {
                            results.append(ReloadDocument(try await client.reloadCertificates(node: id)))
                        } catch {
                            results.append(ReloadDocument(node: id, error: "\(error)"))
                        }
                    }
                    return results
                }
                if global.json {
                    try printJSON(ReloadReport(ok: results.allSatisfy(\.ok), nodes: results))
                } else {
                    for result in results { print("\(result.node): \(result.line)") }
                }
                let failed = results.filter { !$0.ok }
                if !failed.isEmpty {
                    // Not a CommandFailure: with --json that would print a second document.
                    printError(
                        "kvctl: \(failed.count) of \(results.count) nodes did not reload: "
                            + failed.map(\.node).joined(separator: ", "))
                    throw ExitCode(1)
                }
            }
        }
    }

    /// `kvctl certs revoke`: adds certificates to the CA's CRL (or writes one).
    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revoke certificates: write the CA's revocation list (CRL) with them added.",
            discussion: """
                Reads DIR/ca.pem and DIR/ca-key.pem, the CRL file if it exists (its entries are kept), and \
                writes it again signed by the CA, with the certificates named by --name (DIR/NAME.pem) and \
                --certificate added. With neither, writes the list as it is with a fresh date (an empty list for a \
                new CA). Nodes started with --crl FILE refuse a listed certificate in the handshake once \
                they reload (kvctl certs reload, or kill -HUP). During a CA rotation, give each CA's list to \
                the nodes: kvctl certs bundle --out crl.pem OLD/crl.pem NEW/crl.pem.
                """
        )

        @Option(help: "Folder holding ca.pem and ca-key.pem.")
        var dir = "certs/out"

        @Option(help: "Revoke DIR/NAME.pem (repeatable).")
        var name: [String] = []

        @Option(help: "Revoke the certificate in this PEM file (repeatable).")
        var certificate: [String] = []

        @Option(help: "The CRL file to update or create (default DIR/crl.pem).")
        var crl: String?

        @Option(help: "Days until the list's next-update date (nodes go on applying it afterwards).")
        var days = CertificateIssuer.revocationListValidityDaysDefault

        /// Only `--json` applies; the root command takes it (`KVCtl.global`) and hands it on.
        @OptionGroup(visibility: .hidden) var global: GlobalOptions

        func validate() throws {
            guard days > 0 else { throw ValidationError("--days must be positive") }
        }

        func run() async throws {
            try await reportingFailures(json: global.json) {
                let authority: IssuedCertificate
                do {
                    authority = IssuedCertificate(
                        certificatePEM: try String(contentsOfFile: "\(dir)/ca.pem", encoding: .utf8),
                        privateKeyPEM: try String(contentsOfFile: "\(dir)/ca-key.pem", encoding: .utf8))
                } catch {
                    throw CommandFailure("no CA in \(dir): run 'kvctl certs init --dir \(dir)' first")
                }
                let path = crl ?? "\(dir)/crl.pem"
                let existing = FileManager.default.fileExists(atPath: path) ? try readText(path) : nil
                let revoking = try (name.map { "\(dir)/\($0).pem" } + certificate).map { try readText($0) }
                let list = try CertificateIssuer.revocationList(
                    authority: authority, revoking: revoking, existingPEM: existing, validityDays: days)
                try write(list, to: path, mode: 0o644)
                guard let summary = try RevocationListSummary.read(pem: list).first else {
                    throw CommandFailure("the CRL written to \(path) cannot be read back")
                }
                if global.json {
                    try printJSON(
                        RevokeDocument(
                            ok: true, crl: path, number: summary.number, revokedSerials: summary.revokedSerials))
                } else {
                    printError(
                        "wrote \(path): CRL number \(summary.number.map(String.init) ?? "-") of \(summary.issuer), "
                            + "\(summary.revokedSerials.count) certificates revoked; "
                            + "nodes started with --crl \(path) refuse them once reloaded (kvctl certs reload)")
                }
            }
        }
    }

    /// `kvctl certs bundle --out FILE INPUT...`: CA certificates (and CRLs) in one file.
    struct Bundle: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write CA certificates (or CRLs) from several PEM files into one file.",
            discussion: """
                The CA file of nodes and clients may hold several CAs: during a CA rotation, the old and the \
                new one, so that certificates from either are trusted. Each input must hold CA certificates \
                or CRLs (leaf certificates are refused); duplicates are written once. The output is replaced \
                atomically: a node reading it meanwhile sees the old file or the new one.
                """
        )

        @Option(help: "The file to write (it may also be one of the inputs).")
        var out: String

        @Argument(help: "PEM files of CA certificates or CRLs, in the order wanted.")
        var inputs: [String]

        /// Only `--json` applies; the root command takes it (`KVCtl.global`) and hands it on.
        @OptionGroup(visibility: .hidden) var global: GlobalOptions

        func validate() throws {
            guard !inputs.isEmpty else { throw ValidationError("name at least one input file") }
        }

        func run() async throws {
            try await reportingFailures(json: global.json) {
                var blocks: [String] = []
                var authorities: [String] = []
                var lists = 0
                for input in inputs {
                    let found = pemBlocks(try readText(input))
                    guard !found.isEmpty else { throw CommandFailure("\(input) holds no PEM certificate or CRL") }
                    for block in found where !blocks.contains(block) {
                        if block.hasPrefix("-----BEGIN CERTIFICATE-----") {
                            guard let certificate = try? CertificateSummary.read(pem: block).first else {
                                throw CommandFailure("\(input) holds a certificate that cannot be read")
                            }
                            guard certificate.isAuthority else {
                                throw CommandFailure(
                                    "\(input): '\(certificate.name)' is not a CA certificate; a CA file holds CAs only")
                            }
                            authorities.append(certificate.name)
                        } else if block.hasPrefix("-----BEGIN X509 CRL-----") {
                            guard (try? RevocationListSummary.read(pem: block).first) != nil else {
                                throw CommandFailure("\(input) holds a CRL that cannot be read")
                            }
                            lists += 1
                        } else {
                            throw CommandFailure("\(input) holds PEM that is neither a certificate nor a CRL")
                        }
                        blocks.append(block)
                    }
                }
                try write(blocks.joined(), to: out, mode: 0o644)
                if global.json {
                    try printJSON(BundleDocument(ok: true, file: out, authorities: authorities, revocationLists: lists))
                } else {
                    printError(
                        "wrote \(out): \(authorities.count) CA certificates"
                            + (authorities.isEmpty ? "" : " (\(authorities.joined(separator: ", ")))")
                            + (lists > 0 ? ", \(lists) CRLs" : ""))
                }
            }
        }
    }

    /// `kvctl certs show FILE...`: what certificates and CRLs a file holds.
    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the certificates and CRLs in PEM files: name, role, serial, issuer, validity.")

        @Argument(help: "PEM files.")
        var files: [String]

        /// Only `--json` applies; the root command takes it (`KVCtl.global`) and hands it on.
        @OptionGroup(visibility: .hidden) var global: GlobalOptions

        func validate() throws {
            guard !files.isEmpty else { throw ValidationError("name at least one file") }
        }

        func run() async throws {
            try await reportingFailures(json: global.json) {
                var certificates: [CertificateDocument] = []
                var lists: [RevocationListDocument] = []
                for file in files {
                    let text = try readText(file)
                    let found = (try? CertificateSummary.read(pem: text)) ?? []
                    let revocations = try RevocationListSummary.read(pem: text)
                    guard !found.isEmpty || !revocations.isEmpty else {
                        throw CommandFailure("\(file) holds no certificate or CRL")
                    }
                    certificates += found.map { CertificateDocument(file: file, $0) }
                    lists += revocations.map { RevocationListDocument(file: file, $0) }
                }
                if global.json {
                    try printJSON(ShowDocument(ok: true, certificates: certificates, revocationLists: lists))
                    return
                }
                for certificate in certificates { print(certificate.line) }
                for list in lists { print(list.line) }
            }
        }
    }
}

/// Reads a whole text file, or fails naming it.
private func readText(_ path: String) throws -> String {
    do {
        return try String(contentsOfFile: path, encoding: .utf8)
    } catch {
        throw CommandFailure("cannot read \(path): \(error.localizedDescription)")
    }
}

/// The PEM blocks of `text` (`-----BEGIN X-----` to `-----END X-----`), each ending with a newline.
private func pemBlocks(_ text: String) -> [String] {
    var blocks: [String] = []
    var current: [Substring]?
    for line in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline) {
        let trimmed = line.trimmingCharacters(in: .whitespaces)
        if trimmed.hasPrefix("-----BEGIN ") {
            current = [Substring(trimmed)]
        } else if var lines = current {
            lines.append(Substring(trimmed))
            if trimmed.hasPrefix("-----END ") {
                blocks.append(lines.joined(separator: "\n") + "\n")
                current = nil
            } else {
                current = lines
            }
        }
    }
    return blocks
}

private func date(_ seconds: UInt64?) -> String {
    seconds.map { CertificateSummary.format(seconds: $0) } ?? "-"
}

private struct ReloadReport: Encodable {
    var ok: Bool
    var nodes: [ReloadDocument]
}

/// One node's answer to `kvctl certs reload`.
private struct ReloadDocument: Encodable {
    var node: String
    var ok: Bool
    /// Why the node refused the new files (it keeps what it had).
    var refusal: String?
    /// Why the node could not be asked.
    var error: String?
    var certificateName: String?
    var certificateSerial: String?
    var certificateIssuer: String?
    var certificateNotAfterSeconds: UInt64?
    var authorities: [String]?
    var revokedCertificates: Int?

    init(_ result: CertificateReloadResult) {
        node = result.nodeID
        ok = result.isReloaded
        refusal = result.refusal
        if result.isReloaded {
            certificateName = result.certificateName
            certificateSerial = result.certificateSerial
            certificateIssuer = result.certificateIssuer
            certificateNotAfterSeconds = result.certificateNotAfterSeconds
            authorities = result.authorities
            revokedCertificates = result.revokedCertificates
        }
    }

    init(node: String, error: String) {
        self.node = node
        self.ok = false
        self.error = error
    }

    var line: String {
        if let refusal { return "refused: \(refusal)" }
        if let error { return "failed: \(error)" }
        var text =
            "reloaded: \(certificateName ?? "?") serial \(certificateSerial ?? "?") issued by "
            + "\(certificateIssuer ?? "?"), expires \(date(certificateNotAfterSeconds)); "
            + "trusts \((authorities ?? []).joined(separator: ", "))"
        if let revokedCertificates { text += "; CRLs revoke \(revokedCertificates)" }
        return text
    }
}

private struct RevokeDocument: Encodable {
    var ok: Bool
    var crl: String
    var number: UInt64?
    var revokedSerials: [String]
}

private struct BundleDocument: Encodable {
    var ok: Bool
    var file: String
    var authorities: [String]
    var revocationLists: Int
}

private struct ShowDocument: Encodable {
    var ok: Bool
    var certificates: [CertificateDocument]
    var revocationLists: [RevocationListDocument]
}

private struct CertificateDocument: Encodable {
    var file: String
    var name: String
    /// `node`, `client`, `admin`, or `ca`.
    var role: String?
    var serial: String
    var issuer: String
    var notBeforeSeconds: UInt64?
    var notAfterSeconds: UInt64?

    init(file: String, _ summary: CertificateSummary) {
        self.file = file
        name = summary.name
        role = summary.isAuthority ? "ca" : summary.role.map { "\($0)" }
        serial = summary.serial
        issuer = summary.issuer
        notBeforeSeconds = summary.notBeforeSeconds
        notAfterSeconds = summary.notAfterSeconds
    }

    var line: String {
        "\(file): \(role ?? "no role") '\(name)' serial \(serial) issued by '\(issuer)', "
            + "valid \(date(notBeforeSeconds)) to \(date(notAfterSeconds))"
    }
}

private struct RevocationListDocument: Encodable {
    var file: String
    var issuer: String
    var number: UInt64?
    var revokedSerials: [String]
    var thisUpdateSeconds: UInt64?
    var nextUpdateSeconds: UInt64?

    init(file: String, _ summary: RevocationListSummary) {
        self.file = file
        issuer = summary.issuer
        number = summary.number
        revokedSerials = summary.revokedSerials
        thisUpdateSeconds = summary.thisUpdateSeconds
        nextUpdateSeconds = summary.nextUpdateSeconds
    }

    var line: String {
        "\(file): CRL \(number.map(String.init) ?? "-") of '\(issuer)', \(date(thisUpdateSeconds)), next update "
            + "\(date(nextUpdateSeconds)): revokes \(revokedSerials.isEmpty ? "nothing" : revokedSerials.joined(separator: ", "))"
    }
}
