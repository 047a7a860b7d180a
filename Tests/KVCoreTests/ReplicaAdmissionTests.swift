import KVCore
import Testing

struct ReplicaAdmissionTests {
    /// A key whose token `node` replicates in `ring` (or does not, with `replicated: false`).
    static func key(_ ring: Ring, _ node: String, replicated: Bool) -> [UInt8] {
        for index in 0..<10_000 {
            let key = Array("key-\(index)".utf8)
            if ring.preferenceList(forKey: key).contains(node) == replicated { return key }
        }
        Issue.record("no key found")
        return []
    }

    @Test func withNothingChangingAReplicaServesItsKeysAndRefusesTheOthers() throws {
        let map = RangeMovementTests.cluster(5)
        let ring = try map.ring()
        let admission = try ReplicaAdmission(node: "n1", map: map)
        let mine = Token(key: Self.key(ring, "n1", replicated: true))
        let other = Token(key: Self.key(ring, "n1", replicated: false))
        #expect(admission.access(mine) == .readWrite)
        #expect(admission.access(other) == .none)
        #expect(admission.refusal(mine, write: false) == nil)
        #expect(admission.refusal(mine, write: true, writeEpoch: 1) == nil)
        #expect(admission.refusal(other, write: false)?.contains("not a replica of this key") == true)
        #expect(admission.refusal(other, write: true)?.contains("not a replica of this key") == true)
    }

    /// `kvsim --seed 70164 --membership`: a node still receiving a range answered a read of it from
    /// its incomplete copy. It takes writes there, and refuses reads until ownership switches.
    @Test func aNodeReceivingARangeTakesWritesButRefusesReadsUntilOwnershipSwitches() throws {
        let joining = try RangeMovementTests.cluster(4).applying(
            .join(node: "n5", address: "127.0.0.5:7411", tokensPerNode: 16))
        let receiving = Token(key: Self.key(try joining.nextRing(), "n5", replicated: true))
        let admission = try ReplicaAdmission(node: "n5", map: joining)
        #expect(admission.access(receiving) == .writeOnly)
        #expect(admission.refusal(receiving, write: true, writeEpoch: joining.epoch) == nil)
        #expect(admission.refusal(receiving, write: false)?.contains("still receiving") == true)
        // The old owners keep serving reads of it meanwhile.
        let owners = try joining.ring().preferenceList(for: receiving)
        for owner in owners {
            #expect(try ReplicaAdmission(node: owner, map: joining).access(receiving) == .readWrite)
        }
        let done = try RangeMovementTests.finish(joining)
        #expect(try ReplicaAdmission(node: "n5", map: done).access(receiving) == .readWrite)
    }

    @Test func aWriteMadeWithAMapOlderThanTheChangeIsRefused() throws {
        let base = RangeMovementTests.cluster(4)
        let joining = try base.applying(.join(node: "n5", address: "127.0.0.5:7411", tokensPerNode: 16))
        let token = Token(key: Self.key(try joining.ring(), "n1", replicated: true))
        let admission = try ReplicaAdmission(node: "n1", map: joining)
        #expect(admission.refusal(token, write: true, writeEpoch: base.epoch)?.contains("older than") == true)
        #expect(admission.refusal(token, write: true, writeEpoch: joining.epoch) == nil)
        #expect(admission.refusal(token, write: true, writeEpoch: 0) == nil, "0: the epoch is not stated")
        #expect(admission.refusal(token, write: false) == nil, "reads carry no epoch")
    }
}
