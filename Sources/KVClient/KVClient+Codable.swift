public import Foundation

/// The data operations a ``KVClient`` (on the `default` keyspace) and a ``KVKeyspace`` share, and
/// the helpers built on them once for both: values as JSON (`put(_:json:)`, `get(_:as:decoder:)`) and
/// as bytes of a chosen type (`get(_:as:)`).
public protocol KVDataOperations: Sendable {
    /// Writes `value` under `key` (``KVClient/put(_:value:consistency:timeToLive:)``).
    func put(_ key: some KVBytes, value: some KVBytes, consistency: KVConsistency?, timeToLive: Duration?)
        async throws -> KVVersion

    /// Reads `key` (``KVClient/get(_:consistency:repair:)``).
    func get(_ key: some KVBytes, consistency: KVConsistency?, repair: KVReadRepair?) async throws -> KVValue?
}

extension KVKeyspace: KVDataOperations {}
extension KVClient: KVDataOperations {}

extension KVDataOperations {
    /// Writes `value` encoded as JSON by `encoder` under `key`, as ``put(_:value:consistency:timeToLive:)``.
    ///
    /// - Returns: the version the write was stored with.
    /// - Throws: the encoder's error (nothing was sent), or ``KVClientError`` as `put`.
    @discardableResult
    public func put(
        _ key: some KVBytes, json value: some Encodable, encoder: JSONEncoder = JSONEncoder(),
        consistency: KVConsistency? = nil, timeToLive: Duration? = nil
    ) async throws -> KVVersion {
        try await put(key, value: try encoder.encode(value), consistency: consistency, timeToLive: timeToLive)
    }

    /// Reads `key` as ``get(_:consistency:repair:)`` and decodes its value as JSON with `decoder`.
    ///
    /// - Returns: the decoded value, or nil when the key does not exist, was deleted or expired.
    /// - Throws: ``KVClientError`` as `get`, or the decoder's error when the value is not `type`.
    public func get<Value: Decodable>(
        _ key: some KVBytes, as type: Value.Type, decoder: JSONDecoder = JSONDecoder(),
        consistency: KVConsistency? = nil, repair: KVReadRepair? = nil
    ) async throws -> Value? {
        guard let found = try await get(key, consistency: consistency, repair: repair) else { return nil }
        return try decoder.decode(type, from: found.value(as: Data.self))
    }

    /// Reads `key` as ``get(_:consistency:repair:)`` and returns its bytes as `type` (a `String`
    /// decodes them as UTF-8), without decoding JSON.
    ///
    /// - Returns: the value's bytes, or nil when the key does not exist, was deleted or expired.
    public func get<Value: KVBytes>(
        _ key: some KVBytes, as type: Value.Type, consistency: KVConsistency? = nil, repair: KVReadRepair? = nil
    ) async throws -> Value? {
        try await get(key, consistency: consistency, repair: repair)?.value(as: type)
    }

    /// Reads `key` as ``get(_:consistency:repair:)`` and returns its bytes as `type`. For the
    /// ``KVBytes`` types that are also `Decodable` (`String`, `[UInt8]`, `Data`) the bytes are the value
    /// itself, not JSON: `get(key, as: String.self)` reads what `put(key, value: "text")` wrote.
    ///
    /// - Returns: the value's bytes, or nil when the key does not exist, was deleted or expired.
    public func get<Value: KVBytes & Decodable>(
        _ key: some KVBytes, as type: Value.Type, consistency: KVConsistency? = nil, repair: KVReadRepair? = nil
    ) async throws -> Value? {
        try await get(key, consistency: consistency, repair: repair)?.value(as: type)
    }
}
