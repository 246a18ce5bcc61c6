import Foundation
import NodeConfig
import Testing
import Values

/// The repository's config/ folder, found from this file's path.
private let configFolder: URL = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("config")

private let exampleFiles: [String] = {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: configFolder.path)) ?? []
    return names.filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }.sorted()
}()

/// Parses `yaml` (as file `test.yaml` in /etc/starling) and returns every error's description.
private func errors(_ yaml: String) -> [String] {
    do {
        _ = try NodeConfiguration.parse(yaml: yaml, file: "test.yaml", baseDirectory: "/etc/starling")
        return []
    } catch let e as NodeConfigErrors {
        return e.errors.map(\.description)
    } catch {
        return ["unexpected error type: \(error)"]
    }
}

private func parse(_ yaml: String) throws -> NodeConfiguration {
    try NodeConfiguration.parse(yaml: yaml, file: "test.yaml", baseDirectory: "/etc/starling")
}

/// A small valid peer configuration; the bad-file cases below edit it.
private let minimal = """
node:
  data_dir: /var/lib/starling
  ip: 10.0.0.7
roles: [peer]
watch_dir: /var/lib/starling/incoming

"""

@Suite struct ExampleFiles {
    @Test func everyExampleIsFound() {
        #expect(exampleFiles.contains("tracker.yaml"))
        #expect(exampleFiles.contains("seeder.yaml"))
        #expect(exampleFiles.contains("peer.yaml"))
    }

    @Test(arguments: exampleFiles)
    func exampleParses(_ name: String) throws {
        let path = configFolder.appendingPathComponent(name).path
        do {
            let config = try NodeConfiguration.load(path: path)
            #expect(!config.roles.isEmpty)
            #expect(config.file == path)
        } catch {
            Issue.record("\(name) does not parse:\n\(error)")
        }
    }

    @Test func trackerExampleValues() throws {
        let c = try NodeConfiguration.load(path: configFolder.appendingPathComponent("tracker.yaml").path)
        #expect(c.name == "deploy-01")
        #expect(c.roles == [.tracker, .seeder])
        #expect(c.ip == IPAddress("10.0.0.1"))
        #expect(c.portRange == 6881...6889)
        #expect(c.logFormat == .json)
        #expect(c.tracker?.listen == IPEndpoint(parsing: "10.0.0.1:6969"))
        #expect(c.tracker?.interval == 15)
        #expect(c.tracker?.trustedCIDRs.map(\.description) == ["10.0.0.0/8"])
        #expect(c.torrents.count == 2)
        #expect(c.torrents[0].mode == .seed)
        #expect(c.torrents[0].upRate == 30_000_000 / 8)
        #expect(c.rates == NodeConfiguration.Rates(up: 5_000_000, down: 0))
        #expect(c.limits == NodeConfiguration.Limits(maxPeers: 80, uploadSlots: 24))
        #expect(c.gossip?.seeds == [IPEndpoint(parsing: "10.0.0.2:6890")!])
        #expect(c.gossip?.keyFile == "/etc/starling/gossip.key")
        #expect(c.http.metricsListen?.description == "10.0.0.1:9460")
    }

    @Test func maxChangeIsReadFromRates() throws {
        let c = try parse(minimal + "rates:\n  up: 20mbit\n  max_change: 4mbit/60s\n")
        #expect(c.rates == NodeConfiguration.Rates(up: 2_500_000, down: 0, maxChange: MaxChange(rate: 500_000, interval: 60_000_000_000)))
    }

    @Test func sitesAreReadOrRefusedWithTheirLines() throws {
        let c = try parse(minimal + "sites:\n  rack1: [10.1.0.0/16]\n  rack2: [10.2.0.0/16, 192.168.2.0/24]\n")
        #expect(c.sites.sites.map(\.name) == ["rack1", "rack2"])
        #expect(c.sites.site(of: IPAddress("192.168.2.9")!) == "rack2")
        #expect(try parse(minimal).sites.isEmpty)
        let bad = errors(minimal + "sites:\n  rack1: 10.1.0.0/16\n  rack2: [10.1.0.0/16]\n  rack3: [10.3.0.1/16]\n  'a b': [10.4.0.0/16]\n")
        #expect(bad.contains { $0.hasPrefix("test.yaml:7: sites.rack1: expected a list of CIDR networks") }, "\(bad)")
        #expect(bad.contains { $0.hasPrefix("test.yaml:10: sites.a b:") && $0.contains("a site name is") }, "\(bad)")
        #expect(bad.contains { $0.contains("sites.rack3: 10.3.0.1/16 has host bits set") }, "\(bad)")
        #expect(errors(minimal + "sites: [10.1.0.0/16]\n").first?.contains("sites: expected a mapping of site name") == true)
    }

