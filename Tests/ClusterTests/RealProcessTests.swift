import Testing

/// Every test that starts real `kvd` processes, in two halves that run side by side (scripts/test.sh
/// starts a test process for each; `swift test` runs them as two suites at once), each one test at a
/// time: run all one at a time they kept 1.2 of the two cores busy (they mostly wait on timers and
/// sockets), and more clusters at once would turn deadlines into noise. Each half has a loopback
/// network of its own, so that a test can use any address of its half's network without meeting a node
/// of the other half. Each suite is an extension of one half.
enum RealProcessTests {
    /// The first half, on 127.0.1.0/24.
    @Suite(.serialized, LoopbackNetwork("127.0.1"))
    enum FirstHalf {}

    /// The second half, on 127.0.2.0/24.
    @Suite(.serialized, LoopbackNetwork("127.0.2"))
    enum SecondHalf {}
}

/// The loopback network of the running test's half: a node's address is `Loopback.host(octet)`.
/// Read it in the test's task (a harness keeps the addresses it made); a thread of its own, such as
/// `offThePool`'s, does not see it.
enum Loopback {
    @TaskLocal static var network: String?

    /// `network.octet`, for an octet of 1...254.
    static func host(_ octet: Int) -> String {
        guard let network else {
            Issue.record("a loopback address asked for outside a half of RealProcessTests, or off its task")
            return "127.0.0.\(octet)"
        }
        return "\(network).\(octet)"
    }
}

/// Runs a suite with `Loopback.network` set; its tests, run inside it, inherit the value. Not recursive:
/// a recursive scoping trait on these serialized suites crashed Swift 6.3's runner while it planned the
/// run (`Runner.Plan._recursivelyApplyTraits`).
struct LoopbackNetwork: SuiteTrait, TestScoping {
    let network: String

    init(_ network: String) {
        self.network = network
    }

    func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        try await Loopback.$network.withValue(network) { try await function() }
    }
}
