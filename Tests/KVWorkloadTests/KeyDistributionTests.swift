import Foundation
import KVCore
import KVWorkload
import Testing

/// How often each key came up in `draws` draws.
private func frequencies(keyCount: Int, draws: Int, seed: UInt64, _ draw: (inout SplitMix64) -> Int) -> [Int] {
    var random = SplitMix64(seed: seed)
    var counts = [Int](repeating: 0, count: keyCount)
    for _ in 0..<draws { counts[draw(&random)] += 1 }
    return counts
}

struct ZipfianTests {
    @Test
    func theMostPopularItemGetsItsTheoreticalShareAndRankFrequencyFalls() {
        let items = 1000
        let zipfian = ZipfianGenerator(itemCount: items)
        let draws = 100_000
        let counts = frequencies(keyCount: items, draws: draws, seed: 42) { zipfian.next(using: &$0) }
        let zeta = ZipfianGenerator.zeta(items, theta: 0.99)
        // Ranks 1 and 2 are exact in Gray et al.'s generator: 1/ζ and 2^-0.99/ζ (about 13 % and 6.7 %).
        let first = Double(counts[0]) / Double(draws)
        let second = Double(counts[1]) / Double(draws)
        #expect(abs(first / (1 / zeta) - 1) < 0.05, "item 0: \(first), expected \(1 / zeta)")
        #expect(abs(second / (pow(2, -0.99) / zeta) - 1) < 0.05, "item 1: \(second)")
        #expect(counts[0] > counts[1] && counts[1] > counts[2] && counts[2] > counts[3])
        // Whole decades of ranks fall too, per item: ranks 1-10, 11-100, 101-1000.
        let head = Double(counts[0..<10].reduce(0, +)) / 10
        let middle = Double(counts[10..<100].reduce(0, +)) / 90
        let tail = Double(counts[100..<1000].reduce(0, +)) / 900
        #expect(head > 5 * middle && middle > 5 * tail && tail > 0)
    }

    @Test
    func zetaMatchesYCSBsConstantForTenBillionItemsInBoundedTime() {
        // YCSB's ScrambledZipfianGenerator.ZETAN, summed term by term over 10^10 items.
        let zeta = ZipfianGenerator.zeta(10_000_000_000, theta: 0.99)
        #expect(abs(zeta - 26.469_028_201_783_02) < 1e-9, "\(zeta)")
    }

    @Test
    func theClosedFormTailAgreesWithTheExactSum() {
        let count = ZipfianGenerator.zetaExactTermsMax + 5000
        var exact = 0.0
        for term in stride(from: count, through: 1, by: -1) { exact += pow(Double(term), -0.99) }
        #expect(abs(ZipfianGenerator.zeta(count, theta: 0.99) - exact) < 1e-10)
    }

    @Test
    func growingTheItemsExtendsZetaAsAFreshGeneratorHasIt() {
        var grown = ZipfianGenerator(itemCount: 100)
        grown.resize(to: 5000)
        let fresh = ZipfianGenerator(itemCount: 5000)
        #expect(abs(grown.zetaItemCount - fresh.zetaItemCount) < 1e-9)
        var left = SplitMix64(seed: 3)
        var right = SplitMix64(seed: 3)
        #expect((0..<1000).map { _ in grown.next(using: &left) } == (0..<1000).map { _ in fresh.next(using: &right) })
    }

    @Test
    func growingPastTheExactTermsKeepsZetaAsAFreshGeneratorHasIt() {
        var grown = ZipfianGenerator(itemCount: ZipfianGenerator.zetaExactTermsMax - 10)
        for count in [ZipfianGenerator.zetaExactTermsMax + 10, 3_000_000, 3_000_001, 50_000_000] {
            grown.resize(to: count)
            #expect(abs(grown.zetaItemCount - ZipfianGenerator.zeta(count, theta: 0.99)) < 1e-9, "\(count)")
        }
        grown.resize(to: 1000)
        #expect(abs(grown.zetaItemCount - ZipfianGenerator.zeta(1000, theta: 0.99)) < 1e-9)
    }