    @Test func peerExampleValues() throws {
        let c = try NodeConfiguration.load(path: configFolder.appendingPathComponent("peer.yaml").path)
        #expect(c.roles == [.peer])
        #expect(c.tracker == nil)
        #expect(c.trackers == ["http://10.0.0.1:6969/announce"])
        #expect(c.torrents.map(\.mode) == [.fetch, .fetch])
        #expect(c.torrents[1].path == nil)
        #expect(c.dataPath(for: c.torrents[1], torrentName: "app.tgz") == "/var/lib/starling/app.tgz")
        #expect(c.torrents[1].downRate == 2_500_000)
        #expect(c.watchDir == "/var/lib/starling/incoming")
        #expect(c.rates == NodeConfiguration.Rates(up: 2_500_000, down: 3_750_000))
        #expect(c.gossip?.seeds.map(\.description) == ["10.0.0.1:6890", "10.0.0.2:6890"])
        #expect(c.http.adminListen?.description == "127.0.0.1:9461")
        #expect(c.logLevel == .notice)
    }
}

@Suite struct Defaults {
    @Test func minimalFileGetsDefaults() throws {
        let c = try parse(minimal)
        #expect(!c.name.isEmpty)
        #expect(c.portRange == 6881...6889)
        #expect(c.logLevel == .info && c.logFormat == .text)
        #expect(c.rates == NodeConfiguration.Rates(up: 0, down: 0))
        #expect(c.limits == NodeConfiguration.Limits(maxPeers: 50, uploadSlots: 16))
        #expect(c.gossip == nil)
        #expect(c.tcpCongestion == nil, "not set: the engine takes Defaults.tcpCongestion")
        #expect(c.http.metricsListen == IPEndpoint(parsing: "10.0.0.7:9460"))
        #expect(c.http.adminListen == IPEndpoint(parsing: "127.0.0.1:9461"))
        #expect(c.file == "/etc/starling/test.yaml" || c.file.hasSuffix("/test.yaml"))
    }

