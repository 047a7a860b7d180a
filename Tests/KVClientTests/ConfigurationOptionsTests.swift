import Testing

@testable import KVClient

/// The `QUORUMKV_*` switches kvctl and kvbench read (`KVClientConfiguration(clusterFile:…environment:)`).
@Suite struct ConfigurationOptionsTests {
    static func configuration(_ environment: [String: String]) throws -> KVClientConfiguration {
        try KVClientConfiguration(
            clusterFile: nil, endpoints: "127.0.0.1:7411", clusterID: "c", caFile: "ca", certificateFile: "c",
            keyFile: "k", environment: environment)
    }

    @Test func switchesFollowTheirVariablesAndKeepTheDefaultsWithout() throws {
        let defaults = try Self.configuration([:])
        #expect(defaults.speculativeReads && defaults.hintedHandoff && !defaults.sloppyQuorum)
        #expect(defaults.fastestReplicasFirst)
        let set = try Self.configuration([
            "QUORUMKV_SPECULATIVE_READS": "0", "QUORUMKV_HINTED_HANDOFF": "off", "QUORUMKV_SLOPPY_QUORUM": "1",
            "QUORUMKV_FASTEST_REPLICAS_FIRST": "false",
        ])
        #expect(!set.speculativeReads && !set.hintedHandoff && set.sloppyQuorum && !set.fastestReplicasFirst)
    }

    @Test func aSwitchThatIsNotABooleanIsRefused() {
        #expect(throws: KVClientError.self) { try Self.configuration(["QUORUMKV_SPECULATIVE_READS": "maybe"]) }
    }
}
