import KVCore

/// SplitMix64: a small seeded generator, so that a failing random test can be replayed from its seed.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) {
        state = seed
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func nodeIDs(_ count: Int) -> [String] {
    (1...count).map { "n\($0)" }
}

/// The preference list by the specification, read literally: sort every vnode, scan for the smallest
/// token >= the key's token (else the smallest token), then walk clockwise collecting distinct nodes.
func referencePreferenceList(_ ring: Ring, _ token: Token) -> [String] {
    let vnodes = ring.nodes.flatMap { node in node.tokens.map { (token: $0, id: node.id) } }
        .sorted { $0.token < $1.token }
    var start = 0
    for (index, vnode) in vnodes.enumerated() where vnode.token >= token.value {
        start = index
        break
    }
    var result: [String] = []
    var index = start
    while result.count < ring.replicationFactor {
        if !result.contains(vnodes[index].id) {
            result.append(vnodes[index].id)
        }
        index = (index + 1) % vnodes.count
    }
    return result
}

/// Largest replica share over the mean one.
func imbalance(_ ring: Ring) -> Double {
    let shares = ring.replicaShare().values
    let mean = Double(ring.replicationFactor) / Double(ring.nodes.count)
    return shares.max()! / mean
}