    @Test func peerAllowListIsTakenOrRefusedWithItsLine() throws {
        let node = "node:\n  data_dir: /var/lib/starling\n  ip: 10.0.0.7\n"
        let rest = "roles: [peer]\nwatch_dir: /x\n"
        #expect(try parse(minimal).allowedPeers.isEmpty, "no allow-list: any address")
        #expect(try parse(node + rest + "peer:\n  allow_cidrs: [10.0.0.0/16, fd00::/8]\n").allowedPeers
                == [CIDR("10.0.0.0/16")!, CIDR("fd00::/8")!])
        #expect(errors(node + rest + "peer:\n  allow_cidrs: [192.168.0.0/16]\n") == [
            "test.yaml:7: peer.allow_cidrs does not contain node.ip 10.0.0.7: this node could not talk to its own network",
        ])
        #expect(errors(node + rest + "peer:\n  allow_cidrs: [10.0.0.1/8]\n") == [
            "test.yaml:7: peer.allow_cidrs: 10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8?",
        ])
    }

    @Test func tcpCongestionIsTakenOrRefusedWithItsLine() throws {
        let node = "node:\n  data_dir: /var/lib/starling\n  ip: 10.0.0.7\n"
        let rest = "roles: [peer]\nwatch_dir: /x\n"
        #expect(try parse(node + "  tcp_congestion: cubic\n" + rest).tcpCongestion == "cubic")
        #expect(errors(node + "  tcp_congestion: cubic; reno\n" + rest) == [
            "test.yaml:4: node.tcp_congestion: 'cubic; reno' is not an algorithm name; expected e.g. cubic or bbr (letters, digits, '_'; at most 15)",
        ])
    }

    @Test func relativePathsResolveAgainstTheConfigFolder() throws {
        let c = try parse("""
        node:
          data_dir: data
          ip: 10.0.0.7
        roles: [seeder]
        torrents:
          - torrent: torrents/../app.torrent
            path: ./srv//app.rpm
            mode: seed
        """)
        #expect(c.dataDir == "/etc/starling/data")
        #expect(c.torrents[0].torrent == "/etc/starling/app.torrent")
        #expect(c.torrents[0].path == "/etc/starling/srv/app.rpm")
        #expect(c.torrents[0].line == 6)
    }

    @Test func loadResolvesAgainstTheFilesFolder() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nodeconfig-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("node.yaml")
        try minimal.replacingOccurrences(of: "/var/lib/starling/incoming", with: "incoming")
            .write(to: file, atomically: true, encoding: .utf8)
        let c = try NodeConfiguration.load(path: file.path)
        #expect(c.watchDir == dir.appendingPathComponent("incoming").path)
    }

    @Test func ipv6Addresses() throws {
        let c = try parse("""
        node:
          data_dir: /var/lib/starling
          ip: fd00::7
        roles: [tracker]
        tracker:
          listen: "[fd00::7]:6969"
        http:
          metrics_listen: "[::]:9460"
          admin_listen: "[::1]:9461"
        """)
        #expect(c.tracker?.listen == IPEndpoint(parsing: "[fd00::7]:6969"))
        #expect(c.http.adminListen?.description == "[::1]:9461")
    }
}

/// One bad file and the error lines it must produce (each must be among the errors).
struct BadFile: Sendable, CustomTestStringConvertible {
    let name: String
    let yaml: String
    let expected: [String]
    /// The expected errors are all the errors.
    var exactly = false
    var testDescription: String { name }
}

