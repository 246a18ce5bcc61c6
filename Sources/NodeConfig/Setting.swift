import Values

/// A setting the runtime can still refuse once the configuration is valid (a port range with
/// no free port, a key file that cannot be read, an address already taken). The runtime
/// names the setting, not the spelling: `starling node` reports its YAML key with the file
/// and line, `seed` and `peer` their command-line flag.
public enum Setting: String, Sendable, Hashable, CaseIterable {
    case ip = "node.ip"
    case portRange = "node.port_range"
    case tcpCongestion = "node.tcp_congestion"
    case gossip = "gossip"
    case gossipKeyFile = "gossip.key_file"
    case metricsListen = "http.metrics_listen"
    case adminListen = "http.admin_listen"
    case adminTokenFile = "http.admin_token_file"
    case trackerListen = "tracker.listen"
    case trackerStateFile = "tracker.state_file"
    case trackerAllowDir = "tracker.allow_dir"
    case watchDir = "watch_dir"

    /// The YAML key path.
    public var key: String { rawValue }
}

/// Why the runtime refused a setting (or a torrent); see `Setting`.
public struct SettingError: Error, Sendable, Hashable, CustomStringConvertible {
    public var setting: Setting?
    /// The .torrent file the problem concerns, when it is one torrent's.
    public var torrent: String?
    public var message: String

    public init(_ setting: Setting?, torrent: String? = nil, _ message: String) {
        self.setting = setting
        self.torrent = torrent
        self.message = message
    }

    /// `message` prefixed by what it concerns, spelled by `name` (a YAML key or a flag).
    public func described(naming name: (Setting) -> String) -> String {
        if let setting { return "\(name(setting)): \(message)" }
        // A message from the file layer names the file already.
        if let torrent, !message.contains(torrent) { return "\(torrent): \(message)" }
        return message
    }

    /// As `starling node` reports it: `FILE:LINE: key: message` when the configuration knows
    /// the line.
    public func described(in config: NodeConfiguration) -> String {
        let located = setting.flatMap { s in config.lines[s.key].map { "\(config.file):\($0): " } }
            ?? torrent.flatMap { t in config.torrents.first { $0.torrent == t }.map { "\(config.file):\($0.line): " } }
            ?? ""
        return located + described(naming: \.key)
    }

    public var description: String { described(naming: \.key) }
}
