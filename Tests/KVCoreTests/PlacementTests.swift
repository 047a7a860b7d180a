import Foundation
import KVCore
import Testing

/// `Placement`: replicas spread over zones (RING.md, "Placement"), checked against a plain walk of the
/// ring written from the spec, and `proto-spec/vectors/ring-zones.txt`.
@Suite struct PlacementTests {
    /// n1…n6 allocated as usual, in three zones: n1, n4 in dc1; n2, n5 in dc2; n3, n6 in dc3.
    static func sixNodes(zones: [String] = ["dc1", "dc2", "dc3"]) -> [RingNode] {
        TokenAllocator.allocate(nodeIDs: nodeIDs(6)).enumerated().map { index, node in
            RingNode(id: node.id, tokens: node.tokens, zone: zones[index % zones.count])
        }
    }

    /// The spec's walk, one key at a time: from the owner vnode clockwise, each node once; taken while
    /// its zone holds fewer than the rule allows; for `spread`, then the passed-over nodes in order.
    static func walk(_ nodes: [RingNode], _ placement: Placement, token: Token) -> [String] {
        let vnodes = nodes.flatMap { node in node.tokens.map { (token: $0, node: node) } }.sorted {
            $0.token < $1.token
        }
        let owner = vnodes.firstIndex { $0.token >= token.value } ?? 0
        var met = Set<String>()
        var list: [String] = []
        var passedOver: [String] = []
        var held: [String: Int] = [:]
        for step in 0..<vnodes.count where list.count < placement.replicationFactor {
            let node = vnodes[(owner + step) % vnodes.count].node
            guard met.insert(node.id).inserted else { continue }
            let allowed: Int =
                switch placement {
                case .simple(let replicas): replicas
                case .spread(_, let perZone): perZone
                case .zones(let counts): counts.first { $0.zone == node.zone }?.count ?? 0
                }
            if held[node.zone, default: 0] < allowed {
                held[node.zone, default: 0] += 1
                list.append(node.id)
            } else {
                passedOver.append(node.id)
            }
        }
        if case .spread = placement {
            list += passedOver.prefix(placement.replicationFactor - list.count)
        }
        return list
    }

    static let keys = (0..<2000).map { Array("placement-\($0)".utf8) }

    @Test(arguments: [
        Placement.zones(["dc1": 1, "dc2": 1, "dc3": 1]), .zones(["dc1": 2, "dc2": 1]), .zones(["dc3": 2]),
        .spread(replicas: 3, perZone: 1), .spread(replicas: 5, perZone: 2), .simple(replicas: 3),
    ])
    func preferenceListsFollowTheWalk(_ placement: Placement) throws {
        let nodes = Self.sixNodes()
        let ring = try Ring(nodes: nodes, placement: placement)
        #expect(ring.replicationFactor == placement.replicationFactor)
        let zoneOf = Dictionary(uniqueKeysWithValues: nodes.map { ($0.id, $0.zone) })
        for key in Self.keys {
            let list = ring.preferenceList(forKey: key)
            #expect(list == Self.walk(nodes, placement, token: Token(key: key)), "key \(hex(key))")
            #expect(Set(list).count == list.count)
            if case .zones(let counts) = placement {
                for wanted in counts {
                    #expect(list.count { zoneOf[$0] == wanted.zone } == wanted.count)
                }
            }
        }
    }

    /// One replica per zone over three zones: every key in every zone; with a zone lost, two copies left.
    @Test func oneReplicaPerZoneSpreadsEveryKeyOverThreeZones() throws {
        let nodes = Self.sixNodes()
        let ring = try Ring(nodes: nodes, placement: .spread(replicas: 3, perZone: 1))
        let zoneOf = Dictionary(uniqueKeysWithValues: nodes.map { ($0.id, $0.zone) })
        for key in Self.keys {
            #expect(Set(ring.preferenceList(forKey: key).map { zoneOf[$0]! }) == ["dc1", "dc2", "dc3"])
        }
        // With two zones only, the third replica is the first node passed over: two zones, one twice.
        let two = try Ring(nodes: Self.sixNodes(zones: ["a", "b"]), placement: .spread(replicas: 3, perZone: 1))
        for key in Self.keys.prefix(200) {
            let list = two.preferenceList(forKey: key)
            #expect(list.count == 3 && Set(list).count == 3)
        }
    }

    /// `simple` through `init(nodes:placement:)` is the ring it always was.
    @Test func simplePlacementIsTheRingAsBefore() throws {
        let nodes = Self.sixNodes()
        let zoned = try Ring(nodes: nodes, placement: .simple(replicas: 3))
        let plain = try Ring(nodes: nodes, replicationFactor: 3)
        #expect(zoned == plain)
        for key in Self.keys.prefix(300) {
            #expect(zoned.preferenceList(forKey: key) == plain.preferenceList(forKey: key))
        }
    }

