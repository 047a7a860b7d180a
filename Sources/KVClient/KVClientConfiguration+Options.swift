import KVConfig
import KVCore
import KVTLS

extension KVClientConfiguration {
    /// A configuration from command-line style options, each falling back to its `QUORUMKV_*`
    /// variable, as `kvctl` and `kvbench` take them.
    ///
    /// A flag wins over the environment; between a cluster file and endpoints (both flags, or both
    /// variables) the cluster file wins. `QUORUMKV_HINTED_HANDOFF`, `QUORUMKV_SLOPPY_QUORUM`,
    /// `QUORUMKV_SPECULATIVE_READS` and `QUORUMKV_FASTEST_REPLICAS_FIRST` (1 or 0) set ``hintedHandoff``,
    /// ``sloppyQuorum``, ``speculativeReads`` and ``fastestReplicasFirst``; `QUORUMKV_ZONE` sets ``zone``
    /// unless `zone` is given.
    ///
    /// - Throws: `KVClientError.invalidArgument` when the certificate or the cluster is not given;
    ///   `ConfigError` when the cluster file cannot be used.
    /// The cluster file a command reads: `clusterFile` (`--cluster`), else `QUORUMKV_CLUSTER` unless
    /// `endpoints` (`--endpoints`) were given; nil when it asks endpoints.
    package static func clusterFilePath(clusterFile: String?, endpoints: String?, environment: [String: String])
        -> String?
    {
        clusterFile ?? (endpoints == nil ? environment["QUORUMKV_CLUSTER"].flatMap { $0.isEmpty ? nil : $0 } : nil)
    }

    package init(
        clusterFile: String?,
        endpoints: String?,
        clusterID: String?,
        caFile: String?,
        certificateFile: String?,
        keyFile: String?,
        zone: String? = nil,
        environment: [String: String]
    ) throws {
        func variable(_ name: String) -> String? {
            environment[name].flatMap { $0.isEmpty ? nil : $0 }
        }
        guard let ca = caFile ?? variable("QUORUMKV_CA"),
            let certificate = certificateFile ?? variable("QUORUMKV_CERT"),
            let key = keyFile ?? variable("QUORUMKV_KEY")
        else {
            throw KVClientError.invalidArgument(
                "no client certificate: pass --ca, --cert and --key or set QUORUMKV_CA, QUORUMKV_CERT, QUORUMKV_KEY")
        }
        let tls = TLSConfiguration(caFile: ca, certificateFile: certificate, keyFile: key)
        if let path = Self.clusterFilePath(clusterFile: clusterFile, endpoints: endpoints, environment: environment) {
            let file = try ClusterFile.loadWithSeeds(path: path)
            self.init(cluster: file.map, seeds: file.seeds, tls: tls)
        } else if let endpoints = endpoints ?? variable("QUORUMKV_ENDPOINTS") {
            self.init(
                endpoints: endpoints.split(separator: ",").map { $0.trimmingPrefix(" ") }.map(String.init)
                    .filter { !$0.isEmpty },
                tls: tls)
            self.clusterID = clusterID ?? variable("QUORUMKV_CLUSTER_ID") ?? ClusterFile.defaultClusterID
        } else {
            throw KVClientError.invalidArgument(
                "no cluster: pass --cluster FILE or --endpoints HOST:PORT (or set QUORUMKV_CLUSTER / QUORUMKV_ENDPOINTS)"
            )
        }
        func flag(_ name: String) throws -> Bool? {
            switch variable(name)?.lowercased() {
            case nil: return nil
            case "1", "true", "yes", "on": return true
            case "0", "false", "no", "off": return false
            case let other?: throw KVClientError.invalidArgument("\(name)=\(other) is not a boolean (use 1 or 0)")
            }
        }
        hintedHandoff = try flag("QUORUMKV_HINTED_HANDOFF") ?? hintedHandoff
        sloppyQuorum = try flag("QUORUMKV_SLOPPY_QUORUM") ?? sloppyQuorum
        speculativeReads = try flag("QUORUMKV_SPECULATIVE_READS") ?? speculativeReads
        fastestReplicasFirst = try flag("QUORUMKV_FASTEST_REPLICAS_FIRST") ?? fastestReplicasFirst
        self.zone = zone ?? variable("QUORUMKV_ZONE") ?? ""
    }
}