private let badFiles: [BadFile] = [
    BadFile(name: "unknown key with suggestion", yaml: """
        node:
          data_dri: /var/lib/starling
          ip: 10.0.0.7
        roles: [peer]
        watch_dir: /x
        """, expected: [
            "test.yaml:2: unknown key 'data_dri' in 'node'; did you mean 'data_dir'? (allowed: name, data_dir, ip, port_range, random_port, log_level, log_format, tcp_congestion)",
        ], exactly: true),
    BadFile(name: "unknown top-level key", yaml: minimal + "torrent: []\n", expected: [
        "test.yaml:6: unknown top-level key 'torrent'; did you mean 'torrents'? (allowed: node, roles, tracker, trackers, torrents, watch_dir, rates, limits, peer, sites, gossip, http)",
    ]),
    BadFile(name: "unknown key in another spelling", yaml: """
        node:
          data_dir: /var/lib/starling
          ip: 10.0.0.7
          log-level: debug
          logFormat: json
        roles: [peer]
        watch_dir: /x
        """, expected: [
            "test.yaml:4: unknown key 'log-level' in 'node'; did you mean 'log_level'? (allowed: name, data_dir, ip, port_range, random_port, log_level, log_format, tcp_congestion)",
            "test.yaml:5: unknown key 'logFormat' in 'node'; did you mean 'log_format'? (allowed: name, data_dir, ip, port_range, random_port, log_level, log_format, tcp_congestion)",
        ], exactly: true),
    BadFile(name: "unknown key without suggestion", yaml: minimal + "rates:\n  sideways: 1\n", expected: [
        "test.yaml:7: unknown key 'sideways' in 'rates' (allowed: up, down, max_change)",
    ]),
    BadFile(name: "wrong type: list expected", yaml: minimal + "trackers: http://10.0.0.1:6969/announce\n", expected: [
        "test.yaml:6: trackers: expected a list of http:// announce URLs, found 'http://10.0.0.1:6969/announce'",
    ]),
    BadFile(name: "wrong type: string list item", yaml: """
        node:
          data_dir: /var/lib/starling
          ip: 10.0.0.7
        roles: [peer, [seeder]]
        watch_dir: /x
        """, expected: [
            "test.yaml:4: roles: expected one of tracker|seeder|peer, found a list",
        ]),
    BadFile(name: "wrong type: mapping expected", yaml: minimal + "rates: 40mbit\n", expected: [
        "test.yaml:6: expected a mapping for 'rates' (keys: up, down, max_change), found '40mbit'",
    ]),
    BadFile(name: "bad rate", yaml: minimal + "rates:\n  up: 40mbits\n  down: 10 furlongs\n", expected: [
        "test.yaml:7: rates.up: '40mbits' is not a rate; expected a rate such as 40mbit, 5MB, 512KiB (per second) or 0 for unlimited",
        "test.yaml:8: rates.down: '10 furlongs' is not a rate; expected a rate such as 40mbit, 5MB, 512KiB (per second) or 0 for unlimited",
    ]),
    BadFile(name: "bad max_change", yaml: minimal + "rates:\n  max_change: 5mbit\n", expected: [
        "test.yaml:7: rates.max_change: '5mbit' is not a rate change; expected RATE/INTERVAL, e.g. 5mbit/60s (a rate above 0, a duration above 0)",
    ]),
    BadFile(name: "bad CIDR", yaml: """
        node:
          data_dir: /var/lib/starling
          ip: 10.0.0.7
        roles: [tracker]
        tracker:
          listen: 10.0.0.7:6969
          trusted_cidrs: [10.0.0.0/33, 10.0.0.1/8, 10.0.0]
        """, expected: [
            "test.yaml:7: tracker.trusted_cidrs: '10.0.0.0/33' is not a network in CIDR notation, e.g. 10.0.0.0/8",
            "test.yaml:7: tracker.trusted_cidrs: 10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8?",
            "test.yaml:7: tracker.trusted_cidrs: '10.0.0' is not a network in CIDR notation, e.g. 10.0.0.0/8",
        ]),
    BadFile(name: "missing data_dir", yaml: """
        node:
          ip: 10.0.0.7
        roles: [peer]
        watch_dir: /x
        """, expected: ["test.yaml:1: missing required key 'data_dir' in 'node' (a path)"]),
    BadFile(name: "empty data_dir", yaml: """
        node:
          data_dir:
          ip: 10.0.0.7
        roles: [peer]
        watch_dir: /x
        """, expected: ["test.yaml:2: node.data_dir: no value given; expected a path"]),
    BadFile(name: "missing node and roles", yaml: "watch_dir: /x\n", expected: [
        "test.yaml:1: missing required key 'node' (a mapping with at least data_dir)",
        "test.yaml:1: missing required key 'roles' (a list of tracker, seeder, peer)",
    ]),
    BadFile(name: "tracker role without tracker section", yaml: """
        node:
          data_dir: /var/lib/starling
          ip: 10.0.0.7
        roles: [tracker]
        """, expected: ["test.yaml:4: role 'tracker' needs a 'tracker' section (at least tracker.listen: IP:PORT)"]),
    BadFile(name: "tracker section without tracker role", yaml: minimal + "tracker:\n  listen: 10.0.0.7:6969\n", expected: [
        "test.yaml:6: a 'tracker' section is given but roles does not include 'tracker'; add the role or remove the section",
    ]),
    BadFile(name: "peer role without torrents or watch_dir", yaml: """
        node:
          data_dir: /var/lib/starling
          ip: 10.0.0.7
        roles: [peer]
        """, expected: ["test.yaml:4: role 'peer' needs at least one entry in 'torrents' or a 'watch_dir'"]),
    BadFile(name: "seeder and peer roles without torrents", yaml: """
        node:
          data_dir: /var/lib/starling
          ip: 10.0.0.7
        roles: [tracker, seeder, peer]
        tracker:
          listen: 10.0.0.7:6969
        torrents: []
        """, expected: ["test.yaml:7: roles 'seeder' and 'peer' need at least one entry in 'torrents' or a 'watch_dir'"],
        exactly: true),
    BadFile(name: "gossip with an empty key_file", yaml: minimal + "gossip:\n  subnet: 10.0.0.0/24\n  key_file:\n", expected: [
        "test.yaml:6: gossip needs key_file (a shared key of at least 16 bytes) or, on a trusted network, insecure: true",
    ], exactly: true),
    BadFile(name: "off-host admin with an empty token file", yaml: minimal + "http:\n  admin_listen: 0.0.0.0:9461\n  admin_token_file: ~\n", expected: [
        "test.yaml:7: http.admin_listen 0.0.0.0:9461 is not a loopback address, so http.admin_token_file is required (admin actions need a token off-host)",
    ], exactly: true),
    BadFile(name: "non-loopback admin without token", yaml: minimal + "http:\n  admin_listen: 10.0.0.7:9461\n", expected: [
        "test.yaml:7: http.admin_listen 10.0.0.7:9461 is not a loopback address, so http.admin_token_file is required (admin actions need a token off-host)",
    ]),
    BadFile(name: "YAML syntax error", yaml: """
        node:
          data_dir: /var/lib/starling
          ip: [10.0.0.7
        roles: [peer]
        """, expected: []),
    BadFile(name: "YAML duplicate key", yaml: """
        node:
          data_dir: /var/lib/starling
          ip: 10.0.0.7
          ip: 10.0.0.8
        roles: [peer]
        """, expected: ["test.yaml:4: duplicate key 'ip' (first at line 3); each key may appear once in a mapping"],
        exactly: true),
    BadFile(name: "duplicate torrent", yaml: """
        node:
          data_dir: /var/lib/starling
          ip: 10.0.0.7
        roles: [peer]
        torrents:
          - torrent: /etc/starling/app.torrent
            mode: fetch
          - torrent: app.torrent
            mode: fetch
        """, expected: ["test.yaml:8: duplicate torrent /etc/starling/app.torrent (first listed at line 6)"]),
    BadFile(name: "torrent entry problems", yaml: """
        node:
          data_dir: /var/lib/starling
          ip: 10.0.0.7
        roles: [seeder]
        torrents:
          - torrent: /etc/starling/a.torrent
            mode: fetch
          - path: /srv/b
            mode: sed
          - /etc/starling/c.torrent
        """, expected: [
            "test.yaml:6: torrent /etc/starling/a.torrent has mode fetch but roles does not include 'peer'",
            "test.yaml:8: missing required key 'torrent' in 'torrents[1]' (a path)",
            "test.yaml:9: torrents[1].mode: 'sed' is not one of seed|fetch; did you mean 'seed'?",
            "test.yaml:10: expected a mapping for 'torrents[2]' (keys: torrent, path, mode, up_rate, down_rate, peers), found '/etc/starling/c.torrent'",
        ]),
    BadFile(name: "bad node values", yaml: """
        node:
          name: web 01
          data_dir: /var/lib/starling
          ip: web-01.example.com
          port_range: 6889-6881
          log_level: verbose
          log_format: xml
        roles: [peer, peer, leecher]
        watch_dir: /x
        """, expected: [
            "test.yaml:2: node.name: 'web 01' is not a usable name; expected 1 to 64 letters, digits, '.', '_' or '-'",
            "test.yaml:4: node.ip: 'web-01.example.com' is not an IP address; expected a literal such as 10.0.0.7 or fd00::7",
            "test.yaml:5: node.port_range: '6889-6881' is not a port range; expected LO-HI within 1-65535, e.g. 6881-6889",
            "test.yaml:6: node.log_level: 'verbose' is not one of trace|debug|info|notice|warning|error",
            "test.yaml:7: node.log_format: 'xml' is not one of text|json",
            "test.yaml:8: roles: 'peer' is listed twice",
            "test.yaml:8: roles: 'leecher' is not one of tracker|seeder|peer",
        ]),
    BadFile(name: "bad addresses and URLs", yaml: minimal + """
        trackers: [udp://10.0.0.1:6969/announce, "http://10.0.0.1:99999/announce"]
        http:
          metrics_listen: 10.0.0.7
          admin_listen: localhost:9461
        """, expected: [
            "test.yaml:6: trackers: 'udp://10.0.0.1:6969/announce' is not an http:// announce URL; expected e.g. http://10.0.0.1:6969/announce",
            "test.yaml:6: trackers: 'http://10.0.0.1:99999/announce' is not an http:// announce URL; expected e.g. http://10.0.0.1:6969/announce",
            "test.yaml:8: http.metrics_listen: '10.0.0.7' is not an address; expected IP:PORT, e.g. 10.0.0.1:6969 or [fd00::1]:6969 (an IP literal, not a host name)",
            "test.yaml:9: http.admin_listen: 'localhost:9461' is not an address; expected IP:PORT, e.g. 10.0.0.1:6969 or [fd00::1]:6969 (an IP literal, not a host name)",
        ]),
    BadFile(name: "gossip problems", yaml: minimal + """
        gossip:
          subnet: 10.1.0.0/24
          port: 70000
          seeds: [10.1.0.1, 10.2.0.1:6890, nohost]
          insecure: maybe
        """, expected: [
            "test.yaml:6: gossip needs key_file (a shared key of at least 16 bytes) or, on a trusted network, insecure: true",
            "test.yaml:7: gossip.subnet 10.1.0.0/24 does not contain node.ip 10.0.0.7; members outside the subnet are ignored",
            "test.yaml:8: gossip.port: expected a whole number from 1 to 65535, found '70000'",
            "test.yaml:9: gossip.seeds: 10.2.0.1 is outside gossip.subnet 10.1.0.0/24; gossip never contacts addresses outside it",
            "test.yaml:9: gossip.seeds: 'nohost' is not an address; expected IP or IP:PORT (an IP literal, not a host name)",
            "test.yaml:10: gossip.insecure: expected true or false, found 'maybe'",
        ]),
    BadFile(name: "limits and per-torrent caps", yaml: """
        node:
          data_dir: /var/lib/starling
          ip: 10.0.0.7
        roles: [peer]
        torrents:
          - torrent: /etc/starling/a.torrent
            mode: fetch
            up_rate: 50mbit
        rates:
          up: 40mbit
        limits:
          max_peers: 0
          upload_slots: many
        """, expected: [
            "test.yaml:6: torrent /etc/starling/a.torrent: up_rate 50.0 Mbit/s is above the host-wide rates.up 40.0 Mbit/s; a per-torrent cap can only be lower",
            "test.yaml:12: limits.max_peers: expected a whole number from 1 to 10000, found '0'",
            "test.yaml:13: limits.upload_slots: expected a whole number from 1 to 10000, found 'many'",
        ]),
    BadFile(name: "listeners clash", yaml: """
        node:
          data_dir: /var/lib/starling
          ip: 10.0.0.7
          port_range: 6881-6999
        roles: [tracker]
        tracker:
          listen: 0.0.0.0:6969
        http:
          metrics_listen: 0.0.0.0:9461
          admin_listen: 127.0.0.1:9461
        """, expected: [
            "test.yaml:7: tracker.listen 0.0.0.0:6969 is inside node.port_range 6881-6999, which the peer wire listens on",
            "test.yaml:10: http.admin_listen 127.0.0.1:9461 and http.metrics_listen 0.0.0.0:9461 use the same port",
        ], exactly: true),
    BadFile(name: "empty file", yaml: "# nothing here\n", expected: [
        "test.yaml:1: the file holds no settings; expected at least 'node' and 'roles' (see config/README.md)",
    ]),
    BadFile(name: "not a mapping", yaml: "- node\n- roles\n", expected: [
        "test.yaml:1: expected a mapping at the top level (keys: node, roles, tracker, trackers, torrents, watch_dir, rates, limits, peer, sites, gossip, http), found a list",
    ]),
]

