import Foundation
import KVClient
import KVCore
import KVTLS
import Synchronization
import Testing

extension RealProcessTests.FirstHalf {
    /// Real processes (issue 16, "Rotation and revocation"): nodes reload their certificate, key, CA
    /// file and CRL on SIGHUP and `kvctl certs reload`, established connections going on; every node's
    /// certificate and then the CA are rotated under load at QUORUM without a failed request; a reload
    /// of broken files is refused and the node goes on serving; a revoked certificate is refused.
    @Suite(.timeLimit(.minutes(8)))
    struct CertificateRotationClusterTests {
        /// Load at QUORUM from one SDK client, bounded in count and time, until `stop` is set.
        final class Load: Sendable {
            let done = Atomic<Int>(0)
            let failures = Mutex<[String]>([])
            let stop = Atomic<Bool>(false)

            func run(_ client: KVClient) async {
                let deadline = ContinuousClock.now + .seconds(300)
                var index = 0
                while !stop.load(ordering: .relaxed), index < 50_000, ContinuousClock.now < deadline {
                    let key = Array("rotate-\(index % 300)".utf8)
                    let value = Array("v\(index)".utf8)
                    do {
                        _ = try await client.put(key, value: value, consistency: .quorum)
                        let read = try await client.get(key, consistency: .quorum)
                        if read?.value != value {
                            failures.withLock { $0.append("read \(String(decoding: key, as: UTF8.self)): stale") }
                        }
                    } catch {
                        failures.withLock { $0.append("\(error)") }
                    }
                    index += 1
                    done.store(index, ordering: .relaxed)
                }
            }

