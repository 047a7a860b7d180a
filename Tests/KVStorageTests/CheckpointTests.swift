import Foundation
import KVCore
import KVStorage
import Testing

/// Backups' checkpoints (`RocksDBStore+Checkpoint.swift`, `CheckpointRegistry`).
@Suite struct CheckpointTests {
    /// A stand-in checksum (KVStorage has no SHA-256 of its own): the file's size and first bytes.
    static func fakeHash(_ path: String) throws -> [UInt8] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        return Array(data.prefix(32)) + withUnsafeBytes(of: UInt64(data.count).bigEndian) { Array($0) }
    }

    @Test func aCheckpointOpensAsAStoreHoldingWhatTheStoreHeldThen() throws {
        try withTemporaryDirectory { path throws in
            let store = try RocksDBStore(directory: path + "/db")
            defer { store.close() }
            for index in 0..<300 {
                _ = try store.apply(key: key("key-\(index)"), record: record(UInt64(index + 1), "value-\(index)"))
            }
            _ = try store.apply(key: key("deleted"), record: tombstone(500))
            _ = try store.storeHint(hint("n2", "hinted", record(7, "h")), queueMax: 100)
            try store.setMetadata("node.id", Array("n1".utf8))

            let checkpoint = try store.createCheckpoint(id: "backup-1", hash: Self.fakeHash)
            #expect(checkpoint.path == path + "/db/checkpoints/backup-1")
            #expect(checkpoint.files.contains { $0.name.hasSuffix(".sst") }, "memtables are flushed into tables")
            #expect(checkpoint.files.contains { $0.name == "CURRENT" })
            for file in checkpoint.files {
                let size = try FileManager.default.attributesOfItem(atPath: "\(checkpoint.path)/\(file.name)")[.size]
                #expect((size as? NSNumber)?.uint64Value == file.bytes, "\(file.name)")
            }
            #expect(store.checkpoints.ids == ["backup-1"])

            // Writes after the checkpoint are not in it.
            _ = try store.apply(key: key("later"), record: record(600, "later"))
            _ = try store.apply(key: key("key-0"), record: record(601, "overwritten"))
            _ = try store.storeHint(hint("n3", "later-hint", record(8, "h")), queueMax: 100)
            try store.setMetadata("node.id", Array("changed".utf8))

            // Opened where a restore would open it: a copy of its files.
            let copy = path + "/restored"
            try FileManager.default.copyItem(atPath: checkpoint.path, toPath: copy)
            let restored = try RocksDBStore(directory: copy)
            defer { restored.close() }
            for index in 0..<300 {
                #expect(try restored.get(key: key("key-\(index)")) == record(UInt64(index + 1), "value-\(index)"))
            }
            #expect(try restored.get(key: key("deleted")) == tombstone(500))
            #expect(try restored.get(key: key("later")) == nil)
            #expect(try restored.metadata("node.id") == Array("n1".utf8))
            #expect(try restored.hints(for: "n2", limit: 10).map(\.hint.key) == [key("hinted")])
            #expect(try restored.hints(for: "n3", limit: 10).isEmpty)
            #expect(try store.get(key: key("later")) == record(600, "later"), "the store itself goes on")
        }
    }

    @Test func readsAreBoundedAndOnlyOfListedFiles() throws {
        try withTemporaryDirectory { path throws in
            let store = try RocksDBStore(directory: path)
            defer { store.close() }
            _ = try store.apply(key: key("k"), record: record(1, String(repeating: "v", count: 10_000)))
            let checkpoint = try store.createCheckpoint(id: "b", hash: Self.fakeHash)
            let table = try #require(checkpoint.files.first { $0.name.hasSuffix(".sst") })
            let whole = try Data(contentsOf: URL(fileURLWithPath: "\(checkpoint.path)/\(table.name)"))

            var copied: [UInt8] = []
            while UInt64(copied.count) < table.bytes {
                copied += try store.checkpoints.read(
                    id: "b", name: table.name, offset: UInt64(copied.count), length: 1000)
            }
            #expect(copied == Array(whole))
            #expect(try store.checkpoints.read(id: "b", name: table.name, offset: table.bytes, length: 10).isEmpty)
            #expect(try store.checkpoints.read(id: "b", name: table.name, offset: .max, length: 10).isEmpty)
            let capped = try store.checkpoints.read(id: "b", name: "CURRENT", offset: 0, length: .max)
            #expect(capped.count <= Limits.backupChunkBytesMax && !capped.isEmpty)

            // Names that are not files the checkpoint listed: refused, whatever they point at.
            try "secret".write(toFile: path + "/secret", atomically: true, encoding: .utf8)
            try FileManager.default.createSymbolicLink(
                atPath: "\(checkpoint.path)/link", withDestinationPath: path + "/secret")
            for name in ["../secret", "/etc/passwd", "link", "", ".", "..", "\(table.name)/x"] {
                #expect(throws: CheckpointError.self) {
                    try store.checkpoints.read(id: "b", name: name, offset: 0, length: 10)
                }
            }
            #expect(throws: CheckpointError.self) {
                try store.checkpoints.read(id: "zz", name: table.name, offset: 0, length: 1)
            }
            #expect(throws: CheckpointError.self) { try store.createCheckpoint(id: "../x", hash: Self.fakeHash) }
            #expect(throws: CheckpointError.self) { try store.createCheckpoint(id: "", hash: Self.fakeHash) }
        }
    }

    @Test func releasedIdleAndLeftoverCheckpointsAreRemoved() throws {
        try withTemporaryDirectory { path throws in
            let store = try RocksDBStore(directory: path)
            _ = try store.apply(key: key("k"), record: record(1, "v"))
            let first = try store.createCheckpoint(id: "first", hash: Self.fakeHash)
            let second = try store.createCheckpoint(id: "second", hash: Self.fakeHash)
            #expect(try store.createCheckpoint(id: "first", hash: Self.fakeHash) == first, "asked again: the same one")
            #expect(store.checkpoints.release(id: "first"))
            #expect(!store.checkpoints.release(id: "first"))
            #expect(!FileManager.default.fileExists(atPath: first.path))

            // Used just now: kept by a sweep for idle ones; an hour later, removed.
            #expect(store.checkpoints.removeIdle(longerThan: .seconds(3600)).isEmpty)
            #expect(store.checkpoints.removeIdle(longerThan: .seconds(3600), now: .now + .seconds(3601)) == ["second"])
            #expect(!FileManager.default.fileExists(atPath: second.path))

            // A checkpoint left by a process that died: gone when the store opens again.
            let third = try store.createCheckpoint(id: "third", hash: Self.fakeHash)
            store.close()
            #expect(FileManager.default.fileExists(atPath: third.path))
            let reopened = try RocksDBStore(directory: path)
            defer { reopened.close() }
            #expect(!FileManager.default.fileExists(atPath: third.path))
            #expect(reopened.checkpoints.ids.isEmpty)
            #expect(try reopened.get(key: key("k")) == record(1, "v"))
        }
    }
}
