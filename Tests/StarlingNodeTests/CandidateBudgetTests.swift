import Foundation
import Testing
@testable import StarlingNode

/// A hostile tracker's answers must not grow the candidates the engine keeps without bound.
@Suite struct CandidateBudgetTests {
    static func addresses(_ range: Range<Int>) -> [PeerAddress] {
        range.map { PeerAddress(host: "10.\($0 >> 16 & 0xff).\($0 >> 8 & 0xff).\($0 & 0xff)", port: 6881) }
    }

    @Test func manyAnswersOfFakePeersAdmitAtMostTheLimit() {
        var budget = CandidateBudget()
        var handed = Set<PeerAddress>()
        // 27 answers of 200 distinct peers each, as the decoder caps them: 5,400 offered.
        for answer in 0..<27 {
            handed.formUnion(budget.admit(Self.addresses(answer * 200..<(answer + 1) * 200)))
        }
        #expect(handed.count == CandidateBudget.defaultLimit)
        #expect(budget.admitted.count == CandidateBudget.defaultLimit)
    }

    @Test func admittedAddressesStayUsableOnceFull() {
        var budget = CandidateBudget(limit: 3)
        #expect(budget.admit(Self.addresses(0..<5)) == Self.addresses(0..<3))
        // A known peer offered again still goes to the engine (it may have been dropped there); a new one does not.
        #expect(budget.admit(Self.addresses(2..<6)) == Self.addresses(2..<3))
    }
}

/// The attack end to end: a tracker answering every announce with 170,000 fresh fake peers.
@Suite(.serialized)
struct HostileTrackerTests {
    static func residentMiB(_ pid: Int32) throws -> Double {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kib = Double(line.split(separator: " ").dropFirst().first ?? "") else {
            throw TestFailure("no VmRSS in /proc/\(pid)/status")
        }
        return kib / 1024
    }

    @Test(.enabled(if: TestPaths.which("python3") != nil, "needs python3"))
    func peerMemoryStaysFlatUnderMillionsOfFakePeers() async throws {
        let dir = try TestPaths.scratch("hostile-tracker")
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("artifact.bin")
        try randomData(1 << 20, seed: 61).write(to: file)
        let torrent = try await makeTorrent(file, in: dir, extra: ["--tracker", "http://127.0.42.1:6942/announce"])
        let tracker = try TestProcess("/usr/bin/python3", [TestPaths.fixtures.appendingPathComponent("hostile_tracker.py").path,
                                                           "127.0.42.1", "6942"],
                                      log: dir.appendingPathComponent("tracker.log"), name: "hostile tracker")
        defer { tracker.stop() }
        try await Task.sleep(nanoseconds: 500_000_000)
        let peer = try TestProcess.starling(["peer", torrent.path, dir.appendingPathComponent("out.bin").path, "--ip", "127.0.42.2",
                                             "--port-range", "7942-7942", "--timeout", "300"],
                                            log: dir.appendingPathComponent("peer.log"), name: "peer")
        defer { peer.stop() }
        // 12 answers: 2 million fake peers offered (before the caps: several hundred MiB).
        // Without the caps the peer also slows to a crawl (it walks every candidate each tick),
        // so measure whatever it reached.
        let reached = (try? await tracker.waitForOutput("announce 12\n", timeout: 60)) != nil
        let answers = tracker.output.split(separator: "\n").count
        let rss = try Self.residentMiB(peer.process.processIdentifier)
        print("peer RSS after \(answers) hostile answers (\(answers * 170_000) fake peers): \(rss) MiB")
        #expect(reached, "the peer announced only \(answers) times in 60 s")
        #expect(rss < 64, "peer RSS \(rss) MiB after \(answers * 170_000) fake peers")
    }
}