            /// Waits until `count` more operations (a put and a get each) have finished: the load goes on.
            func advance(by count: Int) async throws {
                let target = done.load(ordering: .relaxed) + count
                let deadline = ContinuousClock.now + .seconds(60)
                while done.load(ordering: .relaxed) < target, ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(20))
                }
                #expect(done.load(ordering: .relaxed) >= target, "the load stalled")
            }
        }

        /// The serial number of the certificate in a PEM file.
        static func serial(_ path: String) throws -> String {
            try #require(try CertificateSummary.read(pem: String(contentsOfFile: path, encoding: .utf8)).first).serial
        }

        /// Copies a file, keeping it private when it is a key.
        static func copy(_ from: String, to: String) throws {
            let data = try Data(contentsOf: URL(fileURLWithPath: from))
            try? FileManager.default.removeItem(atPath: to)
            let mode = from.hasSuffix("-key.pem") ? 0o600 : 0o644
            guard FileManager.default.createFile(atPath: to, contents: data, attributes: [.posixPermissions: mode])
            else { throw HarnessError("cannot write \(to)") }
        }

        /// Waits until `id`'s log says a SIGHUP reloaded the certificate with `serial`.
        static func waitForReload(_ cluster: ClusterHarness, _ id: String, serial: String) async throws {
            func reloaded() -> Bool {
                cluster.log(id, tail: 5000).split(separator: "\n").contains { line in
                    line.contains("certificates reloaded") && line.contains("tls.reload.trigger=SIGHUP")
                        && line.contains("tls.certificate.serial=\(serial)")
                }
            }
            let deadline = ContinuousClock.now + .seconds(30)
            while !reloaded(), ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(reloaded(), "\(id) did not log a SIGHUP reload of serial \(serial):\n\(cluster.log(id))")
        }

        /// `kvctl certs reload --json` (every node, or one): each node reloaded, with the serials and CAs
        /// given.
        static func reload(
            _ cluster: ClusterHarness, node: String? = nil, serials: [String: String] = [:],
            authorities: [String]? = nil, sourceLocation: SourceLocation = #_sourceLocation
        ) async throws {
            let result = try await offThePool {
                try cluster.kvctl(["certs", "reload", "--json"] + (node.map { ["--node", $0] } ?? []))
            }
            #expect(result.status == 0, "\(result.stdout) \(result.stderr)", sourceLocation: sourceLocation)
            let document = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
            let nodes = document?["nodes"] as? [[String: Any]] ?? []
            #expect(
                nodes.count == (node == nil ? cluster.ids.count : 1), "\(result.stdout)", sourceLocation: sourceLocation
            )
            for entry in nodes {
                let id = entry["node"] as? String ?? "?"
                #expect(entry["ok"] as? Bool == true, "\(result.stdout)", sourceLocation: sourceLocation)
                if let serial = serials[id] {
                    #expect(
                        entry["certificateSerial"] as? String == serial, "\(result.stdout)",
                        sourceLocation: sourceLocation)
                }
                if let authorities {
                    #expect(
                        entry["authorities"] as? [String] == authorities, "\(result.stdout)",
                        sourceLocation: sourceLocation)
                }
            }
        }

        @Test func everyCertificateThenTheCARotatedUnderLoadFailNoRequest() async throws {
            let cluster = try ClusterHarness(nodes: 3, firstHost: 87)
            defer { cluster.tearDown() }
            let certs = cluster.certs
            let old = cluster.directory.path + "/ca-old"
            let new = cluster.directory.path + "/ca-new"
            // The old CA moves to a folder of its own: certs/ca.pem is the CA file every node and client
            // reads, which becomes a bundle. Its client certificate is kept for the end.
            try FileManager.default.createDirectory(atPath: old, withIntermediateDirectories: true)
            for file in ["ca.pem", "ca-key.pem", "client.pem", "client-key.pem"] {
                try Self.copy("\(certs)/\(file)", to: "\(old)/\(file)")
            }
            try Self.copy("\(certs)/client.pem", to: "\(certs)/old-client.pem")
            try Self.copy("\(certs)/client-key.pem", to: "\(certs)/old-client-key.pem")
            try await offThePool { try cluster.startAll() }

            let client = try cluster.client(timeout: .seconds(10))
            let load = Load()
            let running = Task { await load.run(client) }
            try await load.advance(by: 20)

            // 1. A new certificate for every node from the same CA: n1 by SIGHUP, n2 and n3 by kvctl.
            for (id, host) in zip(cluster.ids, cluster.hosts) {
                let issued = try await offThePool {
                    try run("kvctl", ["certs", "issue", "--dir", certs, "--role", "node", "--name", id, "--ip", host])
                }
                #expect(issued.status == 0, "\(issued.stderr)")
                let serial = try Self.serial("\(certs)/\(id).pem")
                if id == "n1" {
                    cluster.signal(id, SIGHUP)
                    try await Self.waitForReload(cluster, id, serial: serial)
                } else {
                    try await Self.reload(cluster, node: id, serials: [id: serial])
                }
                try await load.advance(by: 10)
            }

            // 2. The CA. (a) A new CA, in its own folder.
            let made = try await offThePool {
                try run("kvctl", ["certs", "init", "--dir", new, "--name", "QuorumKV test CA 2"])
            }
            #expect(made.status == 0, "\(made.stderr)")
            // (b) Every node and client trusts both CAs: n2 by SIGHUP, the others by kvctl, the load's
            // client by the SDK.
            let bundled = try await offThePool {
                try run("kvctl", ["certs", "bundle", "--out", "\(certs)/ca.pem", "\(old)/ca.pem", "\(new)/ca.pem"])
            }
            #expect(bundled.status == 0, "\(bundled.stderr)")
            cluster.signal("n2", SIGHUP)
            try await Self.waitForReload(cluster, "n2", serial: try Self.serial("\(certs)/n2.pem"))
            try await Self.reload(cluster, authorities: ["QuorumKV cluster CA", "QuorumKV test CA 2"])
            #expect(try client.reloadCertificates().authorities.count == 2)
            try await load.advance(by: 10)
            // (c) Every certificate again, from the new CA, where the nodes and clients read them.
            var serials: [String: String] = [:]
            for (id, host) in zip(cluster.ids, cluster.hosts) {
                let issued = try await offThePool {
                    try run(
                        "kvctl",
                        ["certs", "issue", "--dir", new, "--out", certs, "--role", "node", "--name", id, "--ip", host])
                }
                #expect(issued.status == 0, "\(issued.stderr)")
                serials[id] = try Self.serial("\(certs)/\(id).pem")
            }
            for (name, role) in [("admin", "admin"), ("client", "client")] {
                let issued = try await offThePool {
                    try run("kvctl", ["certs", "issue", "--dir", new, "--out", certs, "--role", role, "--name", name])
                }
                #expect(issued.status == 0, "\(issued.stderr)")
            }
            cluster.signal("n3", SIGHUP)
            try await Self.waitForReload(cluster, "n3", serial: serials["n3"] ?? "")
            try await Self.reload(cluster, node: "n1", serials: serials)
            try await Self.reload(cluster, node: "n2", serials: serials)
            #expect(try client.reloadCertificates().certificate?.issuer == "QuorumKV test CA 2")
            try await load.advance(by: 10)
            // (d) The old CA is trusted no more.
            let dropped = try await offThePool {
                try run("kvctl", ["certs", "bundle", "--out", "\(certs)/ca.pem", "\(new)/ca.pem"])
            }
            #expect(dropped.status == 0, "\(dropped.stderr)")
            try await Self.reload(cluster, serials: serials, authorities: ["QuorumKV test CA 2"])
            #expect(try client.reloadCertificates().authorities.map(\.name) == ["QuorumKV test CA 2"])
            try await load.advance(by: 20)

            load.stop.store(true, ordering: .relaxed)
            await running.value
            #expect(load.done.load(ordering: .relaxed) >= 100)
            #expect(
                load.failures.withLock { $0 }.isEmpty,
                "\(load.failures.withLock { $0.count }) failed requests: \(load.failures.withLock { $0.prefix(5) })")
            await client.close()

            // A client certificate of the old CA is refused now; one of the new CA works.
            let refused = try await offThePool { try cluster.kvctl(["get", "rotate-1"], as: "old-client") }
            #expect(refused.status == 1, "\(refused.stdout) \(refused.stderr)")
            #expect(refused.stderr.contains("unknown ca"), "\(refused.stderr)")
            let read = try await offThePool { try cluster.kvctl(["get", "rotate-1"], as: "client") }
            #expect(read.status == 0, "\(read.stderr)")
            // New connections between nodes, both ways, use the new certificates: n3 restarts, so its
            // peers dial it again, and anti-entropy from n3 and towards it succeeds.
            cluster.stop("n3")
            try await offThePool { try cluster.start("n3") }
            for id in ["n3", "n1"] {
                let repaired = try await offThePool { try cluster.kvctl(["repair", "--node", id]) }
                #expect(repaired.status == 0, "\(repaired.stdout) \(repaired.stderr)")
            }
        }

        @Test func aRefusedReloadKeepsTheNodeServingAndARevokedCertificateIsRefused() async throws {
            let cluster = try ClusterHarness(nodes: 1, firstHost: 90, replicationFactor: 1)
            defer { cluster.tearDown() }
            let help = try run("kvctl", ["certs", "--help"])
            for command in ["reload", "revoke", "bundle", "show"] {
                #expect(help.stdout.contains(command), "\(help.stdout)")
            }
            #expect(try run("kvd", ["--help"]).stdout.contains("--crl"))
            let certs = cluster.certs
            for name in ["eve"] {
                let issued = try run("kvctl", ["certs", "issue", "--dir", certs, "--role", "client", "--name", name])
                #expect(issued.status == 0, "\(issued.stderr)")
            }
            let revoked = try run("kvctl", ["certs", "revoke", "--dir", certs, "--name", "eve"])
            #expect(revoked.status == 0, "\(revoked.stderr)")
            cluster.extraArguments = ["--crl", "\(certs)/crl.pem"]
            try await offThePool { try cluster.startAll() }

            let eve = try await offThePool { try cluster.kvctl(["put", "k", "from eve"], as: "eve") }
            #expect(eve.status == 1 && eve.stderr.contains("revoked"), "\(eve.stderr)")
            let put = try await offThePool { try cluster.kvctl(["put", "k", "v"], as: "client") }
            #expect(put.status == 0, "\(put.stderr)")

            // A broken certificate file: SIGHUP is refused, logged with the reason; the node serves on.
            let certificate = try String(contentsOfFile: "\(certs)/n1.pem", encoding: .utf8)
            try "not a certificate".write(toFile: "\(certs)/n1.pem", atomically: true, encoding: .utf8)
            cluster.signal("n1", SIGHUP)
            let deadline = ContinuousClock.now + .seconds(30)
            while !cluster.log("n1", tail: 50).contains("certificate reload refused"), ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
            }
            let log = cluster.log("n1", tail: 50)
            #expect(log.contains("certificate reload refused") && log.contains("bad certificate PEM"), "\(log)")
            let read = try await offThePool { try cluster.kvctl(["get", "k"], as: "client") }
            #expect(read.status == 0 && read.stdout == "v", "\(read.stdout) \(read.stderr)")
            // kvctl says the same, exit code 1.
            let refused = try await offThePool { try cluster.kvctl(["certs", "reload"]) }
            #expect(refused.status == 1, "\(refused.stdout) \(refused.stderr)")
            #expect(refused.stdout.contains("n1: refused: bad certificate PEM"), "\(refused.stdout)")
            // A key that is not the certificate's: refused too.
            try certificate.write(toFile: "\(certs)/n1.pem", atomically: true, encoding: .utf8)
            let key = try String(contentsOfFile: "\(certs)/n1-key.pem", encoding: .utf8)
            try Self.copy("\(certs)/admin-key.pem", to: "\(certs)/n1-key.pem")
            let mismatched = try await offThePool { try cluster.kvctl(["certs", "reload", "--json"]) }
            #expect(mismatched.status == 1)
            #expect(mismatched.stdout.contains("private key does not match certificate"), "\(mismatched.stdout)")
            try? FileManager.default.removeItem(atPath: "\(certs)/n1-key.pem")
            #expect(
                FileManager.default.createFile(
                    atPath: "\(certs)/n1-key.pem", contents: Data(key.utf8), attributes: [.posixPermissions: 0o600]))

            // Revoking the client certificate takes effect on reload, for new connections.
            let more = try run("kvctl", ["certs", "revoke", "--dir", certs, "--name", "client"])
            #expect(more.status == 0, "\(more.stderr)")
            let reloaded = try await offThePool { try cluster.kvctl(["certs", "reload", "--json"]) }
            #expect(reloaded.status == 0, "\(reloaded.stdout) \(reloaded.stderr)")
            #expect(reloaded.stdout.contains("\"revokedCertificates\":2"), "\(reloaded.stdout)")
            let client = try await offThePool { try cluster.kvctl(["get", "k"], as: "client") }
            #expect(client.status == 1 && client.stderr.contains("revoked"), "\(client.stderr)")
            let admin = try await offThePool { try cluster.kvctl(["get", "k"]) }
            #expect(admin.status == 0, "\(admin.stderr)")
        }
    }
}