@Suite struct BadFiles {
    @Test(arguments: badFiles)
    func reportsExpectedErrors(_ bad: BadFile) {
        let found = errors(bad.yaml)
        #expect(!found.isEmpty, "\(bad.name): accepted")
        for line in bad.expected {
            #expect(found.contains(line), "\(bad.name): missing\n  \(line)\namong\n  \(found.joined(separator: "\n  "))")
        }
        if bad.exactly {
            #expect(found == bad.expected, "\(bad.name): got\n  \(found.joined(separator: "\n  "))")
        }
    }

    @Test func syntaxErrorStopsWithItsLine() throws {
        let found = errors("""
        node:
          data_dir: /var/lib/starling
          ip: [10.0.0.7
        roles: [peer]
        bogus: 1
        """)
        #expect(found.count == 1)
        let only = try #require(found.first)
        #expect(only.hasPrefix("test.yaml:4: YAML syntax error: "), "\(only)")
    }

    @Test func tabIndentationIsASyntaxError() throws {
        let found = errors("node:\n\tdata_dir: /x\n")
        #expect(found.count == 1)
        #expect(found.first?.hasPrefix("test.yaml:2: YAML syntax error") == true, "\(found)")
    }

    @Test func severalErrorsAreReportedTogetherInLineOrder() throws {
        let yaml = """
        node:
          data_dir: /var/lib/starling
          ip: 10.0.0.300
          log_levle: debug
        roles: [peer]
        watch_dir: /x
        rates:
          up: fast
        limits:
          max_peers: -1
        """
        do {
            _ = try parse(yaml)
            Issue.record("accepted")
        } catch let e as NodeConfigErrors {
            #expect(e.errors.map(\.line) == [3, 4, 8, 10], "\(e)")
            #expect(e.errors.allSatisfy { $0.file == "test.yaml" })
            #expect(e.description.split(separator: "\n").count == 4)
            #expect(e.errors[1].message.contains("did you mean 'log_level'?"))
            #expect(e.errors[1].column == 3)
        }
    }

