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
/// bounded whatever the item count: at most 2^20 `pow` calls, 16-63 ms on the project's 2-core
/// machine (release build, measured while it was busy), once per run; copies share nothing and cost nothing more. (YCSB sums
/// every term, minutes for billions of items, and ships ζ(10^10, 0.99) as a constant instead; ours
/// matches that constant to 1e-9, see the tests.)
///
/// Ranks 1 and 2 come out with exactly their share; higher ranks follow the continuous
/// approximation of the paper, close to but not exactly the discrete law.
///
/// The item count may grow (`latest` follows inserts): ζ is then extended from the last count, as
/// YCSB does, in time proportional to the growth up to `zetaExactTermsMax` items and constant beyond. No randomness is inside: each draw takes its
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
    /// The exactly summed part of ζ: its first min(itemCount, `zetaExactTermsMax`) terms.
    private var zetaHead: Double
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
        zetaHead = Self.zetaHead(itemCount, theta: theta)
        zetaItemCount = zetaHead + Self.zetaTail(itemCount, theta: theta)
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

    /// Grows (or shrinks) the items to `0..<count`, extending ζ from the current count: the exact
    /// terms one by one up to `zetaExactTermsMax` (each at most once over the generator's life), the
    /// tail beyond in constant time.
    package mutating func resize(to count: Int) {
        precondition(count > 0, "a Zipfian over no items")
        guard count != itemCount else { return }
        let headCount = min(itemCount, Self.zetaExactTermsMax)
        let newHeadCount = min(count, Self.zetaExactTermsMax)
        if newHeadCount > headCount {
            for term in (headCount + 1)...newHeadCount {
                zetaHead += pow(Double(term), -theta)
            }
        } else if newHeadCount < headCount {
            zetaHead = Self.zetaHead(count, theta: theta)
        }
        zetaItemCount = zetaHead + Self.zetaTail(count, theta: theta)
        itemCount = count
        eta = Self.eta(itemCount: count, theta: theta, zetaTwo: zetaTwo, zetaItemCount: zetaItemCount)
    }

    /// ζ(n, θ) = Σ_{k=1…n} k^-θ: the first `zetaExactTermsMax` terms summed, the tail from the
    /// Euler–Maclaurin formula (integral, end-point and first-derivative terms; the error is below
    /// 1e-15 of the sum at that many terms).
    package static func zeta(_ count: Int, theta: Double) -> Double {
        zetaHead(count, theta: theta) + zetaTail(count, theta: theta)
    }

    /// The first min(count, `zetaExactTermsMax`) terms of ζ, summed smallest first (less rounding).
    private static func zetaHead(_ count: Int, theta: Double) -> Double {
        var sum = 0.0
        for term in stride(from: min(count, zetaExactTermsMax), through: 1, by: -1) {
            sum += pow(Double(term), -theta)
        }
        return sum
    }

    /// The terms of ζ after the first `zetaExactTermsMax` (0 for fewer), by Euler–Maclaurin.
    private static func zetaTail(_ count: Int, theta: Double) -> Double {
        guard count > zetaExactTermsMax else { return 0 }
        let from = Double(zetaExactTermsMax)
        let to = Double(count)
        func term(_ x: Double) -> Double { pow(x, -theta) }
        func derivative(_ x: Double) -> Double { -theta * pow(x, -theta - 1) }
        let integral = (pow(to, 1 - theta) - pow(from, 1 - theta)) / (1 - theta)
        return integral + (term(to) - term(from)) / 2 + (derivative(to) - derivative(from)) / 12
    }

    private static func eta(itemCount: Int, theta: Double, zetaTwo: Double, zetaItemCount: Double) -> Double {
        (1 - pow(2 / Double(itemCount), 1 - theta)) / (1 - zetaTwo / zetaItemCount)
    }
}
