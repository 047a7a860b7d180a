import KVCore
import Testing

/// The handshake's version rule (`ProtocolRange`) and the switch for features that need every member
/// (`ProtocolAdoption`).
@Suite("Protocol negotiation")
struct ProtocolNegotiationTests {
    private static func range(_ lowest: UInt16, _ highest: UInt16) -> ProtocolRange {
        ProtocolRange(lowest: lowest, highest: highest)!
    }

    struct Meeting: Sendable, CustomTestStringConvertible {
        var mine: ProtocolRange
        var theirs: ProtocolRange
        var agreed: UInt16?
        var testDescription: String { "\(mine) meets \(theirs): \(agreed.map(String.init) ?? "none")" }
    }

    static let meetings: [Meeting] = [
        Meeting(mine: range(3, 4), theirs: range(3, 4), agreed: 4),
        Meeting(mine: range(3, 4), theirs: range(3, 3), agreed: 3),
        Meeting(mine: range(3, 3), theirs: range(3, 4), agreed: 3),
        Meeting(mine: range(4, 5), theirs: range(3, 4), agreed: 4),
        Meeting(mine: range(3, 4), theirs: range(5, 6), agreed: nil),
        Meeting(mine: range(4, 4), theirs: range(3, 3), agreed: nil),
        Meeting(mine: range(3, 4), theirs: range(1, 65535), agreed: 4),
        Meeting(mine: range(3, 4), theirs: range(65535, 65535), agreed: nil),
    ]

    @Test("the highest version both speak; none when the ranges do not meet", arguments: meetings)
    func negotiates(_ meeting: Meeting) {
        #expect(meeting.mine.negotiate(with: meeting.theirs) == meeting.agreed)
        // The rule is symmetric: either side would pick the same.
        #expect(meeting.theirs.negotiate(with: meeting.mine) == meeting.agreed)
    }

    @Test("a peer's announced range is bounded: absent lowest is its highest, empty or zero ranges are none")
    func announcedRangeIsBounded() {
        #expect(ProtocolRange.announced(highest: 3, lowest: nil) == Self.range(3, 3))
        #expect(ProtocolRange.announced(highest: 4, lowest: 3) == Self.range(3, 4))
        #expect(ProtocolRange.announced(highest: 3, lowest: 4) == nil)
        #expect(ProtocolRange.announced(highest: 0, lowest: nil) == nil)
        #expect(ProtocolRange.announced(highest: 4, lowest: 0) == nil)
        #expect(ProtocolRange.announced(highest: .max, lowest: .max) == Self.range(.max, .max))
        #expect(ProtocolRange.announced(highest: .max, lowest: 0) == nil)
    }

    @Test("the retry after unsupportedVersion announces one version fewer, once")
    func retryDropsTheHighest() {
        let ours = Self.range(3, 4)
        let retry = ours.withoutHighest
        #expect(retry == Self.range(3, 3))
        // A version-3 peer reads only the highest: the retry is what it accepts.
        #expect(retry?.negotiate(with: Self.range(3, 3)) == 3)
        // Nothing left to drop: no second retry.
        #expect(retry?.withoutHighest == nil)
        #expect(Self.range(1, 1).withoutHighest == nil)
    }

    @Test("--protocol-max caps the highest, never below the lowest")
    func capping() {
        #expect(Self.range(3, 4).capped(at: 3) == Self.range(3, 3))
        #expect(Self.range(3, 4).capped(at: 9) == Self.range(3, 4))
        #expect(Self.range(3, 4).capped(at: 2) == nil)
        #expect("\(Self.range(3, 4))" == "3...4")
        #expect("\(Self.range(3, 3))" == "3")
    }

    private static let map = ClusterMap(
        clusterID: "c", epoch: 1, replicationFactor: 1,
        nodes: [
            ClusterMap.Node(id: "n1", address: "a:1", tokens: [1], state: .normal),
            ClusterMap.Node(id: "n2", address: "a:2", tokens: [2], state: .down),
            ClusterMap.Node(id: "n3", address: "a:3", tokens: [3], state: .removed),
        ])

    @Test("a feature needing every member: on only when every member not removed is known at the version")
    func everyMember() {
        #expect(ProtocolAdoption.everyMember(of: Self.map, speaks: 4, versions: ["n1": 4, "n2": 4]))
        // n3 is removed: its version does not matter.
        #expect(ProtocolAdoption.everyMember(of: Self.map, speaks: 4, versions: ["n1": 4, "n2": 5, "n3": 3]))
        // A member still at 3, even one marked down, keeps it off.
        #expect(!ProtocolAdoption.everyMember(of: Self.map, speaks: 4, versions: ["n1": 4, "n2": 3]))
        // A member not met yet counts as not speaking it.
        #expect(!ProtocolAdoption.everyMember(of: Self.map, speaks: 4, versions: ["n1": 4]))
        #expect(ProtocolAdoption.everyMember(of: Self.map, speaks: 3, versions: ["n1": 4, "n2": 3]))
    }
}
