import ArgumentParser
import Logging
import NodeConfig
import StarlingNode

struct NodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "node",
        abstract: "Run a long-lived node (tracker, seeder and/or peer) from a YAML configuration.",
        discussion: """
        What runs under systemd on every host. The configuration names the roles, the torrents \
        to serve or fetch, a watch folder, rate caps, gossip and the HTTP endpoints (/metrics, \
        /healthz, /status, admin). SIGHUP reloads rate caps and the torrent list without \
        dropping transfers; SIGTERM stops gracefully. config/README.md documents every key.

        Example:
          starling node --check-config /etc/starling/node.yaml
          starling node --config /etc/starling/node.yaml
        """
    )

    @Option(name: .long, help: "The node's YAML configuration.") var config: String?
    @Option(name: .long, help: "Validate a configuration file and exit (0 when valid).") var checkConfig: String?

    func run() async throws {
        if let path = checkConfig {
            do {
                let c = try NodeConfiguration.load(path: path)
                print("\(path): valid (\(c.roles.map(\.rawValue).joined(separator: ", ")); \(c.torrents.count) torrent(s))")
                return
            } catch {
                throw CLIError("\(error)")
            }
        }
        guard let path = config else { throw ValidationError("give --config FILE (or --check-config FILE)") }
        let c: NodeConfiguration
        do {
            c = try NodeConfiguration.load(path: path)
        } catch {
            throw CLIError("\(error)")
        }
        let level = Logger.Level(rawValue: c.logLevel.rawValue) ?? .info
        if c.logFormat == .json {
            LoggingSystem.bootstrap { label in
                var h = JSONLogHandler(label: label)
                h.logLevel = level
                return h
            }
        }
        var logger = Logger(label: "starling.node")
        logger.logLevel = level
        let runtime = NodeRuntime(configuration: c, policy: .serve, naming: \.key, logger: logger)
        // A setting is named by its YAML key, with the file and line.
        let status = try await runCatching(describe: { $0.described(in: c) }) { try await runtime.run() }
        if status != 0 { throw ExitCode(status) }
    }
}
