#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Zipfian-distributed item numbers in `0..<itemCount`, item 0 the most popular: Gray et al.'s
/// generator ("Quickly Generating Billion-Record Synthetic Databases", SIGMOD 1994) as YCSB's
/// `ZipfianGenerator` implements it.
///
/// Item `i` (rank `i + 1`) is drawn with probability `(i + 1)^-θ / ζ(n, θ)`. The generator needs
/// ζ(n, θ) = Σ_{k=1…n} k^-θ, computed once at construction: exactly for the first
/// `zetaExactTermsMax` terms and, beyond them, from the Euler–Maclaurin formula, so that the cost is
/// bounded whatever the item count: at most 2^20 `pow` calls, about 40 ms on the project's 2-core
/// machine (release build), once per run; copies share nothing and cost nothing more. (YCSB sums
/// every term, minutes for billions of items, and ships ζ(10^10, 0.99) as a constant instead; ours
/// matches that constant to 1e-9, see the tests.)
///
/// Ranks 1 and 2 come out with exactly their share; higher ranks follow the continuous
/// approximation of the paper, close to but not exactly the discrete law.
///
/// The item count may grow (`latest` follows inserts): ζ is then extended from the last count, in
/// time proportional to the growth, as YCSB does. No randomness is inside: each draw takes its
/// uniform number from the caller's generator.
package struct ZipfianGenerator: Sendable {
    /// YCSB's default Zipfian constant θ.
    package static let constantDefault = 0.99

    /// The terms of ζ summed one by one; the rest of the sum comes from a closed formula.
    package static let zetaExactTermsMax = 1 << 20

    /// The items drawn from: `0..<itemCount`.
    package private(set) var itemCount: Int
    /// The Zipfian constant θ, in (0, 1).
    package let theta: Double
    /// ζ(itemCount, θ).
    package private(set) var zetaItemCount: Double
    private let alpha: Double
    private let zetaTwo: Double
    private var eta: Double

    /// A generator over `itemCount` items with constant `theta`.
    package init(itemCount: Int, theta: Double = ZipfianGenerator.constantDefault) {
        precondition(itemCount > 0, "a Zipfian over no items")
        precondition(theta > 0 && theta < 1, "the Zipfian constant is in (0, 1)")
        self.itemCount = itemCount
        self.theta = theta
        alpha = 1 / (1 - theta)
        zetaTwo = Self.zeta(2, theta: theta)
        zetaItemCount = Self.zeta(itemCount, theta: theta)
        eta = 0
        eta = Self.eta(itemCount: itemCount, theta: theta, zetaTwo: zetaTwo, zetaItemCount: zetaItemCount)
    }

    /// The next item in `0..<itemCount`.
    package func next(using generator: inout some RandomNumberGenerator) -> Int {
        let uniform = generator.nextUnitInterval()
        let scaled = uniform * zetaItemCount
        if scaled < 1 { return 0 }
        if itemCount > 1 && scaled < 1 + pow(0.5, theta) { return 1 }
        let item = Double(itemCount) * pow(eta * uniform - eta + 1, alpha)
        return min(itemCount - 1, Int(item))
    }

    /// Grows (or shrinks) the items to `0..<count`, extending ζ from the current count.
    package mutating func resize(to count: Int) {
        precondition(count > 0, "a Zipfian over no items")
        guard count != itemCount else { return }
        if count > itemCount && count <= Self.zetaExactTermsMax {
            for term in (itemCount + 1)...count {
                zetaItemCount += pow(Double(term), -theta)
            }
        } else {
            zetaItemCount = Self.zeta(count, theta: theta)
        }
        itemCount = count
        eta = Self.eta(itemCount: count, theta: theta, zetaTwo: zetaTwo, zetaItemCount: zetaItemCount)
    }

    /// ζ(n, θ) = Σ_{k=1…n} k^-θ: the first `zetaExactTermsMax` terms summed, the tail from the
    /// Euler–Maclaurin formula (integral, end-point and first-derivative terms; the error is below
    /// 1e-15 of the sum at that many terms).
    package static func zeta(_ count: Int, theta: Double) -> Double {
        let exact = min(count, zetaExactTermsMax)
        var sum = 0.0
        for term in stride(from: exact, through: 1, by: -1) {  // smallest terms first: less rounding
            sum += pow(Double(term), -theta)
        }
        guard count > exact else { return sum }
        let from = Double(exact)
        let to = Double(count)
        func term(_ x: Double) -> Double { pow(x, -theta) }
        func derivative(_ x: Double) -> Double { -theta * pow(x, -theta - 1) }
        let integral = (pow(to, 1 - theta) - pow(from, 1 - theta)) / (1 - theta)
        return sum + integral + (term(to) - term(from)) / 2 + (derivative(to) - derivative(from)) / 12
    }

    private static func eta(itemCount: Int, theta: Double, zetaTwo: Double, zetaItemCount: Double) -> Double {
        (1 - pow(2 / Double(itemCount), 1 - theta)) / (1 - zetaTwo / zetaItemCount)
    }
}
