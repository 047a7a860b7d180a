/// The shares of each operation in a workload, and the choice of the next operation from them.
///
/// The shares are cumulative bands of [0, 1): a uniform draw falls into exactly one, so that over many
/// draws each operation's frequency converges on its share, as YCSB's `DiscreteGenerator` does.
package struct OperationMix: Sendable {
    /// Each operation with a positive share, in `OperationType.allCases` order, and the shares.
    package let shares: [(operation: OperationType, share: Double)]

    /// A mix of the given shares; they must be non-negative and sum to 1 (within rounding).
    package init(_ shares: [OperationType: Double]) {
        precondition(shares.values.allSatisfy { $0 >= 0 }, "an operation's share is negative")
        let total = shares.values.reduce(0, +)
        precondition(abs(total - 1) < 1e-9, "the shares of a mix sum to \(total), not 1")
        self.shares = OperationType.allCases.compactMap { operation in
            guard let share = shares[operation], share > 0 else { return nil }
            return (operation, share)
        }
    }

    /// The share of `operation` (0 when the mix never makes it).
    package func share(of operation: OperationType) -> Double {
        shares.first { $0.operation == operation }?.share ?? 0
    }

    /// The operation whose band holds `draw`, a number in [0, 1).
    package func operation(at draw: Double) -> OperationType {
        precondition(draw >= 0 && draw < 1, "a draw is in [0, 1)")
        var upper = 0.0
        for (operation, share) in shares {
            upper += share
            if draw < upper { return operation }
        }
        // Rounding left the last band a hair short of 1.
        return shares[shares.count - 1].operation
    }

    /// The next operation, drawn from `generator`.
    package func nextOperation(using generator: inout some RandomNumberGenerator) -> OperationType {
        operation(at: generator.nextUnitInterval())
    }
}
