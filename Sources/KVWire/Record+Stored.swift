public import KVCore
public import NIOCore

/// The one conversion between the wire's records (`Record`, `PutRequest`) and the stores' `StoredRecord`.
extension Record {
    /// The wire form of `record`, kept under `key`.
    public init(key: [UInt8], _ record: StoredRecord) {
        self.init(key: ByteBuffer(bytes: key), record)
    }

    /// The wire form of `record`, kept under `key` as a request named it: its buffer, not a copy.
    public init(key: ByteBuffer, _ record: StoredRecord) {
        self.init(
            key: key, version: record.version, tombstone: record.tombstone, value: ByteBuffer(bytes: record.value),
            expiresAtMillis: record.expiry)
    }

    /// The record without its key, as stores keep it; a peer's record that no write could have made
    /// (a tombstone with a value or an expiry) throws (`StoredRecord.checked`).
    public func stored() throws(MalformedRecord) -> StoredRecord {
        try StoredRecord.checked(
            version: version, tombstone: tombstone, value: Array(value.readableBytesView),
            expiresAtMillis: expiresAtMillis ?? 0)
    }
}

extension PutRequest {
    /// The `Put` that writes `record` under `key`.
    public init(key: [UInt8], _ record: StoredRecord, origin: PutOrigin, epoch: UInt64 = 0, keyspace: UInt32 = 0) {
        self.init(
            key: ByteBuffer(bytes: key), value: ByteBuffer(bytes: record.value), version: record.version,
            tombstone: record.tombstone, origin: origin, epoch: epoch, expiresAtMillis: record.expiry,
            keyspace: keyspace)
    }
}

extension StoredRecord {
    /// The wire's `expiresAtMillis`: absent for a record that never expires.
    var expiry: UInt64? { expiresAtMillis == 0 ? nil : expiresAtMillis }
}