    @Test
    func everyDrawIsAnItem() {
        for items in [1, 2, 3, 10] {
            let zipfian = ZipfianGenerator(itemCount: items)
            var random = SplitMix64(seed: UInt64(items))
            #expect((0..<10_000).allSatisfy { _ in (0..<items).contains(zipfian.next(using: &random)) })
        }
    }
}

struct ScrambledZipfianTests {
    @Test
    func theHotKeysAreSpreadOverTheKeySpace() {
        let keys = 10_000
        let generator = ScrambledZipfianGenerator(keyCount: keys)
        let counts = frequencies(keyCount: keys, draws: 100_000, seed: 9) { generator.next(using: &$0) }
        let top = counts.indices.sorted { counts[$0] > counts[$1] }.prefix(10).sorted()
        // No two of the ten hottest keys are neighbours, and they span most of the key space.
        #expect(zip(top, top.dropFirst()).allSatisfy { $1 - $0 > 1 }, "\(top)")
        #expect(top.last! - top.first! > keys / 2, "\(top)")
        #expect(top.first != 0)
        // YCSB's folding of 10^10 items onto the keys: the hottest key has about 1/26.47 of the draws.
        let hottest = Double(counts.max()!) / 100_000
        #expect(abs(hottest * 26.469 - 1) < 0.1, "\(hottest)")
        // Still skewed: the ten hottest keys take about Σ_{1…10} k^-0.99 / 26.47 ≈ 11 % of the draws,
        // a hundred times their uniform share.
        #expect(Double(top.map { counts[$0] }.reduce(0, +)) / 100_000 > 0.1)
    }

    @Test
    func theScrambleIsYCSBsFNVHash() {
        // FNV-1a 64 over the eight bytes of the item, low byte first, absolute value as a signed 64-bit
        // number (Utils.fnvhash64); the values come from a separate Python rendering of that code.
        #expect(ScrambledZipfianGenerator.scramble(0, keyCount: Int.max) == 0x5738_07CD_D7E5_C63B)
        #expect(ScrambledZipfianGenerator.scramble(1, keyCount: Int.max) == 0x7632_CED6_E2D5_105C)
        #expect(ScrambledZipfianGenerator.scramble(12345, keyCount: Int.max) == 0x18E1_4E7A_1D12_33B4)
        #expect(ScrambledZipfianGenerator.scramble(0, keyCount: 10_000) == 7211)
        #expect((0..<1000).allSatisfy { (0..<7).contains(ScrambledZipfianGenerator.scramble($0, keyCount: 7)) })
    }
}

struct LatestTests {
    @Test
    func theNewestKeysAreTheMostPopularAndFollowNewInserts() {
        var latest = LatestGenerator(keyCount: 1000)
        var random = SplitMix64(seed: 11)
        var before = [Int](repeating: 0, count: 2000)
        for _ in 0..<50_000 { before[latest.next(keyCount: 1000, using: &random)] += 1 }
        #expect(before[999] > before[998] && before[998] > before[997])
        #expect(before[999] == before[0..<1000].max())
        #expect(before[900..<1000].reduce(0, +) > before[0..<900].reduce(0, +))
        #expect(before[1000...].allSatisfy { $0 == 0 })
        // 1000 inserts later the popularity has moved to the new keys.
        var after = [Int](repeating: 0, count: 2000)
        for _ in 0..<50_000 { after[latest.next(keyCount: 2000, using: &random)] += 1 }
        #expect(after[1999] == after.max())
        #expect(after[1999] > 5 * after[999])
        #expect(after[1000..<2000].reduce(0, +) > 4 * after[0..<1000].reduce(0, +))
    }
}

struct InsertSequenceTests {
    @Test
    func keysExistOnlyOnceEveryEarlierInsertIsAcknowledged() {
        var sequence = InsertSequence(loadedKeyCount: 100)
        let keys = (0..<3).map { _ in sequence.issue() }
        #expect(keys == [100, 101, 102])
        #expect(sequence.acknowledgedCount == 100)
        sequence.acknowledge(102)
        sequence.acknowledge(101)
        #expect(sequence.acknowledgedCount == 100)
        sequence.acknowledge(100)
        #expect(sequence.acknowledgedCount == 103)
        #expect(sequence.issuedCount == 103)
    }
}