    @Test func errorDescriptionFormat() {
        #expect(NodeConfigError(file: "/etc/starling/node.yaml", line: 7, column: 3, message: "bad").description
                == "/etc/starling/node.yaml:7: bad")
        #expect(NodeConfigError(file: "node.yaml", line: 0, message: "cannot read").description == "node.yaml: cannot read")
    }

    @Test func fileTooBig() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nodeconfig-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("big.yaml")
        let filler = String(repeating: "# padding padding padding padding padding padding padding padding\n", count: 17_000)
        try (minimal + filler).write(to: file, atomically: true, encoding: .utf8)
        #expect(throws: NodeConfigErrors.self) { try NodeConfiguration.load(path: file.path) }
        do {
            _ = try NodeConfiguration.load(path: file.path)
        } catch {
            #expect("\(error)" == "\(file.path): the configuration file is larger than 1024 KiB; is this the right file?")
        }
        #expect(throws: NodeConfigErrors.self) { try NodeConfiguration.parse(yaml: minimal + filler, file: "big.yaml") }
    }

    @Test func missingFile() {
        do {
            _ = try NodeConfiguration.load(path: "/nonexistent/starling/node.yaml")
            Issue.record("accepted")
        } catch {
            #expect("\(error)".hasPrefix("/nonexistent/starling/node.yaml: cannot read the configuration file"), "\(error)")
        }
    }

    @Test func notUTF8() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nodeconfig-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("bin.yaml")
        try Data([0x6E, 0x6F, 0xFF, 0xFE, 0x00, 0x80]).write(to: file)
        #expect(throws: NodeConfigErrors.self) { try NodeConfiguration.load(path: file.path) }
    }
}

