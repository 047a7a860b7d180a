import KVCore
import Testing

/// Time to live (issue 20): the expiry travels with the version, an expired value is a delete at its
/// own version, and it is purged as tombstones are.
@Suite struct TimeToLiveTests {
    let version = Version(hlc: 1_700_000_000_000 << 16 | 3, writer: 9)

    @Test func theExpiryIsTheVersionsTimePlusTheTTLAndSaturates() {
        #expect(StoredRecord.expiry(of: version, timeToLive: .seconds(2)) == 1_700_000_002_000)
        #expect(StoredRecord.expiry(of: version, timeToLive: nil) == 0)
        #expect(StoredRecord.expiry(of: version, timeToLive: .zero) == 0)
        // Below a millisecond still expires (one millisecond later), never "never".
        #expect(StoredRecord.expiry(of: version, timeToLive: .microseconds(10)) == 1_700_000_000_001)
        #expect(
            StoredRecord.expiry(of: Version(hlc: .max, writer: 1), timeToLive: .seconds(1)) == (UInt64.max >> 16)
                + 1_000)
        #expect(StoredRecord.expiry(of: version, timeToLive: .seconds(Int64.max)) == .max)
    }

    @Test func anExpiredValueReadsAsDeletedFromItsExpiryOn() {
        let value = StoredRecord(version: version, tombstone: false, value: [1], expiresAtMillis: 5_000)
        #expect(!value.isDeleted(atMillis: 4_999))
        #expect(value.isDeleted(atMillis: 5_000))
        #expect(!StoredRecord(version: version, tombstone: false, value: [1]).isDeleted(atMillis: .max))
        #expect(StoredRecord(version: version, tombstone: true, value: []).isDeleted(atMillis: 0))
    }

    @Test func aReadAnswersTheNewestRecordUnlessItIsDeletedOrExpired() {
        let value = StoredRecord(version: version, tombstone: false, value: [1], expiresAtMillis: 5_000)
        func result(_ newest: StoredRecord?) -> ReadCoordinator.ReadResult {
            ReadCoordinator.ReadResult(newest: newest, answers: [:], stale: [])
        }
        #expect(result(value).live(atMillis: 4_999) == value)
        #expect(result(value).live(atMillis: 5_000) == nil)
        #expect(result(StoredRecord(version: version, tombstone: true, value: [])).live(atMillis: 0) == nil)
        #expect(result(nil).live(atMillis: 0) == nil)
    }

    @Test func expiredValuesArePurgeableOnlyOnceTheyExpiredBeforeTheHorizon() {
        let horizon = Version(hlc: 10_000 << 16, writer: 0)
        func purgeable(hlcMillis: UInt64, tombstone: Bool = false, expiry: UInt64) -> Bool {
            TombstonePolicy.isPurgeable(
                version: Version(hlc: hlcMillis << 16, writer: 1), tombstone: tombstone, expiresAtMillis: expiry,
                below: horizon)
        }
        #expect(purgeable(hlcMillis: 1_000, expiry: 9_000))
        #expect(purgeable(hlcMillis: 1_000, expiry: 10_000))
        #expect(!purgeable(hlcMillis: 1_000, expiry: 10_001))  // not expired for the whole grace period yet
        #expect(!purgeable(hlcMillis: 1_000, expiry: 0))  // never expires
        #expect(purgeable(hlcMillis: 1_000, tombstone: true, expiry: 0))
        #expect(!purgeable(hlcMillis: 10_000, tombstone: true, expiry: 0))
    }

    @Test(arguments: [
        ("250ms", Duration.milliseconds(250)), ("30s", .seconds(30)), ("30m", .seconds(1_800)),
        ("12h", .seconds(43_200)), ("7d", .seconds(604_800)),
    ])
    func ttlsParseWithTheirUnit(_ text: String, _ expected: Duration) {
        #expect(Duration(parsingShort: text) == expected)
    }

    @Test(arguments: ["", "30", "m", "-1s", "1.5s", "30 m", "30x", "99999999999999999999d", "9223372036854775807d"])
    func malformedTTLsAreRefused(_ text: String) {
        #expect(Duration(parsingShort: text) == nil)
    }
}
