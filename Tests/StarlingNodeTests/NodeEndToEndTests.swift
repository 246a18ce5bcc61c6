import Foundation
import TestSupport
import StarlingNode
import Testing

/// Three `starling node` processes from configuration files on loopback: a tracker+seeder and
/// two peers finish a torrent; a real Prometheus scrapes all three; SIGHUP changes a cap;
/// SIGTERM stops each node cleanly.
@Suite(.serialized, .tags(.endToEnd))
struct NodeEndToEndTests {
    static func write(_ text: String, to url: URL) throws { try text.write(to: url, atomically: true, encoding: .utf8) }

    static func nodeConfig(ip: String, dir: URL, roles: String, body: String) -> String {
        """
        node:
          data_dir: \(dir.path)
          ip: \(ip)
          port_range: 7960-7960
        roles: [\(roles)]
        \(body)
        http:
          metrics_listen: \(ip):9480
          admin_listen: \(ip):9481
        """
    }

    static func curl(_ url: String, dir: URL) async throws -> String {
        let p = try TestProcess("/usr/bin/curl", ["-sf", "--max-time", "5", url], log: dir.appendingPathComponent("curl-\(UUID()).log"), name: "curl")
        guard try await p.wait(timeout: 10) == 0 else { throw TestFailure("curl \(url) failed: \(p.output)") }
        return p.output
    }

    @Test(.enabled(if: TestPaths.which("curl") != nil, "needs curl"))
    func threeNodesFromConfigFiles() async throws {
        let dir = try TestPaths.scratch("nodes")
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("artifact.bin")
        try randomData(12 * 1024 * 1024, seed: 51).write(to: file)
        let torrent = try await makeTorrent(file, in: dir, extra: ["--tracker", "http://127.0.40.1:6995/announce", "--piece-size", "64KiB"])
        let configs = [
            ("127.0.40.1", "tracker, seeder", """
             tracker:
               listen: 127.0.40.1:6995
             torrents:
               - torrent: \(torrent.path)
                 path: \(file.path)
                 mode: seed
             rates:
               up: 80mbit
             """),
            ("127.0.40.2", "peer", "torrents:\n  - torrent: \(torrent.path)\n    mode: fetch"),
            ("127.0.40.3", "peer", "torrents:\n  - torrent: \(torrent.path)\n    mode: fetch"),
        ]
        var nodes: [TestProcess] = []
        defer { for n in nodes { n.stop() } }
        for (i, (ip, roles, body)) in configs.enumerated() {
            let yaml = dir.appendingPathComponent("node\(i).yaml")
            try Self.write(Self.nodeConfig(ip: ip, dir: dir.appendingPathComponent("data\(i)"), roles: roles,
                                           body: body.replacingOccurrences(of: "\n ", with: "\n")), to: yaml)
            let check = try TestProcess.starling(["node", "--check-config", yaml.path], log: dir.appendingPathComponent("check\(i).log"), name: "check")
            #expect(try await check.wait(timeout: 20) == 0, "\(check.output)")
            let node = try TestProcess.starling(["node", "--config", yaml.path], log: dir.appendingPathComponent("node\(i).log"), name: "node \(ip)")
            nodes.append(node)
            try await node.waitForOutput("node running", timeout: 30)
        }
        // Both peers finish and verify.
        for i in 1...2 {
            let out = dir.appendingPathComponent("data\(i)/artifact.bin")
            let deadline = Date().addingTimeInterval(60)
            while !FileManager.default.fileExists(atPath: out.path), Date() < deadline { try await Task.sleep(nanoseconds: 200_000_000) }
            #expect(try Data(contentsOf: out) == Data(contentsOf: file))
            let status = try await Self.curl("http://127.0.40.\(i + 1):9480/status", dir: dir)
            #expect(status.contains("\"state\":\"seeding\""), "\(status)")
        }

        // A real Prometheus scrapes all three nodes; its API returns their byte and progress series.
        if let prometheus = TestPaths.which("prometheus") {
            let promDir = dir.appendingPathComponent("prom")
            try FileManager.default.createDirectory(at: promDir, withIntermediateDirectories: true)
            try Self.write("""
                global:
                  scrape_interval: 1s
                scrape_configs:
                  - job_name: starling
                    static_configs:
                      - targets: ['127.0.40.1:9480', '127.0.40.2:9480', '127.0.40.3:9480']
                """, to: promDir.appendingPathComponent("prometheus.yml"))
            let prom = try TestProcess(prometheus, ["--config.file=\(promDir.path)/prometheus.yml", "--storage.tsdb.path=\(promDir.path)/data",
                                                    "--web.listen-address=127.0.40.9:9490"],
                                       log: dir.appendingPathComponent("prometheus.log"), name: "prometheus")
            defer { prom.stop() }
            for query in ["starling_torrent_bytes_total", "starling_download_progress_ratio", "starling_requests_outstanding",
                          "starling_unchecked_bytes"] {
                var instances: Set<String> = []
                let deadline = Date().addingTimeInterval(30)
                while instances.count < 3, Date() < deadline {
                    try await Task.sleep(nanoseconds: 1_000_000_000)
                    guard let body = try? await Self.curl("http://127.0.40.9:9490/api/v1/query?query=\(query)", dir: dir),
                          let json = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any],
                          let result = (json["data"] as? [String: Any])?["result"] as? [[String: Any]] else { continue }
                    instances = Set(result.compactMap { ($0["metric"] as? [String: String])?["instance"] })
                }
                #expect(instances.count == 3, "\(query) from \(instances.sorted()) only")
            }
        }

