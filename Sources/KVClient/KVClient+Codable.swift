public import Foundation

extension KVKeyspace {
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

extension KVClient {
    /// Writes `value` encoded as JSON by `encoder` under `key` in the `default` keyspace, as
    /// ``put(_:value:consistency:timeToLive:)``.
    ///
    /// - Returns: the version the write was stored with.
    /// - Throws: the encoder's error (nothing was sent), or ``KVClientError`` as `put`.
    @discardableResult
    public func put(
        _ key: some KVBytes, json value: some Encodable, encoder: JSONEncoder = JSONEncoder(),
        consistency: KVConsistency? = nil, timeToLive: Duration? = nil
    ) async throws -> KVVersion {
        try await defaultKeyspace.put(
            key, json: value, encoder: encoder, consistency: consistency, timeToLive: timeToLive)
    }

    /// Reads `key` as ``get(_:consistency:repair:)`` and decodes its value as JSON with `decoder`.
    ///
    /// - Returns: the decoded value, or nil when the key does not exist, was deleted or expired.
    /// - Throws: ``KVClientError`` as `get`, or the decoder's error when the value is not `type`.
    public func get<Value: Decodable>(
        _ key: some KVBytes, as type: Value.Type, decoder: JSONDecoder = JSONDecoder(),
        consistency: KVConsistency? = nil, repair: KVReadRepair? = nil
    ) async throws -> Value? {
        try await defaultKeyspace.get(
            key, as: type, decoder: decoder, consistency: consistency, repair: repair)
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
