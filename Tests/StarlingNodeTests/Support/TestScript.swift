import Foundation
import TestSupport

/// A test script (bash) run to its end, its output kept in a log file of a scratch folder,
/// bounded by a deadline (then SIGTERM, which runs the script's cleanup trap, and SIGKILL).
struct TestScript {
    let status: Int32
    let output: String

    static func run(_ script: String, environment: [String: String]? = nil, scratch name: String,
                    timeout: TimeInterval) async throws -> TestScript {
        let dir = try TestPaths.scratch(name)
        defer { try? FileManager.default.removeItem(at: dir) }
        let log = dir.appendingPathComponent("\(name).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        defer { try? handle.close() }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = [script]
        if let environment { p.environment = environment }
        p.standardOutput = handle
        p.standardError = handle
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { try await Task.sleep(nanoseconds: 200_000_000) }
        if p.isRunning {
            kill(p.processIdentifier, SIGTERM)
            // The test runner may hand its children SIGTERM blocked (they inherit its signal
            // mask), so the script's cleanup trap gets 30 s and then the script is killed.
            let grace = Date().addingTimeInterval(30)
            while p.isRunning && Date() < grace { try await Task.sleep(nanoseconds: 200_000_000) }
            if p.isRunning { kill(p.processIdentifier, SIGKILL) }
            p.waitUntilExit()
        }
        let output = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        return TestScript(status: p.terminationReason == .exit ? p.terminationStatus : -1, output: output)
    }
}
