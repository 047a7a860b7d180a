import Foundation

/// Damage done on purpose to a closed RocksDB folder, for the tests that check corruption is found
/// and never served. `package`: not part of any product's API.
package enum StorageFaults {
    /// Overwrites `count` bytes a third of the way into the largest SST file of `directory`: inside
    /// its data blocks, away from the footer and the index. Returns the file's name and size.
    package static func damageLargestTable(in directory: String, count: Int = 64) throws -> (file: String, size: Int) {
        let files = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".sst") }
        let sizes = try files.map { file -> (file: String, size: Int) in
            let attributes = try FileManager.default.attributesOfItem(atPath: "\(directory)/\(file)")
            return (file, (attributes[.size] as? NSNumber)?.intValue ?? 0)
        }
        guard let largest = sizes.max(by: { $0.size < $1.size }),
            let handle = FileHandle(forUpdatingAtPath: "\(directory)/\(largest.file)")
        else {
            throw StorageError.ioError("no SST file to damage in \(directory)")
        }
        defer { try? handle.close() }
        try handle.seek(toOffset: UInt64(largest.size / 3))
        try handle.write(contentsOf: Data(repeating: 0xA5, count: count))
        return largest
    }
}
