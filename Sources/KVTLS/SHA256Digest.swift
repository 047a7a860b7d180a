import COpenSSL

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// SHA-256 through OpenSSL's EVP API, fed in pieces: the checksum of a backup's files, on the node
/// that lists a checkpoint and in `kvctl backup` and `verify`.
///
/// Not Sendable: one hash, one thread. `finish()` ends it; feeding it afterwards is a bug.
package struct SHA256Digest: ~Copyable {
    /// Bytes in a SHA-256 digest.
    package static let byteCount = 32

    private let context: OpaquePointer

    package init() {
        OpenSSL.start()
        // Only fails when out of memory or when OpenSSL has no SHA-256: nothing a caller can recover.
        guard let context = EVP_MD_CTX_new(), EVP_DigestInit_ex(context, EVP_sha256(), nil) == 1 else {
            preconditionFailure("OpenSSL cannot make a SHA-256 context")
        }
        self.context = context
    }

    deinit {
        EVP_MD_CTX_free(context)
    }

    package mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
        let ok = EVP_DigestUpdate(context, base, bytes.count)
        precondition(ok == 1, "EVP_DigestUpdate failed")
    }

    package mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// The digest of everything fed so far.
    package consuming func finish() -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: Self.byteCount)
        var length: UInt32 = 0
        let ok = EVP_DigestFinal_ex(context, &digest, &length)
        precondition(ok == 1 && length == UInt32(Self.byteCount), "EVP_DigestFinal_ex failed")
        return digest
    }

    /// The digest of `bytes`.
    package static func hash(_ bytes: [UInt8]) -> [UInt8] {
        var digest = SHA256Digest()
        digest.update(bytes)
        return digest.finish()
    }

    /// The digest of a file's bytes, read in blocks of 1 MiB, with the number of bytes read.
    ///
    /// - Throws: `SHA256Digest.FileError` when the file cannot be opened (symbolic links are not
    ///   followed) or read.
    package static func hash(file path: String) throws(FileError) -> (digest: [UInt8], bytes: UInt64) {
        let descriptor = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard descriptor >= 0 else { throw FileError(path: path, reason: String(cString: strerror(errno))) }
        defer { close(descriptor) }
        var digest = SHA256Digest()
        var total: UInt64 = 0
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw FileError(path: path, reason: String(cString: strerror(errno)))
            }
            if count == 0 { break }
            buffer.withUnsafeBytes { digest.update(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
            total &+= UInt64(count)
        }
        return (digest.finish(), total)
    }

    /// A file that could not be hashed.
    package struct FileError: Error, CustomStringConvertible {
        package var path: String
        package var reason: String
        package var description: String { "\(path): \(reason)" }
    }
}

extension Array where Element == UInt8 {
    /// Lowercase hex, two digits a byte (how backups name a SHA-256).
    package var hexString: String {
        let digits = Array("0123456789abcdef".utf8)
        var text = [UInt8]()
        text.reserveCapacity(count * 2)
        for byte in self {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}
