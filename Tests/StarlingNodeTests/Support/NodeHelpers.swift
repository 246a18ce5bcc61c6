import Foundation
import TestSupport

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