/// Hostile input must produce errors, never a trap or a long stall.
@Suite struct HostileInput {
    @Test func deepNestingIsRefused() {
        for yaml in [String(repeating: "[", count: 5000), String(repeating: "- ", count: 5000) + "x",
                     "node: " + String(repeating: "{a: ", count: 3000)] {
            #expect(!errors(yaml).isEmpty)
        }
    }

    @Test func nestingJustUnderLibyamlsLimitParses() {
        let flow = "extra: " + String(repeating: "[", count: 998) + String(repeating: "]", count: 998)
        let block = "extra:\n" + String(repeating: "- ", count: 990) + "x"
        for yaml in [flow, block] {
            #expect(errors(minimal + yaml).contains { $0.contains("unknown top-level key 'extra'") })
        }
    }

    @Test func nestingUnderAnUnknownKeyIsNotWalked() {
        let yaml = minimal + "extra: " + String(repeating: "[", count: 998) + String(repeating: "]", count: 998) + "\n"
        #expect(errors(yaml).contains { $0.hasPrefix("test.yaml:6: unknown top-level key 'extra'") })
    }

    @Test func aliasesRepeatingANodeAreBounded() {
        var yaml = minimal + "torrents: &t\n  - {torrent: a.torrent, mode: fetch}\ntrackers:\n"
        for _ in 0..<2000 { yaml += "  - *t\n" }
        let found = errors(yaml)
        #expect(!found.isEmpty && found.count <= 60)
    }

