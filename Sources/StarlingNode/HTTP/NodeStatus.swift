import BitTorrent
import Foundation
import Swarm

/// A node's state at one moment: what `/status` serves, what `starling status` prints and
/// what the runtime decides on. A snapshot, taken on the engine's loop.
public struct NodeStatus: Codable, Sendable, Equatable {
    public struct RateCaps: Codable, Sendable, Equatable {
        /// Bytes per second; 0 = unlimited.
        public var up: Int64
        public var down: Int64
    }

    public var version: String
    /// The node's own clock, so a client can turn two samples into an exact rate.
    public var uptimeSeconds: Double
    /// The announced address and the peer-wire port (empty and 0 on a tracker-only node).
    public var ip: String
    public var port: Int
    public var rateCaps: RateCaps
    /// By name.
    public var torrents: [TorrentStatus]

    public func torrent(_ infoHash: InfoHash) -> TorrentStatus? {
        torrents.first { $0.infoHash == infoHash.hex }
    }

    /// `/status`'s body, keys sorted (so the text of two samples differs only in values).
    public func json() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? Array(encoder.encode(self))) ?? Array(#"{"error":"status could not be encoded"}"#.utf8)
    }

    public static func decode(_ body: [UInt8]) throws -> NodeStatus {
        try JSONDecoder().decode(NodeStatus.self, from: Data(body))
    }
}

/// One torrent of a `NodeStatus`.
public struct TorrentStatus: Codable, Sendable, Equatable {
    public enum State: String, Codable, Sendable {
        case downloading, seeding, failed
    }

    public var name: String
    /// 40 hex digits.
    public var infoHash: String
    public var state: State
    /// Fraction verified on disk, 0 to 1.
    public var progress: Double
    public var size: Int64
    public var left: Int64
    /// Payload bytes, from the start of this run.
    public var downloaded: Int64
    public var uploaded: Int64
    /// Bytes received and discarded: duplicates (an endgame copy, a cancel that crossed the
    /// block) and pieces that failed their check.
    public var wasted: Int64
    /// Bytes per second, smoothed over a few seconds.
    public var downRate: Int
    public var upRate: Int
    public var peers: Int
    public var seeds: Int
    public var path: String
    /// Seconds from the start to the verified file, once complete in this run.
    public var completionSeconds: Double?
    /// Why the download stopped, when `state` is `failed`.
    public var error: String?

    public var isComplete: Bool { state == .seeding }
}

extension PeerEngine {
    /// On the loop.
    public func status() -> NodeStatus {
        loop.preconditionInEventLoop()
        return NodeStatus(version: EngineConfig.version, uptimeSeconds: Double(loop.now.uptimeNanoseconds) / 1e9,
                          ip: config.ip, port: listenPort,
                          rateCaps: .init(up: limiter.rate(.up), down: limiter.rate(.down)),
                          torrents: sessions.values.sorted { $0.metainfo.name < $1.metainfo.name }.map { $0.status() })
    }
}

extension TorrentSession {
    /// On the loop.
    func status() -> TorrentStatus {
        let c = state.counters
        return TorrentStatus(name: metainfo.name, infoHash: infoHash.hex,
                             state: state.failure != nil ? .failed : state.isComplete ? .seeding : .downloading,
                             progress: state.progress, size: metainfo.totalLength, left: state.left,
                             downloaded: c.downloaded, uploaded: c.uploaded, wasted: c.wasted,
                             downRate: Int(state.downRate.rate), upRate: Int(state.upRate.rate),
                             peers: state.peers.count, seeds: state.peerCounts.seeds, path: store.target,
                             completionSeconds: completionSeconds, error: state.failure)
    }
}