        // Admin actions: remove a torrent from a node, then add it back (it verifies and seeds).
        let hash = try await infoHash(of: torrent, in: dir).hash
        for (args, expected) in [(["remove", hash], "\"torrents\":[]"), (["add", torrent.path], "\"state\":\"seeding\"")] {
            let ctl = try TestProcess.starling(["ctl"] + args + ["--admin", "http://127.0.40.2:9481"],
                                               log: dir.appendingPathComponent("ctl-\(args[0]).log"), name: "ctl \(args[0])")
            #expect(try await ctl.wait(timeout: 10) == 0, "\(ctl.output)")
            var status = ""
            let deadline = Date().addingTimeInterval(10)
            while !status.contains(expected), Date() < deadline {
                try await Task.sleep(nanoseconds: 200_000_000)
                status = try await Self.curl("http://127.0.40.2:9480/status", dir: dir)
            }
            #expect(status.contains(expected), "after ctl \(args[0]): \(status)")
        }

        // A torrent the seeder's file does not list, added by an admin action.
        let extra = dir.appendingPathComponent("extra.bin")
        try randomData(300_000, seed: 52).write(to: extra)
        let extraTorrent = try await makeTorrent(extra, in: dir, extra: ["--tracker", "http://127.0.40.1:6995/announce"])
        let extraHash = try await infoHash(of: extraTorrent, in: dir).hash
        let add = try TestProcess.starling(["ctl", "add", extraTorrent.path, "--seed", "--path", extra.path, "--admin", "http://127.0.40.1:9481"],
                                           log: dir.appendingPathComponent("ctl-add-extra.log"), name: "ctl add extra")
        #expect(try await add.wait(timeout: 10) == 0, "\(add.output)")
        try await nodes[0].waitForOutput("extra.bin", timeout: 10)

        // SIGHUP: the seeder's new cap from its edited file is in force at once, and the admin's
        // torrent still runs (a reload stops only what the file itself listed).
        let seederConfig = dir.appendingPathComponent("node0.yaml")
        try Self.write(try String(contentsOf: seederConfig, encoding: .utf8).replacingOccurrences(of: "up: 80mbit", with: "up: 10mbit"), to: seederConfig)
        nodes[0].signal(SIGHUP)
        try await nodes[0].waitForOutput("configuration reloaded", timeout: 10)
        let caps = try await Self.curl("http://127.0.40.1:9480/status", dir: dir)
        let reloaded = try NodeStatus.decode(Array(caps.utf8))
        #expect(reloaded.rateCaps.up == 1_250_000, "\(caps)")
        #expect(Set(reloaded.torrents.map(\.infoHash)) == [hash, extraHash], "\(caps)")

        // SIGTERM: each node stops within a few seconds, with status 0.
        for n in nodes {
            n.signal(SIGTERM)
            #expect(try await n.wait(timeout: 8) == 0, "\(n.name): \(n.output.suffix(1000))")
        }
    }
}

/// Bad entries a node meets on its own disk: each is logged and skipped, none stops the node.
@Suite(.serialized, .tags(.endToEnd))
struct NodeBadEntriesTests {
    @Test func watchFolderSkipsBrokenLinksAndAdminRefusesAFIFO() async throws {
        let dir = try TestPaths.scratch("node-bad-entries")
        defer { try? FileManager.default.removeItem(at: dir) }
        let watch = dir.appendingPathComponent("watch")
        try FileManager.default.createDirectory(at: watch, withIntermediateDirectories: true)
        let file = dir.appendingPathComponent("good.bin")
        try randomData(100_000, seed: 53).write(to: file)
        let torrent = try await makeTorrent(file, in: dir)
        // Sorted before the good one, so a scan that stops at the first bad entry never reaches it.
        #expect(symlink(dir.appendingPathComponent("missing").path, watch.appendingPathComponent("a-dangling.torrent").path) == 0)
        #expect(symlink(watch.appendingPathComponent("b-loop.torrent").path, watch.appendingPathComponent("b-loop.torrent").path) == 0)
        #expect(symlink(watch.path, watch.appendingPathComponent("c-self").path) == 0)
        try FileManager.default.copyItem(at: torrent, to: watch.appendingPathComponent("d-good.torrent"))
        let fifo = dir.appendingPathComponent("pipe.torrent")
        #expect(mkfifo(fifo.path, 0o600) == 0)

        let yaml = dir.appendingPathComponent("node.yaml")
        try NodeEndToEndTests.write("""
            node:
              data_dir: \(dir.appendingPathComponent("data").path)
              ip: 127.0.41.1
              port_range: 7961-7961
            roles: [peer]
            watch_dir: \(watch.path)
            http:
              metrics_listen: 127.0.41.1:9482
              admin_listen: 127.0.41.1:9483
            """, to: yaml)
        let node = try TestProcess.starling(["node", "--config", yaml.path], log: dir.appendingPathComponent("node.log"), name: "node")
        defer { node.stop() }
        try await node.waitForOutput("node running", timeout: 30)
        try await node.waitForOutput("good.bin", timeout: 20)
        #expect(node.output.contains("a-dangling.torrent"), "\(node.output)")
        #expect(node.output.contains("b-loop.torrent"), "\(node.output)")

        // Opening a FIFO without a writer blocks: the node must refuse it, not hang on it.
        let ctl = try TestProcess.starling(["ctl", "add", fifo.path, "--admin", "http://127.0.41.1:9483"],
                                           log: dir.appendingPathComponent("ctl.log"), name: "ctl add")
        #expect(try await ctl.wait(timeout: 10) != 0)
        #expect(ctl.output.contains("not a regular file"), "\(ctl.output)")
        node.signal(SIGTERM)
        #expect(try await node.wait(timeout: 8) == 0, "\(node.output.suffix(2000))")
    }
}
