import ArgumentParser
import Bencode
import BitTorrent
import Foundation
import NIOPosix
import StarlingNode
import Values

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show a node's torrents, or a swarm as its tracker sees it.",
        discussion: """
        With --node (default http://127.0.0.1:9460), reads the node's /status and prints a table: \
        each torrent's state, progress, rates and peers. With --tracker and --torrent, scrapes the \
        tracker (BEP 48) and prints seeders, leechers and completed downloads, so a rollout can be \
        watched from one terminal.

        Example:
          starling status --node http://10.0.0.7:9460
          starling status --tracker http://10.0.0.1:6969/announce --torrent app.torrent
        """
    )

    @Option(name: .long, help: "The node's metrics/status URL.") var node: String = "http://127.0.0.1:\(Defaults.metricsPort)"
    @Option(name: .long, help: "A tracker announce URL to scrape instead of asking a node.") var tracker: String?
    @Option(name: .long, help: "The .torrent whose swarm to show (with --tracker).") var torrent: String?
    @Flag(name: .long, help: "Print the raw JSON.") var json = false

    func run() async throws {
        if let tracker {
            guard let torrent else { throw ValidationError("--tracker needs --torrent F.torrent") }
            try await scrape(tracker, torrent: Metainfo.load(path: torrent))
            return
        }
        let (status, body) = try await adminRequest(node, path: "/status")
        guard status == 200 else { throw CLIError("\(node)/status answered HTTP \(status)") }
        if json {
            print(String(decoding: body, as: UTF8.self))
            return
        }
        guard let doc = try? NodeStatus.decode(body) else {
            throw CLIError("\(node)/status is not a Starling status document")
        }
        func cap(_ v: Int64) -> String { v == 0 ? "unlimited" : Units.formatRate(Double(v)) }
        print("node \(doc.ip):\(doc.port)  caps up \(cap(doc.rateCaps.up)), down \(cap(doc.rateCaps.down))")
        var rows = [["TORRENT", "STATE", "DONE", "DOWN", "UP", "PEERS", "SEEDS"]]
        for t in doc.torrents {
            rows.append([t.name, t.state.rawValue, Units.format1(t.progress * 100) + "%", Units.formatRate(Double(t.downRate)),
                         Units.formatRate(Double(t.upRate)), "\(t.peers)", "\(t.seeds)"])
        }
        printTable(rows)
    }

    func scrape(_ url: String, torrent: Metainfo) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { Task { try? await group.shutdownGracefully() } }
        let client = HTTPTrackerClient(group: group, timeout: .seconds(5))
        let response: ScrapeResponse
        do {
            response = try await client.scrape(url: url, infoHashes: [torrent.infoHash])
        } catch {
            throw CLIError("cannot scrape \(url): \(error)")
        }
        guard let entry = response.files[torrent.infoHash] else {
            throw CLIError("the tracker does not know \(torrent.name) (\(torrent.infoHash.hex))")
        }
        // `left` (what the leechers still miss, as they last announced) comes from Starling's tracker only.
        if json {
            let left = entry.left.map { ",\"left\":\($0)" } ?? ""
            print("{\"infoHash\":\"\(torrent.infoHash.hex)\",\"size\":\(torrent.totalLength),\"seeders\":\(entry.complete),\"leechers\":\(entry.incomplete),\"completed\":\(entry.downloaded)\(left)}")
            return
        }
        printTable([["TORRENT", "SEEDERS", "LEECHERS", "COMPLETED", "LEFT"],
                    [torrent.name, "\(entry.complete)", "\(entry.incomplete)", "\(entry.downloaded)",
                     entry.left.map { Units.formatBytes($0) } ?? "-"]])
    }
}

/// Left-aligned columns, two spaces apart.
func printTable(_ rows: [[String]]) {
    let widths = rows[0].indices.map { i in rows.map { $0[i].count }.max() ?? 0 }
    for r in rows {
        print(r.enumerated().map { i, c in c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
            .joined(separator: "  ").trimmingCharacters(in: .whitespaces))
    }
}