    @Test func rulesTheNodesCannotMeetAreRefused() {
        let nodes = Self.sixNodes()
        #expect(throws: RingError.zoneTooSmall("dc1", nodes: 2, replicas: 3)) {
            try Ring(nodes: nodes, placement: .zones(["dc1": 3]))
        }
        #expect(throws: RingError.zoneTooSmall("mars", nodes: 0, replicas: 1)) {
            try Ring(nodes: nodes, placement: .zones(["dc1": 1, "mars": 1]))
        }
        for invalid in [
            Placement.zones(["dc1": 0]), .zones([:]), .spread(replicas: 3, perZone: 0),
            .zones([.init(zone: "dc1", count: 1), .init(zone: "dc1", count: 1)]),
            .zones([.init(zone: "dc1", count: Int.max), .init(zone: "dc2", count: Int.max)]),
        ] {
            #expect(throws: RingError.self) { try Ring(nodes: nodes, placement: invalid) }
        }
        #expect(throws: RingError.replicationFactorOutOfRange(7, nodeCount: 6)) {
            try Ring(nodes: nodes, placement: .spread(replicas: 7, perZone: 3))
        }
    }

    @Test(arguments: ["simple:3", "zones:dc1=2,dc2=1", "spread:3/1"])
    func descriptionsParseBack(_ text: String) throws {
        #expect(try #require(Placement(parsing: text)).description == text)
    }

    @Test(arguments: ["", "simple", "simple:x", "zones:", "zones:dc1", "zones:dc1=1,dc1=2", "spread:3", "ring:3"])
    func malformedPlacementsDoNotParse(_ text: String) {
        #expect(Placement(parsing: text) == nil)
    }

    // MARK: Vectors

    static let vectorFile = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("proto-spec/vectors/ring-zones.txt")

    static let vectorPlacements: [Placement] = [
        .zones(["dc1": 1, "dc2": 1, "dc3": 1]), .zones(["dc1": 2, "dc2": 1]), .spread(replicas: 3, perZone: 1),
        .spread(replicas: 4, perZone: 1),
    ]

    /// The vector file's text, from the implementation.
    static func vectorText() throws -> String {
        let nodes = sixNodes(zones: ["dc1", "dc2", "dc3", "dc1", "dc2", "dc2"])
        var lines = [
            "# QuorumKV placement vectors; the format is in ../RING.md, \"Placement\".",
            "# The ring: TokenAllocator.allocate(nodeIDs: [n1 ... n6]), zones dc1: n1 n4, dc2: n2 n5 n6, dc3: n3.",
        ]
        for node in nodes {
            lines.append(
                (["node", node.id, node.zone] + node.tokens.map { Token($0).description }).joined(separator: " "))
        }
        for placement in vectorPlacements {
            let ring = try Ring(nodes: nodes, placement: placement)
            lines.append("placement \(placement)")
            for index in 0..<12 {
                let key = Array("key-\(index)".utf8)
                lines.append(
                    "key \(hex(key)) \(Token(key: key)) \(ring.preferenceList(forKey: key).joined(separator: ","))")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Writes the vector file; run once with `KVCORE_WRITE_VECTORS=1 swift test --filter writePlacementVectors`.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["KVCORE_WRITE_VECTORS"] == "1"))
    func writePlacementVectors() throws {
        try Self.vectorText().write(to: Self.vectorFile, atomically: true, encoding: .utf8)
    }

    /// The file is what the implementation gives, and a reader of the spec alone (the walk above, from
    /// the file's own `node` and `placement` lines) gets every `key` line.
    @Test func ringZonesVectorsHold() throws {
        let text = try String(contentsOf: Self.vectorFile, encoding: .utf8)
        #expect(text == (try Self.vectorText()), "regenerate with KVCORE_WRITE_VECTORS=1 if the change is meant")
        var nodes: [RingNode] = []
        var placement: Placement?
        var checked = 0
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let fields = line.split(separator: " ").map(String.init)
            switch fields.first {
            case "node":
                nodes.append(
                    RingNode(
                        id: fields[1], tokens: fields.dropFirst(3).compactMap { UInt64($0, radix: 16) }, zone: fields[2]
                    ))
            case "placement":
                placement = Placement(parsing: fields[1])
            case "key":
                let rule = try #require(placement)
                let key = try #require(bytes(hex: fields[1]))
                #expect(
                    Self.walk(nodes, rule, token: Token(key: key)) == fields[3].split(separator: ",").map(String.init))
                checked += 1
            default:
                Issue.record("unexpected line: \(line)")
            }
        }
        #expect(checked == 12 * Self.vectorPlacements.count)
    }
}
