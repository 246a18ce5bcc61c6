import ArgumentParser
import BitTorrent
import NIOPosix
import StarlingNode
import Storage
import Values

struct CtlCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ctl",
        abstract: "Change a running node's settings through its admin endpoint.",
        discussion: """
        Example:
          starling ctl rate --up 10mbit --admin http://127.0.0.1:9461
          starling ctl add /etc/starling/app.torrent --admin http://127.0.0.1:9461
        """,
        subcommands: [RateSubcommand.self, AddSubcommand.self, RemoveSubcommand.self]
    )

    struct RateSubcommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rate",
            abstract: "Change the host-wide rate caps of a running node; in force within a second.",
            discussion: """
            Only the caps given change. Rates read like 40mbit, 5MB or 512KiB per second; 0 lifts the cap. \
            --max-change RATE/INTERVAL sets the slew limit (off removes it); under it a lowered cap \
            is approached at the slope, not jumped to.

            Example:
              starling ctl rate --up 10mbit --down 30mbit --admin http://127.0.0.1:9461
              starling ctl rate --max-change 5mbit/60s
            """
        )

        @Option(name: .long, help: "New upload cap.") var up: String?
        @Option(name: .long, help: "New download cap.") var down: String?
        @Option(name: .long, help: "New slew limit, RATE/INTERVAL (e.g. 5mbit/60s), or off.") var maxChange: String?
        @OptionGroup var options: AdminOptions

        func run() async throws {
            guard up != nil || down != nil || maxChange != nil else { throw ValidationError("give --up, --down, --max-change or several") }
            var query: [String] = []
            if let up { query.append("up=" + String(try parseRate(up, option: "--up"))) }
            if let down { query.append("down=" + String(try parseRate(down, option: "--down"))) }
            if let maxChange {
                guard maxChange == "off" || MaxChange(parsing: maxChange) != nil else {
                    throw ValidationError("--max-change \(maxChange): expected \(MaxChange.expectedForm), or off")
                }
                query.append("max_change=" + PercentEncoding.encode(Array(maxChange.utf8)))
            }
            let body = try await options.send("/rate?" + query.joined(separator: "&"), method: "POST")
            print("rate caps now \(body) (bytes per second, 0 = unlimited)")
        }
    }
}

/// Where the admin endpoint is and how to prove the right to use it.
struct AdminOptions: ParsableArguments {
    @Option(name: .long, help: "The node's admin URL.") var admin: String = "http://\(Defaults.adminListen)"
    @Option(name: .long, help: "File holding the admin bearer token, if the node requires one.") var tokenFile: String?

    func send(_ path: String, method: String) async throws -> String {
        var headers: [(String, String)] = []
        if let tokenFile { headers.append(("Authorization", "Bearer " + (try readToken(tokenFile)))) }
        let (status, body) = try await adminRequest(admin, path: path, method: method, headers: headers)
        let text = String(decoding: body, as: UTF8.self)
        guard (200..<300).contains(status) else { throw CLIError("the node refused: HTTP \(status) \(text)") }
        return text
    }
}

extension CtlCommand {
    struct AddSubcommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "add",
            abstract: "Start fetching (or seeding) a torrent on a running node.",
            discussion: """
            The .torrent path is read by the node, so it must exist there. Progress shows in \
            `starling status`.

            Example:
              starling ctl add /etc/starling/app.torrent --admin http://127.0.0.1:9461
              starling ctl add /srv/app.torrent --seed --path /srv/app.rpm
            """
        )
        @Argument(help: "Absolute path of the .torrent on the node.") var torrent: String
        @Flag(name: .long, help: "Seed existing data instead of fetching.") var seed = false
        @Option(name: .long, help: "Data path on the node (default: its data folder plus the torrent's name).") var path: String?
        @OptionGroup var options: AdminOptions

        func run() async throws {
            guard torrent.hasPrefix("/") else { throw ValidationError("give the .torrent's absolute path on the node") }
            var query = "torrent=" + PercentEncoding.encode(Array(torrent.utf8)) + "&mode=" + (seed ? "seed" : "fetch")
            if let path { query += "&path=" + PercentEncoding.encode(Array(path.utf8)) }
            _ = try await options.send("/torrents?" + query, method: "POST")
            print("accepted: \(torrent) (\(seed ? "seed" : "fetch")); see `starling status`")
        }
    }

    struct RemoveSubcommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "remove",
            abstract: "Stop serving or fetching a torrent on a running node (data stays on disk).",
            discussion: """
            Example:
              starling ctl remove 003363af5861977414c6ef34185829bc3017cff5
            """
        )
        @Argument(help: "The torrent's info-hash (40 hex digits, as `starling inspect` shows).") var infoHash: String
        @OptionGroup var options: AdminOptions

        func run() async throws {
            guard InfoHash(hex: infoHash) != nil else { throw ValidationError("\(infoHash) is not a 40-digit hex info-hash") }
            _ = try await options.send("/torrents?info_hash=" + infoHash, method: "DELETE")
            print("accepted: removing \(infoHash); see `starling status`")
        }
    }
}

/// Reads a token file: its bytes with trailing whitespace trimmed.
func readToken(_ path: String) throws -> String {
    do {
        return try FilePaths.readTrimmedText(path)
    } catch {
        throw CLIError("cannot read token: \(error)")
    }
}

/// One request to a node's HTTP endpoint; a connection failure is one clear line.
func adminRequest(_ base: String, path: String, method: String = "GET",
                  headers: [(String, String)] = []) async throws -> (Int, [UInt8]) {
    let url: TrackerURL
    do { url = try TrackerURL(base) } catch { throw CLIError("\(base): \(error)") }
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let client = HTTPTrackerClient(group: group, timeout: .seconds(5))
    do {
        let result = try await client.fetch(url, target: path, method: method, headers: headers)
        try? await group.shutdownGracefully()
        return result
    } catch {
        try? await group.shutdownGracefully()
        throw CLIError("\(error)")
    }
}
