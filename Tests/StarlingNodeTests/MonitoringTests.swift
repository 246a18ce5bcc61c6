import Foundation
import TestSupport
import Testing

/// The monitoring kit (grafana/, config/prometheus/, config/zabbix/) checked for real: every
/// PromQL expression of the dashboard and the alert rules runs against a real Prometheus that
/// scrapes a live loopback swarm; promtool checks and unit-tests the rules; the Zabbix
/// UserParameters answer through `zabbix_agentd -t` against a running seeder.
@Suite(.serialized, .tags(.endToEnd))
struct MonitoringTests {
    static let root = TestPaths.packageRoot
    static var dashboardURL: URL { root.appendingPathComponent("grafana/dashboards/starling-rollout.json") }
    static var alertsURL: URL { root.appendingPathComponent("config/prometheus/alerts.yml") }
    static var alertsTestURL: URL { root.appendingPathComponent("config/prometheus/alerts_test.yml") }
    static var zabbixTemplateURL: URL { root.appendingPathComponent("config/zabbix/starling_template.yaml") }
    static var userParametersURL: URL { root.appendingPathComponent("config/zabbix/userparameter_starling.conf") }

    /// Families the kit may refer to that the live swarm below does not expose (none: the
    /// swarm runs gossip too, so its families are there).
    static let notYetExposed: Set<String> = []

    /// Gossip among the live swarm's processes, so the gossip panels have data.
    static let gossip = ["--gossip-subnet", "127.0.20.0/24", "--gossip-seed", "127.0.20.3", "--gossip-insecure"]

    static let prometheus = TestPaths.which("prometheus")
    static let promtool = TestPaths.which("promtool")
    static let curl = TestPaths.which("curl")
    static let zabbixAgent = TestPaths.which("zabbix_agentd")
    static let jq = TestPaths.which("jq")

    // MARK: helpers

