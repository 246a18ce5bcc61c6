import ArgumentParser
import BitTorrent
import NIOPosix
import StarlingNode
import Storage

struct CtlCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ctl",
        abstract: "Change a running node's settings through its admin endpoint.",
        discussion: """
        Example:
          starling ctl rate --up 10mbit --admin http://127.0.0.1:9461
        """,
        subcommands: [RateSubcommand.self]
    )

    struct RateSubcommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rate",
            abstract: "Change the host-wide rate caps of a running node; in force within a second.",
            discussion: """
            Only the caps given change. Rates read like 40mbit, 5MB or 512KiB per second; 0 lifts the cap.

            Example:
              starling ctl rate --up 10mbit --down 30mbit --admin http://127.0.0.1:9461
            """
        )

        @Option(name: .long, help: "New upload cap.") var up: String?
        @Option(name: .long, help: "New download cap.") var down: String?
        @Option(name: .long, help: "The node's admin URL.") var admin: String = "http://127.0.0.1:9461"
        @Option(name: .long, help: "File holding the admin bearer token, if the node requires one.") var tokenFile: String?

        func run() async throws {
            guard up != nil || down != nil else { throw ValidationError("give --up, --down or both") }
            var query: [String] = []
            if let up { query.append("up=" + String(try parseRate(up, option: "--up"))) }
            if let down { query.append("down=" + String(try parseRate(down, option: "--down"))) }
            var headers: [(String, String)] = []
            if let tokenFile { headers.append(("Authorization", "Bearer " + (try readToken(tokenFile)))) }
            let (status, body) = try await adminRequest(admin, path: "/rate?" + query.joined(separator: "&"), method: "POST", headers: headers)
            guard status == 200 else { throw CLIError("the node refused: HTTP \(status) \(String(decoding: body, as: UTF8.self))") }
            print("rate caps now \(String(decoding: body, as: UTF8.self)) (bytes per second, 0 = unlimited)")
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
