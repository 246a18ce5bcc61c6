import Foundation
import NIOConcurrencyHelpers
import Testing

// What every test target shares: paths, temporary folders, processes, seeded bytes.

extension Tag {
    /// Runs real processes and takes seconds: the CLI, the swarms, the faults, the third-party
    /// clients, Prometheus, Zabbix, Ansible, the packages. `swift test --filter tag:endToEnd`
    /// selects them from Swift 6.4 on (swift-testing #1531); Swift 6.3's cannot, so there they
    /// are selected by suite name.
    @Tag public static var endToEnd: Self
}

public struct TestFailure: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Paths of the package under test.
public enum TestPaths {
    /// `<root>/Tests/TestSupport/TestSupport.swift`.
    public static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The `starling` binary: `STARLING_BIN` (scripts/sanitize.sh runs the sanitized build's),
    /// else beside the test bundle (any `-c` or `--scratch-path`), else `.build/debug/starling`.
    public static let starling: String = {
        if let explicit = ProcessInfo.processInfo.environment["STARLING_BIN"] { return explicit }
        let besideTests = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            .appendingPathComponent("starling").path
        if FileManager.default.isExecutableFile(atPath: besideTests) { return besideTests }
        return packageRoot.appendingPathComponent(".build/debug/starling").path
    }()

    public static var fixtures: URL { packageRoot.appendingPathComponent("Tests/Fixtures") }

    /// A fresh scratch folder under /tmp/starling-tests, removed by the caller.
    public static func scratch(_ name: String) throws -> URL {
        let dir = URL(fileURLWithPath: "/tmp/starling-tests").appendingPathComponent("\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    /// Full path of `tool` on PATH (or a few usual places), nil when absent.
    public static func which(_ tool: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        for dir in path.split(separator: ":").map(String.init) + ["/usr/bin", "/usr/local/bin", "/bin", "/usr/sbin"] {
            let candidate = dir + "/" + tool
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}

/// A fresh temporary folder, removed with everything in it by `remove()`.
public struct TempDir: Sendable {
    public let path: String

    public init(_ label: String = "starling-test") throws {
        var template = Array((NSTemporaryDirectory() + "/\(label)-XXXXXX").utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard made != nil else { throw TestFailure("mkdtemp failed: errno \(errno)") }
        path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    public func sub(_ relative: String) -> String { path + "/" + relative }

    public func remove() {
        // Restore write permission first: some tests make folders read-only.
        _ = try? Shell.run("/bin/chmod", ["-R", "u+rwx", path])
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// Runs `body` with a temporary folder that is removed afterwards, whatever happens.
public func withTempDir<R>(_ label: String = "starling-test", _ body: (TempDir) throws -> R) throws -> R {
    let dir = try TempDir(label)
    defer { dir.remove() }
    return try body(dir)
}

/// The result of running a program to its end.
public struct RunResult: Sendable {
    public var status: Int32
    /// True when the process ended by a signal (a crash, or our timeout).
    public var signaled: Bool
    public var stdout: String
    public var stderr: String
}

public enum Shell {
    /// Runs `executable` with `arguments`, killing it after `timeout` seconds so no test hangs.
    @discardableResult
    public static func run(_ executable: String, _ arguments: [String], cwd: String? = nil,
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
        let outData = NIOLockedValueBox(Data()), errData = NIOLockedValueBox(Data())
        let group = DispatchGroup()
        for (pipe, sink) in [(outPipe, outData), (errPipe, errData)] {
            group.enter()
            DispatchQueue.global().async {
                let data = pipe.fileHandleForReading.readDataToEndOfFile()
                sink.withLockedValue { $0 = data }
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
                         stdout: String(decoding: outData.withLockedValue { $0 }, as: UTF8.self),
                         stderr: String(decoding: errData.withLockedValue { $0 }, as: UTF8.self))
    }
}

/// A child process started by a test that runs while the test goes on, with its output in a
/// log file; always stopped by PID.
// @unchecked: `process` is Foundation's, which is thread-safe for these calls; the rest is let.
public final class TestProcess: @unchecked Sendable {
    public let process = Process()
    public let logURL: URL
    public let name: String

    public init(_ executable: String, _ arguments: [String], log: URL, name: String) throws {
        self.name = name
        logURL = log
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    public static func starling(_ arguments: [String], log: URL, name: String) throws -> TestProcess {
        guard FileManager.default.isExecutableFile(atPath: TestPaths.starling) else {
            throw TestFailure("the starling binary is missing at \(TestPaths.starling): run `swift build` first")
        }
        return try TestProcess(TestPaths.starling, arguments, log: log, name: name)
    }

    public var output: String { (try? String(contentsOf: logURL, encoding: .utf8)) ?? "" }

    /// Waits for exit up to `timeout` seconds; kills the process and throws on timeout.
    @discardableResult
    public func wait(timeout: Double) async throws -> Int32 {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning {
            if Date() > deadline {
                stop()
                throw TestFailure("\(name) did not exit within \(timeout) s; log:\n\(output.suffix(3000))")
            }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        return process.terminationStatus
    }

    /// Waits until the log contains `text`.
    public func waitForOutput(_ text: String, timeout: Double) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while !output.contains(text) {
            if Date() > deadline || !process.isRunning {
                throw TestFailure("\(name) never printed '\(text)'; log:\n\(output.suffix(3000))")
            }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
    }

    public func signal(_ sig: Int32) {
        if process.isRunning { kill(process.processIdentifier, sig) }
    }

    /// SIGTERM, then SIGKILL after a second.
    public func stop() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(1)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    deinit { stop() }
}

/// Deterministic pseudo-random bytes (SplitMix64), so fixtures are reproducible.
public func pseudoRandomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
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

/// `pseudoRandomBytes` as `Data`.
public func randomData(_ count: Int, seed: UInt64) -> Data {
    Data(pseudoRandomBytes(count, seed: seed))
}

public func writeFile(_ path: String, _ bytes: [UInt8]) throws {
    let dir = (path as NSString).deletingLastPathComponent
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    guard FileManager.default.createFile(atPath: path, contents: Data(bytes)) else {
        throw TestFailure("cannot write \(path)")
    }
}

public func readFile(_ path: String) throws -> [UInt8] {
    guard let d = FileManager.default.contents(atPath: path) else { throw TestFailure("cannot read \(path)") }
    return [UInt8](d)
}
