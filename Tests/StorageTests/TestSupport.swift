import Foundation
import Testing

/// A fresh temporary folder, removed with everything in it by `remove()`.
struct TempDir: Sendable {
    let path: String

    init(_ label: String = "starling-test") throws {
        var template = Array((NSTemporaryDirectory() + "/\(label)-XXXXXX").utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard made != nil else { throw TestFailure("mkdtemp failed: errno \(errno)") }
        path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    func sub(_ relative: String) -> String { path + "/" + relative }

    func remove() {
        // Restore write permission first: some tests make folders read-only.
        _ = try? Shell.run("/bin/chmod", ["-R", "u+rwx", path])
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// Runs `body` with a temporary folder that is removed afterwards, whatever happens.
func withTempDir<R>(_ label: String = "starling-test", _ body: (TempDir) throws -> R) throws -> R {
    let dir = try TempDir(label)
    defer { dir.remove() }
    return try body(dir)
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The result of running a program.
struct RunResult: Sendable {
    var status: Int32
    /// True when the process ended by a signal (a crash, or our timeout).
    var signaled: Bool
    var stdout: String
    var stderr: String
}

enum Shell {
    /// Runs `executable` with `arguments`, killing it after `timeout` seconds so no test hangs.
    @discardableResult
    static func run(_ executable: String, _ arguments: [String], cwd: String? = nil,
                    environment: [String: String] = [:], timeout: TimeInterval = 120) throws -> RunResult {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        if !environment.isEmpty {
            p.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        }
        let outPipe = Pipe(), errPipe = Pipe()
        p.standardOutput = outPipe
        p.standardError = errPipe
        p.standardInput = FileHandle.nullDevice
        try p.run()
        // Drain both pipes on other threads so a chatty child never blocks on a full pipe.
        let outData = LockedData(), errData = LockedData()
        let group = DispatchGroup()
        for (pipe, sink) in [(outPipe, outData), (errPipe, errData)] {
            group.enter()
            DispatchQueue.global().async {
                sink.set(pipe.fileHandleForReading.readDataToEndOfFile())
                group.leave()
            }
        }
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning, Date() < deadline { usleep(10_000) }
        if p.isRunning {
            p.terminate()
            p.waitUntilExit()
            group.wait()
            throw TestFailure("\(executable) \(arguments.joined(separator: " ")) did not finish within \(Int(timeout)) s")
        }
        p.waitUntilExit()
        group.wait()
        return RunResult(status: p.terminationStatus, signaled: p.terminationReason == .uncaughtSignal,
                         stdout: String(decoding: outData.get(), as: UTF8.self),
                         stderr: String(decoding: errData.get(), as: UTF8.self))
    }

    /// Full path of `tool` on PATH (or a few usual places), nil when absent.
    static func which(_ tool: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        for dir in path.split(separator: ":").map(String.init) + ["/usr/bin", "/bin", "/usr/local/bin"] {
            let candidate = dir + "/" + tool
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}

final class LockedData: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    func set(_ d: Data) { lock.lock(); data = d; lock.unlock() }
    func get() -> Data { lock.lock(); defer { lock.unlock() }; return data }
}

/// Tools the compatibility tests need; each test skips only when its tool is absent.
enum Tools {
    static let mktorrent = Shell.which("mktorrent")
    static let tar = Shell.which("tar")
    /// The Debian python3 with libtorrent (not a pyenv python, which lacks it).
    static let libtorrentPython: String? = {
        for python in ["/usr/bin/python3", Shell.which("python3")].compactMap({ $0 }) {
            if let r = try? Shell.run(python, ["-c", "import libtorrent"], timeout: 30), r.status == 0 { return python }
        }
        return nil
    }()
}

/// Deterministic pseudo-random bytes (SplitMix64), so fixtures are reproducible.
func pseudoRandomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var state = seed
    var out = [UInt8]()
    out.reserveCapacity(count + 8)
    while out.count < count {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        withUnsafeBytes(of: z) { out.append(contentsOf: $0) }
    }
    return Array(out.prefix(count))
}

func writeFile(_ path: String, _ bytes: [UInt8]) throws {
    let dir = (path as NSString).deletingLastPathComponent
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    guard FileManager.default.createFile(atPath: path, contents: Data(bytes)) else {
        throw TestFailure("cannot write \(path)")
    }
}

func readFile(_ path: String) throws -> [UInt8] {
    guard let d = FileManager.default.contents(atPath: path) else { throw TestFailure("cannot read \(path)") }
    return [UInt8](d)
}

/// A folder that exercises ordering: nested folders, an empty file, and names whose byte-wise
/// order differs from a case-insensitive or per-component order.
func makeSampleFolder(at root: String) throws {
    try writeFile(root + "/sub/Deep/data.bin", pseudoRandomBytes(300_000, seed: 1))
    try writeFile(root + "/a/x", Array("in a folder\n".utf8))
    try writeFile(root + "/a-b/y", Array("dash\n".utf8))
    try writeFile(root + "/a.b", Array("dot\n".utf8))
    try writeFile(root + "/B/upper", pseudoRandomBytes(70_001, seed: 2))
    try writeFile(root + "/Zebra", Array("Z\n".utf8))
    try writeFile(root + "/apple", Array("a\n".utf8))
    try writeFile(root + "/empty", [])
    try writeFile(root + "/_under", pseudoRandomBytes(40_000, seed: 3))
}

/// The byte-wise order of the sample folder's files (what `mktorrent` produces).
let sampleFolderOrder: [[String]] = [
    ["B", "upper"], ["Zebra"], ["_under"], ["a-b", "y"], ["a.b"], ["a", "x"], ["apple"], ["empty"],
    ["sub", "Deep", "data.bin"],
]