    /// The dashboard's panels, flattened out of rows.
    static func dashboardPanels() throws -> [[String: Any]] {
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: dashboardURL)) as! [String: Any]
        var out: [[String: Any]] = []
        for p in json["panels"] as? [[String: Any]] ?? [] {
            out.append(p)
            out += p["panels"] as? [[String: Any]] ?? []
        }
        return out
    }

    /// (panel title, expr) of every target in the dashboard.
    static func dashboardExpressions() throws -> [(title: String, expr: String)] {
        try dashboardPanels().flatMap { p in
            (p["targets"] as? [[String: Any]] ?? []).compactMap { t in
                (t["expr"] as? String).map { (p["title"] as? String ?? "?", $0) }
            }
        }
    }

    /// Grafana's variables replaced as "All" would: a regex matching everything, and a short rate window.
    static func substitute(_ expr: String) -> String {
        expr.replacingOccurrences(of: "$__rate_interval", with: "10s")
            .replacingOccurrences(of: "${torrent}", with: ".*").replacingOccurrences(of: "$torrent", with: ".*")
            .replacingOccurrences(of: "${instance}", with: ".*").replacingOccurrences(of: "$instance", with: ".*")
            .replacingOccurrences(of: "${job}", with: ".*").replacingOccurrences(of: "$job", with: ".*")
    }

    /// starling_* names in a text.
    static func metricNames(in text: String) -> Set<String> {
        let re = try! NSRegularExpression(pattern: "starling_[a-z0-9_]+")
        let ns = text as NSString
        return Set(re.matches(in: text, range: NSRange(location: 0, length: ns.length)).map { ns.substring(with: $0.range) })
    }

    /// curl GET, JSON-decoded.
    static func getJSON(_ url: String, query: String? = nil, dir: URL) async throws -> [String: Any] {
        var args = ["-s", "--max-time", "5", "-G", url]
        if let query { args += ["--data-urlencode", "query=\(query)"] }
        let p = try TestProcess(curl!, args, log: dir.appendingPathComponent("curl-\(UUID().uuidString).log"), name: "curl")
        guard try await p.wait(timeout: 10) == 0 else { throw TestFailure("curl \(url) failed: \(p.output)") }
        guard let json = try? JSONSerialization.jsonObject(with: Data(p.output.utf8)) as? [String: Any] else {
            throw TestFailure("not JSON from \(url): \(p.output.prefix(500))")
        }
        try? FileManager.default.removeItem(at: p.logURL)
        return json
    }

    static func getText(_ url: String, dir: URL) async throws -> String {
        let p = try TestProcess(curl!, ["-sf", "--max-time", "5", url], log: dir.appendingPathComponent("curl-\(UUID().uuidString).log"), name: "curl")
        guard try await p.wait(timeout: 10) == 0 else { throw TestFailure("curl \(url) failed: \(p.output)") }
        return p.output
    }

    /// Runs an instant query; returns (status, number of result series, error).
    static func query(_ expr: String, prom: String, dir: URL) async throws -> (ok: Bool, series: Int, error: String) {
        let json = try await getJSON("\(prom)/api/v1/query", query: expr, dir: dir)
        let ok = json["status"] as? String == "success"
        let result = (json["data"] as? [String: Any])?["result"]
        let n = (result as? [Any])?.count ?? (result == nil ? 0 : 1)
        return (ok, n, (json["error"] as? String) ?? "")
    }

    // MARK: static checks

    @Test func dashboardHasWhatGrafanaNeeds() throws {
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: Self.dashboardURL)) as! [String: Any]
        #expect((json["uid"] as? String)?.isEmpty == false)
        #expect((json["title"] as? String)?.isEmpty == false)
        let vars = ((json["templating"] as? [String: Any])?["list"] as? [[String: Any]]) ?? []
        let names = Set(vars.compactMap { $0["name"] as? String })
        #expect(vars.contains { $0["type"] as? String == "datasource" && $0["query"] as? String == "prometheus" && $0["name"] as? String == "datasource" },
                "a datasource variable of type prometheus")
        #expect(names.isSuperset(of: ["torrent", "instance"]), "torrent and host variables: \(names)")
        let panels = try Self.dashboardPanels().filter { $0["type"] as? String != "row" }
        #expect(panels.count >= 10)
        var ids = Set<Int>()
        for p in panels {
            let title = p["title"] as? String ?? "?"
            let targets = p["targets"] as? [[String: Any]] ?? []
            #expect(!targets.isEmpty, "panel \(title) has targets")
            #expect(p["gridPos"] != nil, "panel \(title) has a gridPos")
            if let id = p["id"] as? Int { #expect(ids.insert(id).inserted, "panel ids are unique") }
            for t in targets {
                #expect((t["datasource"] as? [String: Any])?["uid"] as? String == "${datasource}", "\(title) uses the datasource variable")
                #expect((t["expr"] as? String)?.isEmpty == false && t["refId"] != nil, "\(title) target has expr and refId")
            }
        }
        // The panels the rollout issue asks for.
        let all = try Self.dashboardExpressions().map(\.expr).joined(separator: "\n")
        for needed in ["starling_download_progress_ratio", "starling_wire_bytes_total", "starling_rate_cap_bytes_per_second",
                       "starling_torrent_size_bytes", "starling_tracker_seeders", "starling_tracker_leechers",
                       "starling_pieces_failed_total", "starling_peers_banned_total", "starling_gossip_members",
                       "starling_tracker_client_announces_total"] {
            #expect(all.contains(needed), "dashboard uses \(needed)")
        }
    }

    @Test func zabbixTemplateLooksLikeA60Export() throws {
        let text = try String(contentsOf: Self.zabbixTemplateURL, encoding: .utf8)
        #expect(text.hasPrefix("zabbix_export:\n  version: '6.0'"))
        #expect(text.contains("type: HTTP_AGENT") && text.contains("type: DEPENDENT") && text.contains("type: PROMETHEUS_PATTERN"))
        #expect(text.contains("triggers:"))
        // UUIDs: version-4 UUIDs written as 32 lowercase hex digits, unique. Zabbix 6.0's
        // import refuses any other ("Invalid parameter "/1/uuid": UUIDv4 is expected.").
        let re = try NSRegularExpression(pattern: "uuid: ([^\\n]*)")
        let ns = text as NSString
        let uuids = re.matches(in: text, range: NSRange(location: 0, length: ns.length)).map { ns.substring(with: $0.range(at: 1)) }
        #expect(uuids.count > 10 && Set(uuids).count == uuids.count)
        #expect(uuids.allSatisfy { $0.count == 32 && $0.allSatisfy { "0123456789abcdef".contains($0) } })
        let notV4 = uuids.filter { u in
            let digits = Array(u)
            return digits.count != 32 || digits[12] != "4" || !"89ab".contains(digits[16])
        }
        #expect(notV4.isEmpty, "not version-4 UUIDs: \(notV4)")
        // Every item a trigger refers to is defined (as an item or an item prototype).
        func captures(_ pattern: String) throws -> Set<String> {
            let re = try NSRegularExpression(pattern: pattern)
            return Set(re.matches(in: text, range: NSRange(location: 0, length: ns.length)).map { ns.substring(with: $0.range(at: 1)) })
        }
        let keys = try captures("\\n +key: '?([^'\\n]+)'?\\n")
        let used = try captures("/Starling node by HTTP/([a-z.]+(?:\\[[^\\]]*\\])?)")
        #expect(used.count >= 8)
        #expect(used.subtracting(keys).isEmpty, "triggers use undefined items: \(used.subtracting(keys).sorted())")
    }

    @Test(.enabled(if: promtool != nil, "needs promtool (Debian package prometheus)"), .timeLimit(.minutes(1)))
    func promtoolChecksAndUnitTestsTheRules() async throws {
        let dir = try TestPaths.scratch("promtool")
        defer { try? FileManager.default.removeItem(at: dir) }
        let check = try TestProcess(Self.promtool!, ["check", "rules", Self.alertsURL.path], log: dir.appendingPathComponent("check.log"), name: "promtool check")
        #expect(try await check.wait(timeout: 30) == 0, "\(check.output)")
        #expect(check.output.contains("SUCCESS"))
        let unit = try TestProcess(Self.promtool!, ["test", "rules", Self.alertsTestURL.path], log: dir.appendingPathComponent("test.log"), name: "promtool test")
        #expect(try await unit.wait(timeout: 30) == 0, "\(unit.output)")
        #expect(unit.output.contains("SUCCESS"))
        // Every alert has at least one unit test.
        let rules = try String(contentsOf: Self.alertsURL, encoding: .utf8)
        let tests = try String(contentsOf: Self.alertsTestURL, encoding: .utf8)
        for line in rules.split(separator: "\n") where line.contains("- alert:") {
            let name = line.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)
            #expect(tests.contains("alertname: \(name)\n"), "alerts_test.yml tests \(name)")
        }
    }

    // MARK: live swarm + Prometheus

    @Test(.enabled(if: prometheus != nil && curl != nil, "needs prometheus and curl"), .timeLimit(.minutes(2)))
    func everyExpressionRunsAgainstALiveSwarm() async throws {
        let started = Date()
        let dir = try TestPaths.scratch("monitoring")
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("artifact.bin")
        try randomData(16 * 1024 * 1024, seed: 88).write(to: file)
        let tracker = try TestProcess.starling(["tracker", "--listen", "127.0.20.2:6920", "--interval", "2"],
                                               log: dir.appendingPathComponent("tracker.log"), name: "tracker")
        defer { tracker.stop() }
        try await tracker.waitForOutput("listening", timeout: 20)
        let torrent = try await makeTorrent(file, in: dir, extra: ["--tracker", "http://127.0.20.2:6920/announce", "--piece-size", "256KiB"])
        let seeder = try TestProcess.starling(["seed", torrent.path, file.path, "--ip", "127.0.20.3", "--port-range", "7203-7203",
                                               "--metrics-listen", "127.0.20.3:9460"] + Self.gossip,
                                              log: dir.appendingPathComponent("seed.log"), name: "seeder")
        defer { seeder.stop() }
        try await seeder.waitForOutput("seeding", timeout: 30)
        // One peer capped up, one capped down, so both cap lines have data.
        var peers: [TestProcess] = []
        defer { peers.forEach { $0.stop() } }
        for (i, cap) in [["--up-rate", "20mbit"], ["--down-rate", "80mbit"]].enumerated() {
            let ip = "127.0.20.\(4 + i)"
            peers.append(try TestProcess.starling(["peer", torrent.path, dir.appendingPathComponent("copy\(i).bin").path, "--ip", ip,
                                                   "--port-range", "720\(4 + i)-720\(4 + i)", "--metrics-listen", "\(ip):9460",
                                                   "--seed-after", "90"] + cap + Self.gossip,
                                                  log: dir.appendingPathComponent("peer\(i).log"), name: "peer\(i)"))
        }

        // Prometheus scraping every second, with the alert rules loaded.
        let targets = ["127.0.20.3:9460", "127.0.20.4:9460", "127.0.20.5:9460"].map { "\"\($0)\"" }.joined(separator: ", ")
        let config = """
        global:
          scrape_interval: 1s
          evaluation_interval: 1s
        rule_files:
          - \(Self.alertsURL.path)
        scrape_configs:
          - job_name: starling
            static_configs:
              - targets: [\(targets)]
          - job_name: starling-tracker
            static_configs:
              - targets: ["127.0.20.2:6920"]
        """
        let configURL = dir.appendingPathComponent("prometheus.yml")
        try config.write(to: configURL, atomically: true, encoding: .utf8)
        let prom = "http://127.0.20.1:9291"
        let prometheus = try TestProcess(Self.prometheus!, ["--config.file=\(configURL.path)", "--storage.tsdb.path=\(dir.appendingPathComponent("tsdb").path)",
                                                            "--web.listen-address=127.0.20.1:9291", "--log.level=warn"],
                                         log: dir.appendingPathComponent("prometheus.log"), name: "prometheus")
        defer { prometheus.stop() }

        // What the nodes expose (histograms add _bucket/_sum/_count).
        var exposed = Set<String>()
        for target in ["127.0.20.2:6920", "127.0.20.3:9460", "127.0.20.4:9460", "127.0.20.5:9460"] {
            var text = ""
            let deadline = Date().addingTimeInterval(20)
            while Date() < deadline {
                if let t = try? await Self.getText("http://\(target)/metrics", dir: dir), t.contains("starling_build_info") { text = t; break }
                try await Task.sleep(nanoseconds: 200_000_000)
            }
            #expect(!text.isEmpty, "\(target) serves /metrics")
            for line in text.split(separator: "\n") where line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ")
                guard parts.count >= 4 else { continue }
                let name = String(parts[2])
                exposed.insert(name)
                if parts[3] == "histogram" { exposed.formUnion([name + "_bucket", name + "_sum", name + "_count"]) }
            }
        }

        // No panel (nor Zabbix item) refers to a metric the nodes do not expose.
        let expressions = try Self.dashboardExpressions()
        let zabbix = try String(contentsOf: Self.zabbixTemplateURL, encoding: .utf8)
        let referenced = Self.metricNames(in: expressions.map(\.expr).joined(separator: "\n")).union(Self.metricNames(in: zabbix))
        let unknown = referenced.subtracting(exposed).subtracting(Self.notYetExposed)
        #expect(unknown.isEmpty, "referenced but not exposed by any node: \(unknown.sorted())")

        // Wait until Prometheus has enough samples for every dashboard expression that must have data.
        let mustHaveData = expressions.filter { e in Self.metricNames(in: e.expr).isDisjoint(with: Self.notYetExposed) }
        // First one cheap query until the swarm is done and rates have two samples (the
        // machine is shared with other tests: don't fire the whole set every second).
        let ready = "count(starling_download_progress_ratio == 1) >= 3 and on() count(rate(starling_wire_bytes_total[10s])) >= 6"
        let readyDeadline = Date().addingTimeInterval(40)
        while Date() < readyDeadline {
            if let r = try? await Self.query(ready, prom: prom, dir: dir), r.series > 0 { break }
            try await Task.sleep(nanoseconds: 500_000_000)
        }
        var missing: [String] = []
        let deadline = Date().addingTimeInterval(20)
        repeat {
            if !missing.isEmpty { try await Task.sleep(nanoseconds: 2_000_000_000) }
            missing = []
            for e in mustHaveData {
                guard let r = try? await Self.query(Self.substitute(e.expr), prom: prom, dir: dir), r.ok, r.series > 0 else {
                    missing.append("\(e.title): \(e.expr)"); continue
                }
            }
        } while !missing.isEmpty && Date() < deadline
        #expect(missing.isEmpty, "no data for:\n\(missing.joined(separator: "\n"))\nprometheus log:\n\(prometheus.output.suffix(2000))")

        // Every dashboard expression runs without error.
        for e in expressions {
            let r = try await Self.query(Self.substitute(e.expr), prom: prom, dir: dir)
            #expect(r.ok, "\(e.title): \(e.expr): \(r.error)")
        }

        // Every alert rule Prometheus loaded from alerts.yml evaluates cleanly and its query runs.
        let ruleFile = try String(contentsOf: Self.alertsURL, encoding: .utf8)
        let expected = ruleFile.components(separatedBy: "- alert:").count - 1
        var rules: [[String: Any]] = []
        let rulesDeadline = Date().addingTimeInterval(10)
        repeat {
            let json = try await Self.getJSON("\(prom)/api/v1/rules", dir: dir)
            let groups = (json["data"] as? [String: Any])?["groups"] as? [[String: Any]] ?? []
            rules = groups.flatMap { $0["rules"] as? [[String: Any]] ?? [] }
            if rules.count == expected && rules.allSatisfy({ $0["lastEvaluation"] as? String != "0001-01-01T00:00:00Z" }) { break }
            try await Task.sleep(nanoseconds: 500_000_000)
        } while Date() < rulesDeadline
        #expect(rules.count == expected && expected >= 5, "Prometheus loaded \(rules.count) of \(expected) alert rules")
        for rule in rules {
            let name = rule["name"] as? String ?? "?"
            #expect(rule["health"] as? String == "ok", "\(name): \(rule["lastError"] ?? "")")
            let q = try await Self.query(rule["query"] as? String ?? "", prom: prom, dir: dir)
            #expect(q.ok, "\(name): \(q.error)")
            // Nothing is wrong in this swarm, so nothing but the tracker-without-gossip rule could fire.
            #expect(rule["state"] as? String == "inactive", "\(name) is \(rule["state"] ?? "?") on a healthy swarm")
        }

        // The swarm worked: both peers complete, as the dashboard's stat shows.
        let complete = try await Self.query("count(starling_download_progress_ratio == 1)", prom: prom, dir: dir)
        #expect(complete.series == 1)
        print("monitoring: \(expressions.count) dashboard expressions and \(rules.count) alert rules ran against a live swarm in \(Int(Date().timeIntervalSince(started))) s")
    }

    // MARK: Zabbix

    /// `zabbix_agentd -t KEY` with the UserParameter file, against a seeder; returns the value or nil if unsupported.
    static func agentTest(_ key: String, config: URL, dir: URL) async throws -> String? {
        let path = TestPaths.starling.split(separator: "/").dropLast().joined(separator: "/")
        let p = try TestProcess("/usr/bin/env", ["PATH=/\(path):/usr/bin:/bin", Self.zabbixAgent!, "-c", config.path, "-t", key],
                                log: dir.appendingPathComponent("agent-\(UUID().uuidString).log"), name: "zabbix_agentd -t")
        _ = try await p.wait(timeout: 20)
        let out = p.output
        // "key    [t|value]" for results, "key    [m|ZBX_NOTSUPPORTED] [reason]" for errors.
        if out.contains("ZBX_NOTSUPPORTED") { return nil }
        let re = try NSRegularExpression(pattern: "\\s\\[[a-z]\\|", options: [])
        let ns = out as NSString
        guard let m = re.firstMatch(in: out, range: NSRange(location: 0, length: ns.length)),
              let close = out.range(of: "]", options: .backwards) else { throw TestFailure("zabbix_agentd -t \(key): \(out)") }
        let start = out.index(out.startIndex, offsetBy: m.range.location + m.range.length)
        return String(out[start..<close.lowerBound])
    }

    @Test(.enabled(if: zabbixAgent != nil && jq != nil, "needs zabbix_agentd (zabbix-agent) and jq"), .timeLimit(.minutes(1)))
    func userParametersAnswerThroughZabbixAgent() async throws {
        let dir = try TestPaths.scratch("zabbix")
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("artifact.bin")
        try randomData(1024 * 1024 + 77, seed: 9).write(to: file)
        let torrent = try await makeTorrent(file, in: dir, extra: ["--tracker", "http://127.0.21.2:6921/announce"])
        let hash = try await infoHash(of: torrent, in: dir).hash
        let seeder = try TestProcess.starling(["seed", torrent.path, file.path, "--ip", "127.0.21.3", "--port-range", "7213-7213",
                                               "--up-rate", "20mbit", "--metrics-listen", "127.0.21.3:9460", "--no-tracker"],
                                              log: dir.appendingPathComponent("seed.log"), name: "seeder")
        defer { seeder.stop() }
        try await seeder.waitForOutput("seeding", timeout: 30)
        try await seeder.waitForOutput("metrics listening", timeout: 10)

        let config = dir.appendingPathComponent("zabbix_agentd.conf")
        try """
        LogType=console
        PidFile=\(dir.appendingPathComponent("agentd.pid").path)
        AllowRoot=1
        Timeout=10
        Include=\(Self.userParametersURL.path)

        """.write(to: config, atomically: true, encoding: .utf8)
        let node = "http://127.0.21.3:9460"
        let expectations: [(String, String?)] = [
            ("starling.torrents[\(node)]", "1"),
            ("starling.failed[\(node)]", "0"),
            ("starling.progress[\(node),]", "1"),
            ("starling.progress[\(node),\(hash.prefix(8))]", "1"),
            ("starling.progress[\(node),artifact.bin]", "1"),
            ("starling.state[\(node),artifact.bin]", "seeding"),
            ("starling.left[\(node),]", "0"),
            ("starling.cap[\(node),up]", "2500000"),
            ("starling.cap[\(node),down]", "0"),
            ("starling.peers[\(node),]", "0"),
        ]
        for (key, want) in expectations {
            let got = try await Self.agentTest(key, config: config, dir: dir)
            #expect(got == want, "\(key) gave \(got ?? "unsupported"), want \(want ?? "unsupported")")
        }
        let rate = try await Self.agentTest("starling.rate[\(node),up]", config: config, dir: dir)
        #expect(rate.flatMap(Double.init) != nil, "starling.rate: \(rate ?? "unsupported")")
        let version = try await Self.agentTest("starling.version[\(node)]", config: config, dir: dir)
        #expect(version?.isEmpty == false)
        let status = try await Self.agentTest("starling.status[\(node)]", config: config, dir: dir)
        #expect(status?.contains("\"torrents\"") == true, "starling.status: \(status ?? "unsupported")")
    }
}
