import Foundation
import KVWire

// `kvfuzz`: the wire decoder's fuzz target. Built by `scripts/fuzz.sh` with `-sanitize=fuzzer,address
// -D FUZZING`, it hands its arguments to libFuzzer (`LLVMFuzzerRunDriver`); built as usual, it replays
// inputs (files, or folders of them) through the same check, so that crashes once found stay tested.

#if FUZZING
    /// libFuzzer's entry for a program that has its own `main` (SwiftPM gives every executable one).
    @_silgen_name("LLVMFuzzerRunDriver")
    func runFuzzerDriver(
        _ argc: UnsafeMutablePointer<CInt>,
        _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
        _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
    ) -> CInt

    /// One input: a violation of the wire property is a crash, which libFuzzer reports and saves.
    @_cdecl("LLVMFuzzerTestOneInput")
    public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
        let bytes = UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size)
        if let violation = WireRoundTrip.violation(in: bytes) {
            fatalError(violation)
        }
        return 0
    }

    // libFuzzer's own `main` (linked whole) or this one, whichever the link keeps: both run the driver.
    @main
    struct KVFuzz {
        static func main() {
            var argc = CommandLine.argc
            var argv = CommandLine.unsafeArgv
            exit(runFuzzerDriver(&argc, &argv, fuzzOneInput))
        }
    }
#else
    @main
    struct KVFuzzReplay {
        static func main() {
            let paths = CommandLine.arguments.dropFirst()
            guard !paths.isEmpty else {
                FileHandle.standardError.write(
                    Data("usage: kvfuzz FILE|DIR...  (replays inputs through the wire check)\n".utf8))
                exit(64)
            }
            var files: [String] = []
            for path in paths {
                var isDirectory: ObjCBool = false
                guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                    FileHandle.standardError.write(Data("kvfuzz: no such file: \(path)\n".utf8))
                    exit(1)
                }
                if isDirectory.boolValue {
                    let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
                    files += names.sorted().map { "\(path)/\($0)" }
                } else {
                    files.append(path)
                }
            }
            var failed = 0
            for file in files {
                guard let data = FileManager.default.contents(atPath: file) else { continue }
                let violation = data.withUnsafeBytes { WireRoundTrip.violation(in: $0) }
                if let violation {
                    failed += 1
                    FileHandle.standardError.write(Data("kvfuzz: \(file): \(violation)\n".utf8))
                }
            }
            print("kvfuzz: \(files.count - failed) passed, \(failed) failed")
            exit(failed == 0 ? 0 : 1)
        }
    }
#endif