    /// Yams hashes keys while composing; an aliased key used to be expanded there (10^8 nodes
    /// here: minutes of CPU before any error).
    @Test(.timeLimit(.minutes(1)), arguments: ["? *h\n: 1\n", "node: {*h : 1}\n", "? [*h, *h]\n: 1\n"])
    func aliasBombAsAKeyIsRefusedWithItsLine(_ key: String) {
        var yaml = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        for (name, previous) in zip("bcdefgh", "abcdefg") {
            yaml += "\(name): &\(name) [" + Array(repeating: "*\(previous)", count: 10).joined(separator: ", ") + "]\n"
        }
        let found = errors(yaml + key)
        #expect(found.count == 1, "\(found)")
        #expect(found.first?.hasPrefix("test.yaml:9:") == true, "\(found)")
        #expect(found.first?.contains("keys must be plain names") == true, "\(found)")
    }

    @Test func smallAliasedKeysStillParse() {
        let yaml = minimal + "torrents:\n  - &k torrent\n  - {*k : a.torrent}\n"
        #expect(!errors(yaml).contains { $0.contains("keys must be plain names") })
    }

    @Test func manyErrorsAreCapped() {
        var yaml = minimal
        for i in 0..<500 { yaml += "bogus\(i): 1\n" }
        let found = errors(yaml)
        #expect(found.count <= 60)
        #expect(found.last?.contains("too many errors") == true)
    }

    @Test(arguments: ["", "\n", "~", "[]", "{}", "node: 1", "roles: {a: b}", "node: []\nroles: []",
                      "? [a]\n: b", "node:\n  ? [x]\n  : 1", "&a [*a]", "!!binary aGVsbG8=", "torrents: [1, [2], {3: 4}]",
                      "\u{FEFF}node: {}", "node: {ip: 999.1.1.1, data_dir: ''}",
                      "node:\n  name: \u{01}bell\n", "--- a\n--- b\n", "node: !!map {}\nroles: !!seq []",
                      "node: *undefined"])
    func oddDocumentsGiveErrors(_ yaml: String) {
        #expect(!errors(yaml).isEmpty)
    }
}

/// The systemd units pass `systemd-analyze verify` (where systemd is installed), with the
/// binary path pointed at one that exists here.
@Suite struct SystemdUnits {
    static let analyze = "/usr/bin/systemd-analyze"

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: analyze)),
          arguments: ["starling-node.service", "starling-tracker.service"])
    func unitVerifies(_ name: String) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nodeconfig-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let text = try String(contentsOf: configFolder.appendingPathComponent(name), encoding: .utf8)
        #expect(text.contains("ExecStart=/usr/local/bin/starling node --config /etc/starling/"))
        let unit = dir.appendingPathComponent(name)
        try text.replacingOccurrences(of: "/usr/local/bin/starling", with: "/bin/true")
            .write(to: unit, atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.analyze)
        process.arguments = ["verify", unit.path]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let printed = String(decoding: data, as: UTF8.self)
        #expect(process.terminationStatus == 0, "systemd-analyze verify \(name):\n\(printed)")
        #expect(!printed.contains(name), "systemd-analyze verify \(name) complained:\n\(printed)")
    }

    @Test(arguments: ["starling-node.service", "starling-tracker.service"])
    func unitIsHardened(_ name: String) throws {
        let text = try String(contentsOf: configFolder.appendingPathComponent(name), encoding: .utf8)
        for line in ["User=starling", "ProtectSystem=strict", "ReadWritePaths=/var/lib/starling", "NoNewPrivileges=yes",
                     "PrivateTmp=yes", "ProtectHome=yes", "CapabilityBoundingSet=\n",
                     "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "ExecReload=/bin/kill -HUP $MAINPID",
                     "Restart=on-failure", "LimitNOFILE="] {
            #expect(text.contains(line), "\(name) lacks \(line)")
        }
    }
}
