import Foundation
import TestSupport
import Testing

/// A host-wide cap lowered while a transfer runs (`starling ctl rate` against the seeder's
/// admin endpoint) is in force within a second, as the seeder's own byte counters show.
@Suite(.serialized, .tags(.endToEnd))
struct RateCapTests {
    /// `uploaded` bytes from the seeder's /status, and the seeder's clock when it answered.
    static func uploaded(_ statusURL: String, dir: URL) async throws -> (bytes: Int, at: Double) {
        let curl = try TestProcess("/usr/bin/curl", ["-sf", statusURL], log: dir.appendingPathComponent("curl-\(UUID()).log"), name: "curl")
        guard try await curl.wait(timeout: 5) == 0 else { throw TestFailure("curl \(statusURL) failed: \(curl.output)") }
        let json = try JSONSerialization.jsonObject(with: Data(curl.output.utf8)) as! [String: Any]
        let torrents = json["torrents"] as! [[String: Any]]
        return (torrents[0]["uploaded"] as! Int, (json["uptimeSeconds"] as! NSNumber).doubleValue)
    }

    /// Bytes per second between two samples by the node's own clock: on a busy machine the
    /// sleeps and curl's start-up stretch unevenly, the node's timestamps do not.
    static func rate(_ a: (bytes: Int, at: Double), _ b: (bytes: Int, at: Double)) -> Double {
        Double(b.bytes - a.bytes) / (b.at - a.at)
    }

    /// Large enough that the transfer is still running when the cap is lowered, even when a
    /// loaded machine makes `ctl` take seconds to start (96 MiB at 5 MB/s is ~20 s).
    static let size = 96 * 1024 * 1024

    @Test(.enabled(if: TestPaths.which("curl") != nil, "needs curl"))
    func loweredCapTakesHoldWithinASecond() async throws {
        let dir = try TestPaths.scratch("ratecap")
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("artifact.bin")
        try randomData(Self.size, seed: 31).write(to: file)
        let torrent = try await makeTorrent(file, in: dir, extra: ["--piece-size", "256KiB"])
        let seeder = try TestProcess.starling(["seed", torrent.path, file.path, "--ip", "127.0.4.1", "--port-range", "7401-7401",
                                               "--up-rate", "40mbit", "--admin-listen", "127.0.4.1:9401"],
                                              log: dir.appendingPathComponent("seed.log"), name: "seeder")
        defer { seeder.stop() }
        try await seeder.waitForOutput("admin and metrics listening", timeout: 30)
        let status = "http://127.0.4.1:9401/status"
        let peer = try TestProcess.starling(["peer", torrent.path, dir.appendingPathComponent("copy.bin").path, "--ip", "127.0.4.2",
                                             "--port-range", "7402-7402", "--peer", "127.0.4.1:7401", "--timeout", "60"],
                                            log: dir.appendingPathComponent("peer.log"), name: "peer")
        defer { peer.stop() }

        // At 40 mbit/s (5 MB/s on the wire). The lower bounds only show the transfer runs (a
        // loaded CI machine may not reach the cap); the upper bounds are the point.
        try await Task.sleep(nanoseconds: 1_000_000_000)
        let a0 = try await Self.uploaded(status, dir: dir)
        try await Task.sleep(nanoseconds: 2_000_000_000)
        let a1 = try await Self.uploaded(status, dir: dir)
        let before = Self.rate(a0, a1)
        #expect(before > 1_500_000 && before < 5_250_000, "rate at the 40mbit cap: \(before) B/s")

        let ctl = try TestProcess.starling(["ctl", "rate", "--up", "10mbit", "--admin", "http://127.0.4.1:9401"],
                                           log: dir.appendingPathComponent("ctl.log"), name: "ctl")
        #expect(try await ctl.wait(timeout: 10) == 0, "\(ctl.output)")
        // Within a second the new cap holds: measure the three seconds after that second.
        try await Task.sleep(nanoseconds: 1_000_000_000)
        let b0 = try await Self.uploaded(status, dir: dir)
        try await Task.sleep(nanoseconds: 3_000_000_000)
        let b1 = try await Self.uploaded(status, dir: dir)
        let after = Self.rate(b0, b1)
        #expect(b1.bytes < Self.size, "the transfer ended before the lowered cap could be measured")
        #expect(after > 300_000 && after <= 1_250_000 * 1.05, "rate after lowering to 10mbit: \(after) B/s")
        print("rate cap change: \(Int(before)) B/s at 40mbit, \(Int(after)) B/s from 1 s after lowering to 10mbit")

        let lifted = try TestProcess.starling(["ctl", "rate", "--up", "0", "--admin", "http://127.0.4.1:9401"],
                                              log: dir.appendingPathComponent("ctl2.log"), name: "ctl")
        #expect(try await lifted.wait(timeout: 10) == 0)
        #expect(try await peer.wait(timeout: 60) == 0, "\(peer.output.suffix(1500))")
        #expect(try Data(contentsOf: dir.appendingPathComponent("copy.bin")) == Data(contentsOf: file))
    }
}

/// A seeder's admin listener off loopback answers only requests that carry its token.
@Suite(.serialized, .tags(.endToEnd))
struct AdminTokenTests {
    @Test func adminOnAllAddressesRefusesRequestsWithoutTheToken() async throws {
        let dir = try TestPaths.scratch("admintoken")
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("artifact.bin")
        try randomData(200_000, seed: 37).write(to: file)
        let torrent = try await makeTorrent(file, in: dir)
        let token = dir.appendingPathComponent("admin.token")
        try "s3cret-token-for-the-test\n".write(to: token, atomically: true, encoding: .utf8)
        let seeder = try TestProcess.starling(["seed", torrent.path, file.path, "--ip", "127.0.4.5", "--port-range", "7405-7405",
                                               "--no-tracker", "--admin-listen", "0.0.0.0:9405", "--admin-token-file", token.path],
                                              log: dir.appendingPathComponent("seed.log"), name: "seeder")
        defer { seeder.stop() }
        try await seeder.waitForOutput("admin and metrics listening", timeout: 30)
        func ctl(_ extra: [String], _ name: String) async throws -> Int32 {
            let p = try TestProcess.starling(["ctl", "rate", "--up", "1mbit", "--admin", "http://127.0.0.1:9405"] + extra,
                                             log: dir.appendingPathComponent("\(name).log"), name: name)
            return try await p.wait(timeout: 10)
        }
        #expect(try await ctl([], "anonymous") != 0, "an unauthenticated POST /rate was accepted")
        #expect(try await ctl(["--token-file", token.path], "authorised") == 0)
    }
}
