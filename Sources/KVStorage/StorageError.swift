/// Why a storage call failed.
///
/// A struct rather than an enum so that new causes do not break code that switches over it: match
/// on `code` (`error.code == .corruption`) and print `description`, one line naming the path or
/// the cause.
public struct StorageError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The kind of failure, for matching.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: Hashable, Sendable {
            case openFailed, corruption, ioError, diskFull, closed, invalidRecord
        }
        private var base: Base
        private init(_ base: Base) { self.base = base }

        /// The store could not be opened (missing permissions, locked by another process, bad options).
        public static let openFailed = Code(.openFailed)
        /// Stored bytes failed a checksum or did not decode; they are never served.
        public static let corruption = Code(.corruption)
        /// Any other I/O failure reported by the engine.
        public static let ioError = Code(.ioError)
        /// The disk is full.
        public static let diskFull = Code(.diskFull)
        /// The store was closed.
        public static let closed = Code(.closed)
        /// The caller passed a record or key the store refuses (too large).
        public static let invalidRecord = Code(.invalidRecord)

        public var description: String {
            switch base {
            case .openFailed: "openFailed"
            case .corruption: "corruption"
            case .ioError: "ioError"
            case .diskFull: "diskFull"
            case .closed: "closed"
            case .invalidRecord: "invalidRecord"
            }
        }
    }

    /// The kind of failure.
    public let code: Code
    /// The store's directory, when the failure concerns one.
    public let path: String?
    /// The cause, as the engine or the check that failed put it.
    public let reason: String

    private init(_ code: Code, path: String? = nil, reason: String) {
        self.code = code
        self.path = path
        self.reason = reason
    }

    public static func openFailed(path: String, reason: String) -> StorageError {
        StorageError(.openFailed, path: path, reason: reason)
    }
    public static func corruption(_ reason: String, path: String? = nil) -> StorageError {
        StorageError(.corruption, path: path, reason: reason)
    }
    public static func ioError(_ reason: String, path: String? = nil) -> StorageError {
        StorageError(.ioError, path: path, reason: reason)
    }
    public static func diskFull(_ reason: String, path: String? = nil) -> StorageError {
        StorageError(.diskFull, path: path, reason: reason)
    }
    public static let closed = StorageError(.closed, reason: "the store is closed")
    public static func invalidRecord(_ reason: String) -> StorageError {
        StorageError(.invalidRecord, reason: reason)
    }

    public var description: String {
        let at = path.map { " at \($0)" } ?? ""
        return switch code {
        case .openFailed: "cannot open store\(at): \(reason)"
        case .corruption: "storage corruption\(at): \(reason)"
        case .diskFull: "disk full\(at): \(reason)"
        case .closed: "store closed: \(reason)"
        case .invalidRecord: "invalid record: \(reason)"
        default: "storage I/O error\(at): \(reason)"
        }
    }

    /// Classifies a RocksDB error string: its `Status` text starts with the kind ("Corruption: ",
    /// "IO error: No space left on device ...").
    package static func fromRocksDB(_ message: String, path: String) -> StorageError {
        if message.contains("Corruption") {
            return .corruption(message, path: path)
        }
        if message.contains("No space left") {
            return .diskFull(message, path: path)
        }
        return .ioError(message, path: path)
    }
}
