import Foundation

/// Paths of the package under test.
enum TestPaths {
    static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    /// `STARLING_BIN` overrides it (scripts/sanitize.sh runs the sanitized build's binary).
    static var starling: String {
        ProcessInfo.processInfo.environment["STARLING_BIN"] ?? packageRoot.appendingPathComponent(".build/debug/starling").path
    }
    static var fixtures: URL { packageRoot.appendingPathComponent("Tests/Fixtures") }

    /// A fresh scratch folder, removed by the caller with `cleanup`.
    static func scratch(_ name: String) throws -> URL {
        let dir = URL(fileURLWithPath: "/tmp/starling-tests").appendingPathComponent("\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    static func which(_ tool: String) -> String? {
        for dir in ["/usr/bin", "/usr/local/bin", "/bin", "/usr/sbin"] {
            let p = dir + "/" + tool
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return nil
    }
}

/// A child process started by a test, with output in a log file, always stopped by PID.
final class TestProcess: @unchecked Sendable {
    let process = Process()
    let logURL: URL
    let name: String

    init(_ executable: String, _ arguments: [String], log: URL, name: String) throws {
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

    static func starling(_ arguments: [String], log: URL, name: String) throws -> TestProcess {
        guard FileManager.default.isExecutableFile(atPath: TestPaths.starling) else {
            throw TestFailure("the starling binary is missing at \(TestPaths.starling): run `swift build` first")
        }
        return try TestProcess(TestPaths.starling, arguments, log: log, name: name)
    }

    var output: String { (try? String(contentsOf: logURL, encoding: .utf8)) ?? "" }

    /// Waits for exit up to `timeout` seconds; kills the process and throws on timeout.
    @discardableResult
    func wait(timeout: Double) async throws -> Int32 {
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
    func waitForOutput(_ text: String, timeout: Double) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while !output.contains(text) {
            if Date() > deadline || !process.isRunning {
                throw TestFailure("\(name) never printed '\(text)'; log:\n\(output.suffix(3000))")
            }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
    }

    func signal(_ sig: Int32) {
        if process.isRunning { kill(process.processIdentifier, sig) }
    }

    /// SIGTERM, then SIGKILL after a second.
    func stop() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(1)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    deinit { stop() }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// Random bytes for payloads.
func randomData(_ count: Int, seed: UInt64) -> Data {
    var state = seed
    var out = Data(count: count)
    out.withUnsafeMutableBytes { raw in
        let words = raw.bindMemory(to: UInt64.self)
        for i in 0..<words.count {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            words[i] = z ^ (z >> 31)
        }
        for i in (words.count * 8)..<count { raw[i] = UInt8(truncatingIfNeeded: i) }
    }
    return out
}

/// Runs starling make-torrent and returns the torrent path.
func makeTorrent(_ path: URL, in dir: URL, extra: [String] = []) async throws -> URL {
    let out = dir.appendingPathComponent(path.lastPathComponent + ".torrent")
    let p = try TestProcess.starling(["make-torrent", path.path, "--output", out.path] + extra,
                                     log: dir.appendingPathComponent("make-torrent.log"), name: "make-torrent")
    let status = try await p.wait(timeout: 60)
    guard status == 0 else { throw TestFailure("make-torrent failed: \(p.output)") }
    return out
}

/// Info-hash (hex) of a torrent, via `starling inspect --json`.
func infoHash(of torrent: URL, in dir: URL) async throws -> (hash: String, pieces: Int) {
    let p = try TestProcess.starling(["inspect", "--json", torrent.path], log: dir.appendingPathComponent("inspect.log"), name: "inspect")
    try await p.wait(timeout: 30)
    let json = try JSONSerialization.jsonObject(with: Data(p.output.utf8)) as! [String: Any]
    return (json["infoHash"] as! String, json["pieceCount"] as! Int)
}

/// A node's `/status` JSON (`http://ADDR/status`), or nil while it does not answer.
func nodeStatus(_ address: String, dir: URL) async -> [String: Any]? {
    guard let curl = try? TestProcess("/usr/bin/curl", ["-sf", "--max-time", "2", "http://\(address)/status"],
                                      log: dir.appendingPathComponent("curl-\(address).log"), name: "curl"),
          (try? await curl.wait(timeout: 5)) == 0 else { return nil }
    return (try? JSONSerialization.jsonObject(with: Data(curl.output.utf8))) as? [String: Any]
}

/// The first torrent's number `key` (progress, uploaded, ...) in a node's `/status`.
func torrentStatus(_ address: String, _ key: String, dir: URL) async -> Double? {
    guard let t = (await nodeStatus(address, dir: dir)?["torrents"] as? [[String: Any]])?.first else { return nil }
    return (t[key] as? NSNumber)?.doubleValue
}

/// Polls `torrentStatus` until `done` holds for the value; throws after `timeout` seconds.
func waitForStatus(_ address: String, _ key: String, dir: URL, timeout: Double,
                   until done: (Double) -> Bool) async throws -> Double {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if let v = await torrentStatus(address, key, dir: dir), done(v) { return v }
        try await Task.sleep(nanoseconds: 100_000_000)
    }
    throw TestFailure("\(address) /status \(key) did not reach its mark within \(timeout) s")
}

/// From a peer's log: the pieces it found verified on start, and the payload it then
/// downloaded less what was wasted (duplicates, failed pieces): the bytes it had to fetch.
func resumeFigures(_ log: String) -> (verified: Int, downloaded: Int) {
    func number(_ key: String) -> Int? {
        log.range(of: key + #"=(\d+)"#, options: .regularExpression).flatMap { Int(log[$0].dropFirst(key.count + 1)) }
    }
    let verified = log.range(of: #"verified pieces=(\d+)/"#, options: .regularExpression)
        .flatMap { Int(log[$0].dropFirst("verified pieces=".count).dropLast()) } ?? 0
    guard let downloaded = number("downloaded") else { return (verified, -1) }
    return (verified, downloaded - (number("wasted") ?? 0))
}
